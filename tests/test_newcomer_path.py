"""A new user's path between commands, with the defaults (issue 19): each test runs the commands a user types,
in order, through the CLI, on rows of ../shared/data, and checks what comes out.

1. ``train --output runs/x`` then ``--model runs/x`` anywhere (eval, score, info, calibrate, index build,
   search, ``textsiamese.load``): the run's ``best/`` model, else its ``final/``, said on stderr.
2. A corpus or query file with an ``id`` column: that column is the id (``index build``, ``search --queries``,
   ``classify``), with no ``--id-column``.
3. ``enroll`` with no ``--strategy``: nearest class centroid, recomputed here with numpy.
4. A header without the needed column: the advice names the option the running command has
   (``--text-column`` for index build, ``--columns`` for score), not one it lacks.
5. ``train`` again into a directory that holds a run: refused, nothing touched, until ``--resume`` or
   ``--overwrite``.
6. What ``info`` and ``index remove`` print: aligned labels, "1 row".
7. ``mine --output hard.csv`` then ``train`` on it: the mined ``negative_1..N`` columns are the triplets'
   negatives, none dropped.
8. ``score`` then ``eval --task sts`` on the scored file: the gold column is the file's own, never the model's
   score column (a correlation of 1.0 with itself); that mistake is refused with the column to name.
9. ``index build --text-column body --id-column doc`` then ``index add`` with neither: the index remembers
   them (an index from before they were recorded keeps the old defaults).
10. ``search -k 20`` on a smaller index: every row, with one warning line, as FAISS users expect; ``-k 0`` is
   still an error.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import textsiamese
from textsiamese.cli import main

REPO = Path(__file__).resolve().parents[1]


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[str, str]:
    """Run one command; it must succeed. Returns (stdout, stderr)."""
    status = main(args)
    out, err = capsys.readouterr()
    assert status == 0, err
    return out, err


def stsb_rows(shared_data: Path, count: int) -> list[list[str]]:
    """The first ``count`` STS-B dev pairs as [sentence1, sentence2, gold score] (split on tabs: see the
    data README)."""
    with (shared_data / "stsb" / "sts-dev.csv").open(encoding="utf-8", newline="") as handle:
        cells = [line.rstrip("\r\n").split("\t") for line in handle][:count]
    return [[row[5], row[6], row[4]] for row in cells]


def agnews_rows(shared_data: Path, count: int, skip: int = 0) -> list[dict[str, str]]:
    with (shared_data / "agnews" / "agnews-title-description-train.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return rows[skip : skip + count]


def write_csv(path: Path, columns: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def stsb_run(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """``textsiamese train stsb --output RUN`` (tiny base model and 2 steps, so it runs in seconds)."""
    output = tmp_path_factory.mktemp("runs") / "x"
    argv = [
        "train",
        "stsb",
        "--output",
        str(output),
        "--no-progress",
        "--set",
        f"model.base={tiny_model_dir}",
    ]
    for setting in ("max_steps=2", "batch_size=4", "data.limit=40", "data.dev_limit=24", "eval_every=1"):
        argv += ["--set", setting]
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(REPO)  # the recipe names ../shared/data from the repository root
        assert main(argv) == 0
    return output


def test_a_run_directory_loads_wherever_a_model_directory_does(
    stsb_run: Path, shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert (stsb_run / "best").is_dir() and (stsb_run / "final").is_dir()
    sts_dev = str(shared_data / "stsb" / "sts-dev.csv")
    eval_args = ["eval", "--task", "sts", "--format", "stsb", "--data", sts_dev, "--json"]
    out, err = run_cli([*eval_args, "--model", str(stsb_run)], capsys)
    assert f"using {stsb_run / 'best'}" in err
    from_run = json.loads(out)
    out, _ = run_cli([*eval_args, "--model", str(stsb_run / "best")], capsys)
    assert from_run == json.loads(out)  # the same model, so the same figures to the last bit
    out, _ = run_cli([*eval_args, "--model", str(stsb_run / "final")], capsys)
    assert from_run["n"] == json.loads(out)["n"] == 1500

    pairs = write_csv(
        tmp_path / "pairs.csv", ["sentence1", "sentence2"], [["A man eats.", "Someone is eating."]]
    )
    out, err = run_cli(["score", "--pairs", str(pairs), "--model", str(stsb_run)], capsys)
    assert out.splitlines()[0] == "sentence1,sentence2,score" and "best" in err
    out, _ = run_cli(["info", "--model", str(stsb_run), "--json"], capsys)
    assert json.loads(out)["source"] == str(stsb_run / "best")
    assert textsiamese.load(stsb_run, device="cpu").source == str(stsb_run / "best")

    # calibrate rewrites the model it loaded (best/), so score then adds probability and the decision
    mrpc = shared_data / "mrpc" / "msr_paraphrase_train.txt"
    run_cli(["calibrate", "--format", "mrpc", "--data", str(mrpc), "--model", str(stsb_run)], capsys)
    assert json.loads((stsb_run / "best" / "config.json").read_text())["calibration"]["method"] == "platt"
    out, _ = run_cli(["score", "--pairs", str(pairs), "--model", str(stsb_run)], capsys)
    assert out.splitlines()[0] == "sentence1,sentence2,score,probability,same,decision"

    # an index built from the run remembers the model it took; search finds it again without --model
    corpus = write_csv(tmp_path / "docs.csv", ["text"], [["a man is eating"], ["the stock market fell"]])
    run_cli(["index", "build", "--corpus", str(corpus), "--model", str(stsb_run), "--no-progress"], capsys)
    out, _ = run_cli(["index", "info", "--index", str(tmp_path / "docs.index"), "--json"], capsys)
    assert json.loads(out)["model_source"] == str(stsb_run / "best")
    out, _ = run_cli(
        ["search", "--index", str(tmp_path / "docs.index"), "--query", "eating", "--json"], capsys
    )
    assert len(json.loads(out)["hits"]) == 2


def test_a_run_without_best_takes_final_and_an_interrupted_run_says_what_to_do(
    stsb_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    no_dev = tmp_path / "no-dev"
    shutil.copytree(stsb_run / "final", no_dev / "final")  # a run with no dev split keeps no best/
    assert textsiamese.load(no_dev, device="cpu").source == str(no_dev / "final")
    assert f"using {no_dev / 'final'}" in capsys.readouterr().err

    interrupted = tmp_path / "interrupted"
    shutil.copytree(stsb_run / "checkpoint", interrupted / "checkpoint")
    status = main(["info", "--model", str(interrupted)])
    err = capsys.readouterr().err
    assert status == 2 and "--resume" in err and len(err.strip().splitlines()) == 1


def test_an_id_column_is_the_id_in_index_build_search_and_classify(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = agnews_rows(shared_data, 40)
    docs = write_csv(
        tmp_path / "docs.csv",
        ["id", "label", "description"],
        [[f"news-{n:03d}", row["label"], row["description"]] for n, row in enumerate(rows)],
    )
    run_cli(
        ["index", "build", "--corpus", str(docs), "--text-column", "description", "--no-progress"], capsys
    )
    queries = write_csv(
        tmp_path / "queries.csv",
        ["id", "text"],
        [[f"q-{n:03d}", row["title"]] for n, row in enumerate(rows)],
    )
    index = str(tmp_path / "docs.index")
    out, _ = run_cli(["search", "--index", index, "--queries", str(queries), "-k", "5", "--json"], capsys)
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["id"] for r in records] == [f"q-{n:03d}" for n in range(40)]
    for record in records:
        for hit in record["hits"]:
            assert hit["id"].startswith("news-") and "id" not in hit.get("metadata", {})
    # each title's own description (same number) is among its top 5 for most titles
    own = sum(r["id"][2:] in {h["id"][5:] for h in r["hits"]} for r in records)
    assert own >= 30, own

    refs = write_csv(
        tmp_path / "refs.csv",
        ["id", "label", "text"],
        [[f"ref-{n}", row["label"], row["title"]] for n, row in enumerate(rows[:20])],
    )
    texts = write_csv(
        tmp_path / "texts.csv",
        ["id", "text"],
        [[f"t-{n}", row["title"]] for n, row in enumerate(rows[20:])],
    )
    run_cli(["enroll", "--references", str(refs), "--output", str(tmp_path / "refs")], capsys)
    predicted = tmp_path / "predicted.csv"
    run_cli(
        [
            "classify",
            "--references",
            str(tmp_path / "refs"),
            "--texts",
            str(texts),
            "--output",
            str(predicted),
        ],
        capsys,
    )
    with predicted.open(encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        ids = [line[0] for line in reader]
    assert header == ["id", "text", "predicted", "similarity"]
    assert ids == [f"t-{n}" for n in range(20)]


def test_enroll_defaults_to_the_nearest_class_centroid(
    shared_data: Path,
    tmp_path: Path,
    default_model: textsiamese.SiameseModel,
    capsys: pytest.CaptureFixture[str],
) -> None:
    rows = agnews_rows(shared_data, 200)
    references: dict[str, list[str]] = {}
    for row in rows:
        if len(references.setdefault(row["label"], [])) < 4:
            references[row["label"]].append(row["title"])
    chosen = {title for titles in references.values() for title in titles}
    refs = write_csv(
        tmp_path / "refs.csv",
        ["label", "text"],
        [[label, title] for label, titles in references.items() for title in titles],
    )
    held_out = [row for row in rows if row["title"] not in chosen][:60]
    texts = write_csv(tmp_path / "texts.csv", ["label", "text"], [[r["label"], r["title"]] for r in held_out])
    _, err = run_cli(["enroll", "--references", str(refs), "--output", str(tmp_path / "refs")], capsys)
    assert "strategy centroid (default" in err
    predicted = tmp_path / "predicted.csv"
    run_cli(
        [
            "classify",
            "--references",
            str(tmp_path / "refs"),
            "--texts",
            str(texts),
            "--output",
            str(predicted),
        ],
        capsys,
    )
    with predicted.open(encoding="utf-8") as handle:
        got = [row["predicted"] for row in csv.DictReader(handle)]

    # independently: mean of each class's normalised reference vectors, nearest by cosine
    labels = list(references)
    centroids = np.stack(
        [default_model.encode(references[label], role="document").mean(axis=0) for label in labels]
    )
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    queries = default_model.encode([r["title"] for r in held_out], role="query")
    expected = [labels[i] for i in np.argmax(queries @ centroids.T, axis=1)]
    assert got == expected


def test_a_missing_column_is_advised_with_the_option_the_command_has(
    tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def error_of(args: list[str]) -> str:
        status = main(args)
        err = capsys.readouterr().err
        assert status == 2 and len(err.strip().splitlines()) == 1, err
        return err

    docs = write_csv(tmp_path / "docs.csv", ["id", "sentence"], [["d1", "a man is eating"]])
    err = error_of(["index", "build", "--corpus", str(docs), "--model", str(tiny_model_dir)])
    assert "header lacks column(s) 'text'; it has id, sentence" in err
    assert "--text-column" in err and "--columns" not in err
    err = error_of(
        ["index", "build", "--corpus", str(docs), "--text-column", "sentence", "--id-column", "key"]
    )
    assert "header lacks column(s) 'key'" in err and "--id-column" in err and "--text-column" not in err
    err = error_of(["enroll", "--references", str(docs), "--output", str(tmp_path / "refs")])
    assert "--text-column" in err and "--columns" not in err

    pairs = write_csv(tmp_path / "pairs.csv", ["question", "answer"], [["a", "b"]])
    err = error_of(["score", "--pairs", str(pairs), "--model", str(tiny_model_dir)])
    assert "header lacks column(s) 'sentence1', 'sentence2'" in err
    assert err.rstrip().endswith("(remap names with --columns canonical=actual)")

    # in Python the advice names the reader's own parameter
    with pytest.raises(textsiamese.InputError, match=r"text_column='\.\.\.'\)$"):
        textsiamese.data.read_corpus(docs)
    with pytest.raises(textsiamese.InputError, match=r"columns=\{'canonical': 'actual'\}\)$"):
        textsiamese.data.read_pairs(pairs)


def _tree(directory: Path) -> dict[str, tuple[int, bytes]]:
    """Every file under ``directory``: its modification time and bytes."""
    return {
        str(p.relative_to(directory)): (p.stat().st_mtime_ns, p.read_bytes())
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def test_training_again_into_a_run_is_refused_until_resume_or_overwrite(
    stsb_run: Path, tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "x"
    shutil.copytree(stsb_run, run)
    (run / "notes.txt").write_text("mine, not the run's\n")
    before = _tree(run)
    argv = ["train", "stsb", "--output", str(run), "--no-progress", "--set", f"model.base={tiny_model_dir}"]
    for setting in ("max_steps=1", "batch_size=4", "data.limit=8", "data.dev_limit=8", "eval_every=1"):
        argv += ["--set", setting]
    capsys.readouterr()
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(REPO)
        status = main(argv)
        err = capsys.readouterr().err
        assert status == 2 and len(err.strip().splitlines()) == 1, err
        assert f"{run} already holds a training run" in err and "--resume" in err and "--overwrite" in err
        assert _tree(run) == before  # nothing written, nothing removed

        with pytest.raises(SystemExit) as both:  # the two say opposite things: argparse refuses
            main([*argv, "--resume", "--overwrite"])
        assert both.value.code == 2
        assert "not allowed with argument" in capsys.readouterr().err

        old_metrics = (run / "metrics.jsonl").read_text(encoding="utf-8")
        assert main([*argv, "--overwrite"]) == 0
    capsys.readouterr()
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    assert metrics and not (run / "metrics.jsonl").read_text(encoding="utf-8").startswith(old_metrics)
    assert max(m.get("step", 0) for m in metrics) == 1  # the new run's one step, not the old run's two
    assert json.loads((run / "results.json").read_text(encoding="utf-8"))["steps"] == 1
    assert (run / "final").is_dir() and (run / "notes.txt").read_text() == "mine, not the run's\n"


def test_info_aligns_its_labels_and_index_remove_counts_in_words(
    tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, _ = run_cli(["info", "--model", str(tiny_model_dir)], capsys)
    lines = out.splitlines()
    assert any(line.startswith("document tower:") for line in lines)
    starts = {len(line) - len(line.split(":", 1)[1].lstrip()) for line in lines}
    assert len(starts) == 1, out  # every value begins in the same column
    assert all(": " in line for line in lines)

    docs = write_csv(tmp_path / "docs.csv", ["id", "text"], [["d1", "a man is eating"], ["d2", "a dog runs"]])
    run_cli(
        ["index", "build", "--corpus", str(docs), "--model", str(tiny_model_dir), "--no-progress"], capsys
    )
    _, err = run_cli(["index", "remove", "--index", str(tmp_path / "docs.index"), "--ids", "d1"], capsys)
    assert "removed 1 row; 1 row, flat" in err


def test_mined_hard_negatives_train_as_triplets(
    shared_data: Path, tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = agnews_rows(shared_data, 30)
    pairs = write_csv(
        tmp_path / "train.csv", ["sentence1", "sentence2"], [[r["title"], r["description"]] for r in rows]
    )
    hard = tmp_path / "hard.csv"
    mine = ["mine", "--pairs", str(pairs), "--negatives", "2", "--output", str(hard), "--no-progress"]
    run_cli([*mine, "--model", str(tiny_model_dir)], capsys)
    with hard.open(encoding="utf-8") as handle:
        mined = list(csv.DictReader(handle))
    assert list(mined[0]) == ["anchor", "positive", "negative_1", "negative_2"] and len(mined) >= 5

    # what train reads from it: negative_1 is the triplet's negative, negative_2 a further one
    triplets = textsiamese.data.read_triplets(hard)
    assert triplets.negative == [row["negative_1"] for row in mined]
    assert triplets.more_negatives == [[row["negative_2"]] for row in mined]

    output = tmp_path / "runs" / "hard"
    argv = ["train", "nli", "--output", str(output), "--no-progress", "--set", f"model.base={tiny_model_dir}"]
    for setting in (f"data.train={hard}", "data.format=auto", "data.dev_limit=24", "max_steps=2"):
        argv += ["--set", setting]
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(REPO)  # the recipe's dev file is ../shared/data from the repository root
        run_cli([*argv, "--set", "batch_size=4", "--set", "cache_batch_size=4", "--json"], capsys)
    assert json.loads((output / "results.json").read_text())["steps"] == 2
    assert (output / "final" / "config.json").is_file()


def test_eval_on_a_scored_file_correlates_with_the_gold_not_with_the_score(
    shared_data: Path, tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = ["--model", str(tiny_model_dir)]
    eval_sts = ["eval", "--task", "sts", "--json", *model, "--data"]
    # gold under its own name: score adds a 'score' column, which eval must not take as the gold
    pairs = write_csv(
        tmp_path / "pairs.csv", ["sentence1", "sentence2", "similarity"], stsb_rows(shared_data, 40)
    )
    scored = tmp_path / "scored.csv"
    run_cli(["score", "--pairs", str(pairs), "--output", str(scored), *model], capsys)
    assert scored.read_text(encoding="utf-8").splitlines()[0] == "sentence1,sentence2,similarity,score"
    status = main([*eval_sts, str(scored)])
    err = capsys.readouterr().err.strip()
    assert status == 2 and len(err.splitlines()) == 1, err
    assert "column 'score'" in err and "own cosine similarities" in err and "--columns score=COLUMN" in err
    assert "similarity" in err.rsplit("other columns", 1)[1]
    out, _ = run_cli([*eval_sts, str(scored), "--columns", "score=similarity"], capsys)
    real = json.loads(out)
    out, _ = run_cli([*eval_sts, str(pairs), "--columns", "score=similarity"], capsys)
    assert real == json.loads(out) and real["n"] == 40 and real["spearman"] < 0.99

    # gold already called 'score': the model's goes to predicted_score and eval reads the gold unasked
    gold = write_csv(tmp_path / "gold.csv", ["sentence1", "sentence2", "score"], stsb_rows(shared_data, 40))
    run_cli(["score", "--pairs", str(gold), "--output", str(scored), *model], capsys)
    out, _ = run_cli([*eval_sts, str(scored)], capsys)
    assert json.loads(out) == real


def test_index_add_reads_the_columns_index_build_was_given(
    shared_data: Path, tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = agnews_rows(shared_data, 30)
    columns = ["doc", "label", "body"]
    first = write_csv(
        tmp_path / "news.csv",
        columns,
        [[f"n{i}", r["label"], r["description"]] for i, r in enumerate(rows[:20])],
    )
    more = write_csv(
        tmp_path / "more.csv",
        columns,
        [[f"n{i}", r["label"], r["description"]] for i, r in enumerate(rows) if i >= 20],
    )
    index = tmp_path / "news.index"
    build = ["index", "build", "--corpus", str(first), "--text-column", "body", "--id-column", "doc"]
    run_cli([*build, "--output", str(index), "--model", str(tiny_model_dir), "--no-progress"], capsys)
    _, err = run_cli(["index", "add", "--index", str(index), "--corpus", str(more), "--no-progress"], capsys)
    assert "added 10 rows" in err
    stored = textsiamese.Index.load(index)
    assert stored.ids == [f"n{i}" for i in range(30)]
    for i in (0, 25):
        hit = stored.get(f"n{i}")
        assert hit.text == rows[i]["description"] and hit.metadata == {"label": rows[i]["label"]}
    out, _ = run_cli(["index", "info", "--index", str(index), "--json"], capsys)
    assert json.loads(out)["corpus_columns"] == {"text_column": "body", "id_column": "doc"}

    # a manifest written before the columns were recorded: add reads with the old defaults, as it did
    manifest = index / "manifest.json"
    old = json.loads(manifest.read_text(encoding="utf-8"))
    del old["corpus_columns"]
    manifest.write_text(json.dumps(old), encoding="utf-8")
    assert textsiamese.Index.load(index).corpus_columns == {}
    status = main(["index", "add", "--index", str(index), "--corpus", str(more), "--no-progress"])
    assert status == 2 and "lacks column(s) 'text'" in capsys.readouterr().err


def test_search_with_k_above_the_index_size_returns_every_row(
    shared_data: Path, tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = agnews_rows(shared_data, 8)
    docs = write_csv(tmp_path / "docs.csv", ["text"], [[r["description"]] for r in rows])
    run_cli(
        ["index", "build", "--corpus", str(docs), "--model", str(tiny_model_dir), "--no-progress"], capsys
    )
    queries = write_csv(tmp_path / "queries.csv", ["text"], [[r["title"]] for r in rows[:3]])
    search = ["search", "--index", str(tmp_path / "docs.index"), "--json"]
    out, err = run_cli([*search, "--queries", str(queries), "-k", "20"], capsys)
    assert (
        err
        == "textsiamese search: warning: k=20 is larger than the index (8 rows); returning 8 hits per query\n"
    )
    records = [json.loads(line) for line in out.splitlines()]
    assert len(records) == 3
    for record in records:
        assert sorted(hit["id"] for hit in record["hits"]) == sorted(str(n) for n in range(1, 9))
    out, _ = run_cli([*search, "--query", rows[0]["title"], "-k", "8"], capsys)
    ranked = [hit["id"] for hit in records[0]["hits"]]
    assert [hit["id"] for hit in json.loads(out)["hits"]] == ranked  # as if asked for exactly the index size
    status = main([*search, "--query", "oil", "-k", "0"])
    assert status == 2 and "-k 0 must be between 1" in capsys.readouterr().err
