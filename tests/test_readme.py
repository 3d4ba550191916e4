"""README.md's examples run, in README order, against the code: a README that drifts from the code fails here.

Every command of the README's ```bash blocks runs through the real command line in one shared workspace
(later examples read what earlier ones wrote), with small sample files under the names the README uses
(``my_pairs.tsv``, ``dev.csv``, ``news.csv``, ``runs/my-model``, ...) built from a few dozen rows of the
shared data, and a ``../shared/data`` beside the workspace holding the head of each shared file (same names,
same format and quirks), so the README's relative paths resolve unchanged and every run stays small. The
```python blocks run too, top to bottom in one namespace, as a reader would paste them.

Plain commands run in this process through ``textsiamese.cli.main`` (what ``python -m textsiamese.cli``
calls): a fresh interpreter per command costs about 5 s of imports on 2 cores, and there are more than twenty
commands. Shell pipelines and redirections, and the first example, run as a subprocess ``python -m
textsiamese.cli`` with ``shell=True``; ``TEXTSIAMESE_README_SUBPROCESS=1`` runs every command that way.

Examples that are skipped, or known to fail today, are listed below with the reason.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import SHARED_DATA

from textsiamese.cli import build_parser, main

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
ALL_SUBPROCESS = os.environ.get("TEXTSIAMESE_README_SUBPROCESS") == "1"

# Examples not run, keyed on a substring of the README command (or python block), each with its reason.
SKIP = {
    "python -m pytest": "runs the whole test suite, this file included (recursion; minutes)",
    "curl -s localhost:8000": "needs the server of the example above running; tests/test_serve.py covers /search",
    "torchrun": "starts two processes with gloo (~20 s of start-up on 2 cores for a tiny run); "
    "data-parallel training is covered by tests/test_trainer_ddp.py",
    "OpenAI(base_url=": "needs a running `textsiamese serve`; tests/test_serve_openai.py runs this block "
    "against a server it starts (test_readme_openai_example_runs)",
}
# Set-up lines chain `pip install ... && pip install ... && <command>`: the installs are dropped (the package
# and its extras are installed already) and whatever is left runs (the main job's `eval` does). A chained
# `textsiamese serve` runs until stopped: it is dropped too and what comes before it runs (tests/test_serve.py
# starts the server on a free port and checks every endpoint, the page and SIGTERM).
DROP_SEGMENTS = ("pip install", "textsiamese serve")
# Parts of a README command replaced before it runs (README text -> what runs), each with its reason.
REWRITE = {
    # The sample ships inside the package; the workspace is not the repository root.
    "textsiamese/samples/pairs.csv": str(REPO / "textsiamese" / "samples" / "pairs.csv"),
}
# Training examples run as tiny runs: these overrides are appended (a later --set wins over the README's).
TINY_TRAIN = (
    "--set max_steps=2 --set batch_size=4 --set data.limit=40 --set data.dev_limit=24 "
    "--set eval_every=1 --no-progress"
)

XFAIL: dict[str, str] = {}  # substring of an example → reason it is expected to fail (none today)

WIKIQA_LINES = 150  # 18 questions, 5 with an answer: enough for retrieval and re-ranking to mean something
HEAD_LINES = {  # head of each shared file copied into the workspace's ../shared/data (header included)
    "stsb/sts-dev.csv": 40,
    "stsb/sts-train.csv": 40,
    "sick/SICK-train-trial.txt": 41,
    "mrpc/msr_paraphrase_train.txt": 61,
    "wikiqa/WikiQA-train.txt": WIKIQA_LINES,
    "agnews/agnews-title-description-train.csv": 61,
}


@dataclass
class Example:
    line: int  # README line number
    kind: str  # "bash" or "python"
    text: str  # the command, or the block's code, as it runs
    skip: str | None = None
    xfail: str | None = None
    readme_text: str = ""  # as the README has it

    def __post_init__(self) -> None:
        self.readme_text = self.readme_text or self.text

    @property
    def id(self) -> str:
        words = re.sub(r"[^\w.=-]+", " ", self.readme_text.split("\n")[0]).split()
        words = [w for w in words if w != "textsiamese"]
        return f"L{self.line}-{self.kind}-" + "-".join(words[:4])


@dataclass
class Outcome:
    returncode: int
    stdout: str
    stderr: str


def _strip_comment(line: str) -> str:
    return re.sub(r"\s+#\s.*$", "", line).strip()


def readme_examples() -> list[Example]:
    examples = []
    lines = README.read_text(encoding="utf-8").splitlines()
    fence: str | None = None
    start = 0
    for number, line in enumerate(lines, start=1):
        if fence is None:
            if line.startswith("```bash") or line.startswith("```python"):
                fence, start = line[3:].strip(), number
            continue
        if line.startswith("```"):
            if fence == "python":
                examples.append(Example(start + 1, "python", "\n".join(lines[start : number - 1]) + "\n"))
            fence = None
            continue
        if fence == "bash":
            command = _strip_comment(line)
            if command and not command.startswith("#"):
                examples.append(Example(number, "bash", command))
    for example in examples:
        if example.kind != "bash":  # a python block can be skipped too, keyed on its code
            example.skip = next((reason for key, reason in SKIP.items() if key in example.text), None)
            continue
        segments = [s.strip() for s in example.text.split("&&")]
        kept = [s for s in segments if not s.startswith(DROP_SEGMENTS)]
        example.text = " && ".join(kept)
        example.skip = next((reason for key, reason in SKIP.items() if key in example.text), None)
        if not kept:
            example.skip = "only installs packages"
        for old, new in REWRITE.items():
            example.text = example.text.replace(old, new)
        example.xfail = next((reason for key, reason in XFAIL.items() if key in example.text), None)
    return examples


EXAMPLES = readme_examples()


# ------------------------------------------------------------------------------------------------ workspace


def _head(source: Path, target: Path, lines: int) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with source.open("rb") as handle:
        target.write_bytes(b"".join(handle.readlines()[:lines]))


def _write(path: Path, header: list[str], rows: list[Any], delimiter: str = ",") -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter=delimiter, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def _build_samples(ws: Path, real: Path) -> None:
    """The files the README names, from the shared data (STS-B dev, MRPC train, AG News with an id)."""
    sts = [
        line.split("\t") for line in (real / "stsb" / "sts-dev.csv").read_text(encoding="utf-8").splitlines()
    ]
    sts_rows = [(c[5], c[6], c[4]) for c in sts[:80]]  # sentence1, sentence2, score
    mrpc_lines = (real / "mrpc" / "msr_paraphrase_train.txt").read_text(encoding="utf-8-sig").splitlines()
    mrpc = [(c[3], c[4], c[0]) for c in (line.split("\t") for line in mrpc_lines[1:81])]  # ..., label
    with (real / "agnews" / "agnews-title-description-train.csv").open(
        newline="", encoding="utf-8"
    ) as handle:
        news = list(csv.DictReader(handle))[:160]

    _write(ws / "my_pairs.tsv", ["sentence1", "sentence2"], [r[:2] for r in sts_rows[:24]], "\t")
    _write(ws / "pairs.csv", ["sentence1", "sentence2"], [r[:2] for r in mrpc[:24]])
    _write(ws / "dev.csv", ["sentence1", "sentence2", "score"], sts_rows[40:80])
    _write(ws / "dev.tsv", ["sentence1", "sentence2", "label"], mrpc[:40], "\t")
    _write(ws / "test.tsv", ["sentence1", "sentence2", "label"], mrpc[40:80], "\t")
    (ws / "corpus.txt").write_text("".join(r["description"] + "\n" for r in news[:40]), encoding="utf-8")
    _write(
        ws / "news.csv",
        ["id", "label", "title", "description"],
        [[f"ag-{i}", r["label"], r["title"], r["description"]] for i, r in enumerate(news[:80])],
    )
    _write(
        ws / "train.csv",
        ["sentence1", "sentence2", "label"],
        [[r["title"], r["description"], 1] for r in news[:20]],
    )
    _write(
        ws / "triplets.tsv",
        ["anchor", "positive", "negative"],
        [
            [a["title"], a["description"], b["description"]]
            for a, b in zip(news[:20], news[20:40], strict=True)
        ],
        "\t",
    )
    old_classes = [r for r in news[:80] if r["label"] != "4"][:24]
    _write(ws / "refs.csv", ["label", "text"], [[r["label"], r["title"]] for r in old_classes])
    _write(
        ws / "new_class.csv",
        ["label", "text"],
        [[r["label"], r["title"]] for r in news[:80] if r["label"] == "4"][:6],
    )
    _write(ws / "texts.csv", ["text", "label"], [[r["title"], r["label"]] for r in news[80:120]])
    _write(ws / "dev-texts.csv", ["label", "text"], [[r["label"], r["title"]] for r in news[120:160]])


def _rows(path: Path, delimiter: str = ",") -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle, delimiter=delimiter))


@dataclass
class Workspace:
    root: Path  # the README's repository root: cwd of every example
    tiny_model: Path
    namespace: dict[str, Any]  # the python blocks' shared namespace
    outputs: dict[str, Outcome]  # stdout/stderr of each command, by example id


@contextlib.contextmanager
def _cwd(path: Path) -> Iterator[None]:
    previous = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Workspace:
    base = tmp_path_factory.mktemp("readme")
    root = base / "repo"
    root.mkdir()
    for name, lines in HEAD_LINES.items():
        _head(SHARED_DATA / name, base / "shared" / "data" / name, lines)
    (root / "recipes").symlink_to(REPO / "recipes")  # `train NAME` looks in ./recipes/
    _build_samples(root, SHARED_DATA)
    # runs/my-model: what a user has after `textsiamese train`, a run directory (final/, best/, ...), from a
    # tiny 2-step run of the MRPC recipe on the tiny random model.
    argv = ["train", "mrpc", "--output", "runs/my-model", "--set", f"model.base={tiny_model_dir}"]
    with _cwd(root):
        assert main([*argv, *shlex.split(TINY_TRAIN)]) == 0
    assert (root / "runs" / "my-model" / "final" / "config.json").is_file()
    return Workspace(root, tiny_model_dir, {"__name__": "readme"}, {})


# ------------------------------------------------------------------------------------------------- running


def _subprocess(command: str, cwd: Path) -> Outcome:
    shell_command = re.sub(
        r"(?<![\w/.-])textsiamese(?= )", f"{shlex.quote(sys.executable)} -m textsiamese.cli", command
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    done = subprocess.run(
        shell_command, shell=True, cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    return Outcome(done.returncode, done.stdout, done.stderr)


def _in_process(command: str, cwd: Path, capfd: pytest.CaptureFixture[str]) -> Outcome:
    argv = shlex.split(command)
    assert argv[0] == "textsiamese", command
    capfd.readouterr()
    with _cwd(cwd):
        try:
            status = main(argv[1:])
        except SystemExit as exit_:  # argparse: unknown option, missing argument, ...
            status = exit_.code if isinstance(exit_.code, int) else 2
    out, err = capfd.readouterr()
    return Outcome(status, out, err)


def run_command(command: str, ws: Workspace, capfd: pytest.CaptureFixture[str]) -> Outcome:
    shell = any(token in command for token in ("|", ">", "<", "&&", ";"))
    if ALL_SUBPROCESS or shell or command == EXAMPLES[_first_bash()].text:
        return _subprocess(command, ws.root)
    return _in_process(command, ws.root, capfd)


def _first_bash() -> int:
    return next(i for i, e in enumerate(EXAMPLES) if e.kind == "bash" and e.skip is None)


# ------------------------------------------------------------------------------ checks of the outputs


def _json(out: str) -> dict[str, Any]:
    return json.loads(out.strip().splitlines()[-1])


def _check_sts_json(ws: Workspace, out: Outcome) -> None:
    result = _json(out.stdout)
    assert set(result) == {"task", "spearman", "pearson", "n"}, result  # what the README prints
    assert result["task"] == "sts" and result["n"] == 40 and -1 <= result["spearman"] <= 1


def _check_sample_scores(ws: Workspace, out: Outcome) -> None:
    rows = list(csv.DictReader(out.stdout.splitlines()))
    assert list(rows[0]) == ["sentence1", "sentence2", "label", "score"] and len(rows) == 5
    assert all(-1 <= float(r["score"]) <= 1 for r in rows)


def _check_scored_jsonl(ws: Workspace, out: Outcome) -> None:
    records = [json.loads(line) for line in (ws.root / "scored.jsonl").read_text().splitlines()]
    assert len(records) == 24 and {"sentence1", "sentence2", "score"} <= set(records[0])


def _check_scored_csv(ws: Workspace, out: Outcome) -> None:
    rows = _rows(ws.root / "scored.csv")
    assert len(rows) == 24 and list(rows[0])[:3] == ["sentence1", "sentence2", "score"]


def _check_calibrated_scores(ws: Workspace, out: Outcome) -> None:
    rows = _rows(ws.root / "scored.csv")
    assert len(rows) == 24 and {"score", "probability", "same"} <= set(rows[0]), list(rows[0])


def _check_sick(ws: Workspace, out: Outcome) -> None:
    assert "spearman_euclidean" in out.stdout and re.search(r"\bn\s+40\b", out.stdout), out.stdout


def _check_convert(ws: Workspace, out: Outcome) -> None:
    rows = _rows(ws.root / "stsb-dev.csv")
    assert len(rows) == 40 and list(rows[0])[:3] == ["sentence1", "sentence2", "score"]


def _check_info(ws: Workspace, out: Outcome) -> None:
    assert re.search(r"dimension:\s+32\b", out.stdout), out.stdout


def _check_run(name: str, steps: int = 2) -> Callable[[Workspace, Outcome], None]:
    def check(ws: Workspace, out: Outcome) -> None:
        run = ws.root / "runs" / name
        for model_dir in ("final", "best"):
            assert (run / model_dir / "config.json").is_file()
        results = json.loads((run / "results.json").read_text())
        assert results["recipe"] == name and results["steps"] == steps, results
        assert results["stopped"] == "completed"

    return check


def _check_npy(name: str, rows: int) -> Callable[[Workspace, Outcome], None]:
    def check(ws: Workspace, out: Outcome) -> None:
        array = np.load(ws.root / name)
        assert array.shape == (rows, 384) and array.dtype == np.float32 and np.isfinite(array).all()

    return check


def _check_index(ws: Workspace, out: Outcome) -> None:
    manifest = json.loads((ws.root / "news.index" / "manifest.json").read_text())
    assert manifest["count"] == 80 and manifest["kind"] == "flat", manifest


def _check_search(ws: Workspace, out: Outcome) -> None:
    (line,) = out.stdout.strip().splitlines()
    result = json.loads(line)
    assert result["query"] == "oil prices rise" and len(result["hits"]) == 5
    assert all({"id", "score", "text"} <= set(hit) for hit in result["hits"])
    scores = [hit["score"] for hit in result["hits"]]
    assert scores == sorted(scores, reverse=True)


def _check_mine(ws: Workspace, out: Outcome) -> None:
    rows = _rows(ws.root / "triplets.csv")
    assert list(rows[0]) == ["anchor", "positive"] + [f"negative_{k}" for k in range(1, 6)]
    assert len(rows) == 20 and all(r["positive"] not in list(r.values())[2:] for r in rows)


def _check_classification(ws: Workspace, out: Outcome) -> None:
    result = _json(out.stdout)
    assert result["task"] == "classification" and result["threshold_from"] == "dev" and result["n"] == 40
    assert {"accuracy", "f1", "precision", "recall", "roc_auc"} <= set(result)
    report = ws.root / "report"
    assert (report / "summary.md").is_file() and list(report.glob("*.png"))


def _check_retrieval(ws: Workspace, out: Outcome) -> None:
    result = _json(out.stdout)
    assert result["task"] == "retrieval" and result["n"] == 5, result
    assert {"recall@1", "recall@10", "mrr@10", "ndcg@10", "map"} <= set(result)


def _check_reranking(ws: Workspace, out: Outcome) -> None:
    assert re.search(r"\bmap\s+[0-9.]+", out.stdout) and re.search(r"\bmrr\s+[0-9.]+", out.stdout), out.stdout


def _check_triplet(ws: Workspace, out: Outcome) -> None:
    assert re.search(r"accuracy\s+[0-9.]+", out.stdout) and re.search(r"\bn\s+20\b", out.stdout), out.stdout


def _enrolled(ws: Workspace) -> dict[str, Any]:
    enrolled: dict[str, Any] = json.loads((ws.root / "refs" / "enrolled.json").read_text())
    return enrolled


def _check_enroll(ws: Workspace, out: Outcome) -> None:
    enrolled = _enrolled(ws)
    assert len(enrolled["labels"]) == 24 and set(enrolled["labels"]) == {"1", "2", "3"}
    # One threshold per strategy, chosen on dev-texts.csv.
    assert set(enrolled["thresholds"]) == {"centroid", "reference"}
    assert enrolled["threshold"] == enrolled["thresholds"]["centroid"]


def _check_enroll_more(ws: Workspace, out: Outcome) -> None:
    enrolled = _enrolled(ws)
    assert len(enrolled["labels"]) == 30 and set(enrolled["labels"]) == {"1", "2", "3", "4"}


def _check_classify(ws: Workspace, out: Outcome) -> None:
    rows = _rows(ws.root / "predicted.csv")
    assert len(rows) == 40 and {"text", "label", "predicted", "similarity"} <= set(rows[0])
    assert {r["predicted"] for r in rows} <= {"1", "2", "3", "4", "unknown"}


def _check_python_models(ws: Workspace, out: Outcome) -> None:
    ns = ws.namespace
    assert ns["vectors"].shape == (2, 384) and ns["scores"].shape == (1,)
    assert ns["same"].encode(["Stocks fall"], role="query").shape == (1, 384)
    assert (ws.root / "runs" / "title-body" / "config.json").is_file()
    assert ns["untied"].encode(["A man eats."]).shape == (1, 384)


def _check_python_evaluation(ws: Workspace, out: Outcome) -> None:
    import textsiamese

    assert textsiamese.load(ws.root / "runs" / "calibrated").calibration["method"] == "platt"
    assert ws.namespace["matcher"].classify(["Stocks rallied on Friday."]).labels[0] in {"business", "sport"}


def _check_python_long_text(ws: Workspace, out: Outcome) -> None:
    tokens = ws.namespace["tokens"]
    assert ws.namespace["vectors"].shape == (2, 384) and tokens[1] > 256 > tokens[0], tokens
    assert ws.namespace["model"].long_text == {
        "query": ws.namespace["LongText"](),
        "document": ws.namespace["LongText"](),
    }


def _check_token_report(ws: Workspace, out: Outcome) -> None:
    rows = _rows(ws.root / "long.tokens.csv")
    assert len(rows) == 40 and list(rows[0]) == ["id", "line", "tokens", "truncated"], rows[:1]
    assert np.load(ws.root / "long.npy").shape == (40, 384)


def _check_scored_tokens(ws: Workspace, out: Outcome) -> None:
    rows = _rows(ws.root / "scored-tokens.csv")
    assert len(rows) == 24 and list(rows[0])[-3:] == ["sentence1_tokens", "sentence2_tokens", "truncated"]


def _check_chunked_index(ws: Workspace, out: Outcome) -> None:
    manifest = json.loads((ws.root / "chunked.index" / "manifest.json").read_text())
    assert manifest["count"] == 80, manifest


def _check_ray_index(ws: Workspace, out: Outcome) -> None:
    """``index build --engine ray``: shards with a manifest, and an index holding every news.csv row by id."""
    shards = json.loads((ws.root / "news-ray.index.shards" / "manifest.json").read_text())
    index = json.loads((ws.root / "news-ray.index" / "manifest.json").read_text())
    assert shards["count"] == index["count"] == len(_rows(ws.root / "news.csv")), (shards, index)
    assert index["model_fingerprint"] == shards["model_fingerprint"]


def _check_st_export(ws: Workspace, out: Outcome) -> None:
    from sentence_transformers import SentenceTransformer

    import textsiamese

    texts = ["Stocks rallied.", "Rain is due."]
    model = textsiamese.load(ws.root / "runs" / "my-model", device="cpu")
    theirs = SentenceTransformer(str(ws.root / "export" / "query-st"), device="cpu").encode(texts)
    np.testing.assert_allclose(theirs, model.encode(texts, role="query", precision="fp32"), atol=1e-5)


def _check_python_onnx(ws: Workspace, out: Outcome) -> None:
    import textsiamese

    model = textsiamese.load(ws.root / "runs" / "my-model", device="cpu")
    expected = model.encode(["Stocks rallied.", "Rain is due."], role="document", precision="fp32")
    assert ((ws.namespace["vectors"] * expected).sum(axis=1) > 0.99).all()  # int8 against fp32, unit vectors


# Checks, keyed on a substring of the example (the first that matches applies). Every example that runs is
# keyed here: one that is not fails (a new README example needs its check, or an entry saying why none).
CHECKS: dict[str, Callable[[Workspace, Outcome], None]] = {
    "from textsiamese.inference.long_text import LongText": _check_python_long_text,
    "--output long.npy --report-truncation": _check_token_report,
    "--output scored-tokens.csv": _check_scored_tokens,
    "--output chunked.index": _check_chunked_index,
    "eval --task sts --format stsb --data ../shared/data/stsb/sts-dev.csv --json": _check_sts_json,
    "score --pairs " + REWRITE["textsiamese/samples/pairs.csv"]: _check_sample_scores,
    "--output scored.jsonl": _check_scored_jsonl,
    "score --model runs/my-model --progress > scored.csv": _check_calibrated_scores,
    "cat pairs.csv | textsiamese score > scored.csv": _check_scored_csv,
    "eval --task sts --data dev.csv --json": _check_sts_json,
    "--format sick": _check_sick,
    "textsiamese convert": _check_convert,
    "textsiamese info --model runs/my-model": _check_info,
    "train stsb --resume": _check_run("stsb"),
    "train stsb": _check_run("stsb"),
    "train mrpc --output runs/mrpc": _check_run("mrpc"),
    "--input corpus.txt": _check_npy("vectors.npy", 40),
    "--output titles.npy": _check_npy("titles.npy", 80),
    "index build --engine ray": _check_ray_index,
    "index build": _check_index,
    "textsiamese search": _check_search,
    "textsiamese mine": _check_mine,
    "--task classification": _check_classification,
    "--task retrieval": _check_retrieval,
    "--task reranking": _check_reranking,
    "--task triplet": _check_triplet,
    "textsiamese calibrate": lambda ws, out: None,  # checked by the score that follows (probability column)
    "--references refs.csv": _check_enroll,
    "--references new_class.csv": _check_enroll_more,
    "textsiamese classify": _check_classify,
    "two_tower = SiameseModel(": _check_python_models,
    "--output export/query-st": _check_st_export,
    "--output export/doc-onnx": lambda ws, out: None,  # checked by the python block that reads it
    'InferenceSession("export/doc-onnx': _check_python_onnx,
    "OneShotClassifier(model": _check_python_evaluation,
}
# Names a python block uses without defining them (it continues an earlier block, or leaves its data to the
# reader): defined before it runs, keyed on a substring of the block.
PYTHON_PRELUDE: dict[str, str] = {}


def _check_for(example: Example) -> Callable[[Workspace, Outcome], None]:
    check = next((c for key, c in CHECKS.items() if key in example.text), None)
    assert check is not None, f"README line {example.line}: no check for this example in CHECKS"
    return check


def _params() -> list[Any]:
    params = []
    for example in EXAMPLES:
        marks = []
        if example.skip:
            marks.append(pytest.mark.skip(reason=example.skip))
        elif example.xfail:
            marks.append(pytest.mark.xfail(strict=True, reason=example.xfail))
        params.append(pytest.param(example, id=example.id, marks=marks))
    return params


@pytest.mark.parametrize("example", _params())
def test_readme_example(example: Example, workspace: Workspace, capfd: pytest.CaptureFixture[str]) -> None:
    if example.kind == "python":
        prelude = next((code for key, code in PYTHON_PRELUDE.items() if key in example.text), "")
        with _cwd(workspace.root):
            exec(compile(prelude + example.text, f"README.md:{example.line}", "exec"), workspace.namespace)
        _check_for(example)(workspace, Outcome(0, "", ""))
        return
    command = example.text
    if " train " in f" {command} ":
        command = f"{command} --set model.base={workspace.tiny_model} {TINY_TRAIN}"
    if "--backend onnx" in command:
        pytest.importorskip("onnxruntime")
    outcome = run_command(command, workspace, capfd)
    workspace.outputs[example.id] = outcome
    assert outcome.returncode == 0, f"README line {example.line}: {command}\n{outcome.stderr[-3000:]}"
    _check_for(example)(workspace, outcome)


def _output_of(workspace: Workspace, key: str) -> Outcome:
    example = next(e for e in EXAMPLES if key in e.text)
    if example.id not in workspace.outputs:
        pytest.skip(f"runs after the README example on line {example.line}")
    return workspace.outputs[example.id]


def test_search_hits_carry_the_corpus_ids(workspace: Workspace) -> None:
    """news.csv has an `id` column: `index build` (README, no --id-column) should key the rows by it."""
    hits = json.loads(_output_of(workspace, "textsiamese search").stdout)["hits"]
    ids = {row["id"] for row in _rows(workspace.root / "news.csv")}
    assert {hit["id"] for hit in hits} <= ids, [hit["id"] for hit in hits]


def test_enroll_default_is_the_nearest_class(workspace: Workspace) -> None:
    _output_of(workspace, "--references refs.csv")
    assert _enrolled(workspace)["strategy"] == "centroid"


def test_readme_bad_input_message(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """The README's 'Bad input' line, word for word, and nothing written."""
    text = README.read_text(encoding="utf-8")
    expected = re.search(r"^textsiamese score: error: pairs\.csv, line 3, .*$", text, re.M)
    assert expected, "README's bad-input example is gone"
    (tmp_path / "pairs.csv").write_text("sentence1,sentence2,score\nA man eats.,Someone eats.,4\nA,B,high\n")
    with _cwd(tmp_path):
        assert main(["score", "--pairs", "pairs.csv", "--output", "out.csv"]) == 2
    assert capfd.readouterr().err.strip() == expected.group(0)
    assert not (tmp_path / "out.csv").exists()


def test_readme_common_options_exist() -> None:
    """Every option the README lists under 'Common options' is accepted by the commands that load a model."""
    text = README.read_text(encoding="utf-8")
    paragraph = text[text.index("Common options:") :].split("\n\n")[0]
    documented = set(re.findall(r"`(--[a-z-]+)", paragraph))
    assert documented >= {"--model", "--format", "--columns", "--device", "--batch-size"}
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    for name in ("score", "eval"):
        options = {o for action in commands[name]._actions for o in action.option_strings}
        assert documented <= options, (name, documented - options)
