"""Reliability, bad input: every case of issue 8's list through the CLI and through the Python API.

CLI: exit status 2, one stderr line naming the file (and line / column where there is one), no traceback,
no output file. API: a ``textsiamese.errors`` exception with the same message. The table in
``docs/reliability.md`` points at these tests.
"""

from __future__ import annotations

import json
import shutil
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

import textsiamese
from textsiamese.cli import main
from textsiamese.data import read_corpus, read_pairs, read_table, read_triplets
from textsiamese.data.stream import iter_pair_chunks
from textsiamese.errors import InputError, ModelError, TextSiameseError

PAIRS_HEADER = "sentence1,sentence2,score,label\n"
PAIR_ROWS = [
    "a man is eating food,a man eats food,4.5,1",
    "a man is eating food,the dog runs in the park,0.5,0",
    "a woman plays guitar,a woman is playing the guitar,4.8,1",
    "a woman plays guitar,a cat on the ball,0.2,0",
    "the dog runs,a dog is running in the park,4.1,1",
    "the dog runs,a man plays the guitar,0.3,0",
    "a cat eats,the cat is eating food,4.0,1",
    "a cat eats,a woman runs,1.0,0",
]
GOOD_PAIRS = PAIRS_HEADER + "\n".join(PAIR_ROWS) + "\n"


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Iterator[None]:
    """Tiny models on a shared 2-core machine: one intra-op thread is many times faster than two."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    status = main(args)
    out, err = capsys.readouterr()
    return status, out, err


def assert_one_line_error(status: int, err: str, command: str, *fragments: str) -> None:
    lines = err.strip().split("\n")
    errors = [line for line in lines if ": error: " in line]
    assert status == 2, err
    assert len(errors) == 1 and errors[0] == lines[-1], err
    assert errors[0].startswith(f"textsiamese {command}: error: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in errors[0], (fragment, err)


# --------------------------------------------------------------------------------------------------------
# Data files: each case through score (streaming reader), eval (whole-file reader) and the API readers.

BAD_PAIR_FILES: list[tuple[str, bytes | None, str]] = [
    ("missing file", None, "no such file"),
    ("empty file", b"", "file is empty"),
    ("whitespace-only file", b"  \n\n \t\n", "file is empty"),
    ("header only", b"sentence1,sentence2,score\n", "no data rows after the header"),
    (
        "invalid UTF-8",
        b"sentence1,sentence2,score\na,b,1\nc,d\xff\xfe,2\n",
        "line 3: invalid UTF-8 byte 0xff",
    ),
    ("latin-1 file", "sentence1,sentence2,score\ncaf\u00e9,b,1\n".encode("latin-1"), "line 2: invalid UTF-8"),
    ("UTF-16 file", "sentence1,sentence2,score\na,b,1\n".encode("utf-16"), "line 1: invalid UTF-8 byte 0xff"),
    ("header lacks columns", b"question,answer,score\na,b,1\n", "line 1: header lacks column(s) 'sentence1'"),
    ("empty column name", b"sentence1,,sentence2\na,b,c\n", "line 1: header has an empty column name"),
    ("column named twice", b"sentence1,sentence2,sentence2\na,b,c\n", "column 'sentence2'"),
    ("short row", b"sentence1,sentence2,score\na,b,1\nc,d\n", "line 3: row has 2 cells but the header has 3"),
    ("long row", b"sentence1,sentence2,score\na,b,1,x\n", "line 2: row has 4 cells but the header has 3"),
    ("empty text", b"sentence1,sentence2,score\na,b,1\n,d,2\n", "line 3, column 'sentence1': text is empty"),
    (
        "whitespace text",
        b"sentence1,sentence2,score\na,  \t ,1\n",
        "line 2, column 'sentence2': text is empty",
    ),
    (
        "NaN score",
        b"sentence1,sentence2,score\na,b,nan\n",
        "line 2, column 'score': score 'nan' is not a finite",
    ),
    ("inf score", b"sentence1,sentence2,score\na,b,-inf\n", "column 'score': score '-inf' is not a finite"),
    (
        "text score",
        b"sentence1,sentence2,score\na,b,high\n",
        "column 'score': cannot parse 'high' as a number",
    ),
    (
        "missing score",
        b"sentence1,sentence2,score\na,b,1\nc,d,\n",
        "line 3, column 'score': score is missing",
    ),
    (
        "label 2",
        b"sentence1,sentence2,label\na,b,2\n",
        "line 2, column 'label': label must be 0 or 1, got '2'",
    ),
    ("label -1", b"sentence1,sentence2,label\na,b,-1\n", "column 'label': label must be 0 or 1, got '-1'"),
    ("label 0.5", b"sentence1,sentence2,label\na,b,0.5\n", "column 'label': label must be 0 or 1, got '0.5'"),
    ("label yes", b"sentence1,sentence2,label\na,b,yes\n", "column 'label': label must be 0 or 1, got 'yes'"),
    (
        "missing label",
        b"sentence1,sentence2,label\na,b,1\nc,d,\n",
        "line 3, column 'label': label is missing",
    ),
    ("unclosed quote", b'sentence1,sentence2,score\na,"b,1\nc,d,2\n', "line 2: row has 2 cells"),
    ("line break in a header name", b'"sentence\n1",sentence2\na,b\n', "it has 'sentence\\n1', sentence2"),
]


def _write(tmp_path: Path, content: bytes | None, name: str = "in.csv") -> Path:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    return path


@pytest.mark.parametrize(("case", "content", "expected"), BAD_PAIR_FILES, ids=[c[0] for c in BAD_PAIR_FILES])
def test_bad_pair_files_cli_score_and_eval(
    tmp_path: Path,
    tiny_model_dir: Path,
    capsys: pytest.CaptureFixture[str],
    case: str,
    content: bytes | None,
    expected: str,
) -> None:
    data = _write(tmp_path, content)
    out = tmp_path / "out.csv"
    task = "classification" if b"label" in (content or b"") else "sts"
    for command in (
        ["score", "--pairs", str(data), "--output", str(out)],
        ["eval", "--task", task, "--data", str(data)],
        ["convert", "--input", str(data), "--output", str(out)],
    ):
        model = [] if command[0] == "convert" else ["--model", str(tiny_model_dir)]
        status, stdout, err = run_cli([*command, *model], capsys)
        assert_one_line_error(status, err, command[0], str(data), expected)
        assert stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ([] if content is None else ["in.csv"])


@pytest.mark.parametrize(("case", "content", "expected"), BAD_PAIR_FILES, ids=[c[0] for c in BAD_PAIR_FILES])
def test_bad_pair_files_api(tmp_path: Path, case: str, content: bytes | None, expected: str) -> None:
    data = _write(tmp_path, content)
    with pytest.raises(InputError) as whole:
        read_pairs(data)
    assert expected in str(whole.value) and str(data) in str(whole.value)
    with pytest.raises(InputError) as streamed:
        list(iter_pair_chunks(data, chunk_rows=1))
    assert str(streamed.value) == str(whole.value)  # streaming and whole-file readers agree word for word


JSONL_CASES = [
    (b'{"sentence1": "a", "sentence2": "b"}\n{"sentence1": "c", \n', "line 2: invalid JSON"),
    (b'{"sentence1": "a", "sentence2": "b"}\n["c", "d"]\n', "line 2: expected a JSON object per line"),
    (b'{"sentence1": "a", "sentence2": null}\n', "line 1, column 'sentence2': text is empty"),
    (b'{"sentence1": "a"}\n', "header lacks column(s) 'sentence2'"),
    (b'{"sentence1": "a", "sentence2": "b", "score": "NaN"}\n', "score 'NaN' is not a finite number"),
    (
        b'{"sentence1": "a", "sentence2": "b", "label": true}\n{"sentence1": "a", "sentence2": "b", "label": 3}\n',
        "line 2, column 'label': label must be 0 or 1, got '3'",
    ),
]


@pytest.mark.parametrize(("content", "expected"), JSONL_CASES)
def test_bad_jsonl(
    tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str], content: bytes, expected: str
) -> None:
    data = _write(tmp_path, content, "in.jsonl")
    with pytest.raises(InputError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        read_pairs(data)
    status, stdout, err = run_cli(
        [
            "score",
            "--pairs",
            str(data),
            "--output",
            str(tmp_path / "o.jsonl"),
            "--model",
            str(tiny_model_dir),
        ],
        capsys,
    )
    assert_one_line_error(status, err, "score", str(data), expected)
    assert stdout == "" and not (tmp_path / "o.jsonl").exists()


def test_out_of_range_scores_api(tmp_path: Path) -> None:
    data = _write(tmp_path, b"sentence1,sentence2,score\na,b,5\nc,d,5.5\n")
    with pytest.raises(InputError, match=r"line 3, column 'score': score 5.5 is outside the range 0 to 5"):
        read_pairs(data, score_range=(0.0, 5.0))


def test_directory_and_unreadable_file(
    tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "folder.csv"
    folder.mkdir()
    status, _, err = run_cli(["score", "--pairs", str(folder), "--model", str(tiny_model_dir)], capsys)
    assert_one_line_error(status, err, "score", "is a directory, expected a file")
    with pytest.raises(InputError, match="is a directory"):
        read_pairs(folder)

    locked = _write(tmp_path, GOOD_PAIRS.encode())

    def refuse(self: Path, *args: object, **kwargs: object) -> object:
        if self == locked:
            raise PermissionError(13, "Permission denied")
        return real_open(self, *args, **kwargs)

    def refuse_bytes(self: Path) -> bytes:
        if self == locked:
            raise PermissionError(13, "Permission denied")
        return real_read_bytes(self)

    real_open, real_read_bytes = Path.open, Path.read_bytes
    monkeypatch.setattr(Path, "open", refuse)
    monkeypatch.setattr(Path, "read_bytes", refuse_bytes)
    for command in (["score", "--pairs"], ["eval", "--task", "sts", "--data"]):
        status, _, err = run_cli([*command, str(locked), "--model", str(tiny_model_dir)], capsys)
        assert_one_line_error(status, err, command[0], str(locked), "cannot read: Permission denied")
    with pytest.raises(InputError, match="cannot read: Permission denied"):
        read_pairs(locked)


def test_late_bad_row_leaves_no_output_and_keeps_the_old_file(
    tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [f"text number {i},another text {i}" for i in range(9)] + ["bad row,"]
    data = _write(tmp_path, ("sentence1,sentence2\n" + "\n".join(rows) + "\n").encode())
    out = tmp_path / "scores.csv"
    out.write_text("previous results\n")
    status, stdout, err = run_cli(
        [
            "score",
            "--pairs",
            str(data),
            "--output",
            str(out),
            "--chunk-size",
            "2",
            "--model",
            str(tiny_model_dir),
        ],
        capsys,
    )
    assert_one_line_error(status, err, "score", "line 11, column 'sentence2': text is empty")
    assert stdout == ""
    assert out.read_text() == "previous results\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv", "scores.csv"]  # no temp file left


# --------------------------------------------------------------------------------------------------------
# --errors replace: every command that reads a data file decodes with U+FFFD instead of stopping.


def _inputs(tmp_path: Path, bad: bool) -> dict[str, Path]:
    b = b"\xff" if bad else b""
    pairs = (
        (PAIRS_HEADER + "\n".join(PAIR_ROWS) + "\n")
        .encode()
        .replace(b"plays guitar,a woman", b"pl" + b + b"ays guitar,a woman")
    )
    triplets = (
        b"anchor,positive,negative\na man eats,a man is eating" + b + b",a dog runs\na cat,the cat,a guitar\n"
    )
    refs = b"label,text\nfood,a man is eating food\nmusic,a woman plays the gui" + b + b"tar\n"
    texts = b"text,label\nthe man eats" + b + b" food,food\na guitar,music\n"
    names = {"pairs.csv": pairs, "triplets.csv": triplets, "refs.csv": refs, "texts.csv": texts}
    folder = tmp_path / ("bad" if bad else "good")
    folder.mkdir()
    for name, content in names.items():
        (folder / name).write_bytes(content)
    return {name.split(".")[0]: folder / name for name in names}


def _commands(files: dict[str, Path], out: Path, references: Path) -> list[tuple[list[str], Path]]:
    """(command, file whose bad byte it should report)."""
    return [
        (["score", "--pairs", str(files["pairs"]), "--output", str(out / "s.csv")], files["pairs"]),
        (["eval", "--task", "sts", "--data", str(files["pairs"])], files["pairs"]),
        (["eval", "--task", "classification", "--data", str(files["pairs"]), "--folds", "2"], files["pairs"]),
        (
            [
                "eval",
                "--task",
                "classification",
                "--data",
                str(files["pairs"]).replace("bad", "good"),
                "--dev",
                str(files["pairs"]),
            ],
            files["pairs"],
        ),
        (["eval", "--task", "retrieval", "--data", str(files["pairs"])], files["pairs"]),
        (["eval", "--task", "triplet", "--data", str(files["triplets"])], files["triplets"]),
        (["calibrate", "--data", str(files["pairs"]), "--output", str(out / "calibrated")], files["pairs"]),
        (["convert", "--input", str(files["pairs"]), "--output", str(out / "c.csv")], files["pairs"]),
        (["enroll", "--references", str(files["refs"]), "--output", str(out / "refs")], files["refs"]),
        (
            [
                "enroll",
                "--references",
                str(files["refs"]).replace("bad", "good"),
                "--output",
                str(out / "refs2"),
                "--dev",
                str(files["texts"]),
            ],
            files["texts"],
        ),
        (["classify", "--references", str(references), "--texts", str(files["texts"])], files["texts"]),
    ]


def test_every_reading_command_reports_the_bad_byte_or_replaces_it(
    tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good, bad = _inputs(tmp_path, bad=False), _inputs(tmp_path, bad=True)
    references = tmp_path / "references"
    model = ["--model", str(tiny_model_dir)]
    assert (
        run_cli(["enroll", "--references", str(good["refs"]), "--output", str(references), *model], capsys)[0]
        == 0
    )
    strict_out, replace_out = tmp_path / "strict", tmp_path / "replace"
    strict_out.mkdir()
    replace_out.mkdir()
    for command, culprit in _commands(bad, strict_out, references):
        uses_model = [] if command[0] == "convert" else model
        status, stdout, err = run_cli([*command, *uses_model], capsys)
        assert_one_line_error(
            status, err, command[0], str(culprit), "invalid UTF-8 byte 0xff", "--errors replace"
        )
        assert stdout == ""
    assert list(strict_out.iterdir()) == []
    for command, _ in _commands(bad, replace_out, references):
        uses_model = [] if command[0] == "convert" else model
        status, _, err = run_cli([*command, *uses_model, "--errors", "replace"], capsys)
        assert status == 0, (command, err)
    assert "\ufffd" in (replace_out / "c.csv").read_text("utf-8")


# --------------------------------------------------------------------------------------------------------
# Texts longer than the model's maximum: one warning giving the count, per command run.


def test_truncation_is_one_warning_line_with_the_count(
    tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    long = " ".join(["word"] * 200)
    rows = [f"{long if i % 3 == 0 else 'short text'},another text {i},{i % 5}" for i in range(10)]
    data = _write(tmp_path, ("sentence1,sentence2,score\n" + "\n".join(rows) + "\n").encode())
    expected = "warning: 4 of 20 texts were longer than 32 tokens and were truncated"
    for command, rows in (
        (
            ["score", "--pairs", str(data), "--output", str(tmp_path / "o.csv"), "--chunk-size", "3"],
            "lines 2, 5, 8, 11",
        ),
        (["score", "--pairs", str(data), "--output", str(tmp_path / "o.csv")], "lines 2, 5, 8, 11"),
        (["eval", "--task", "sts", "--data", str(data)], "pairs 0, 3, 6, 9"),
    ):
        status, _, err = run_cli([*command, "--model", str(tiny_model_dir)], capsys)
        assert status == 0, err
        warned = [line for line in err.splitlines() if "truncated" in line]
        assert warned == [f"textsiamese {command[0]}: {expected} ({rows})"], err
    model = textsiamese.load(tiny_model_dir, device="cpu")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.encode([long, "short", long])
    assert [str(w.message) for w in caught] == [
        "2 of 3 texts were longer than 32 tokens and were truncated (indexes 0, 2)"
    ]


def test_sts_eval_needs_two_pairs_and_varying_gold(
    tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    one = _write(tmp_path, b"sentence1,sentence2,score\na,b,1\n", "one.csv")
    flat = _write(tmp_path, b"sentence1,sentence2,score\na,b,2\nc,d,2\n", "flat.csv")
    for data, expected in ((one, "needs at least two pairs"), (flat, "every gold score is 2")):
        status, stdout, err = run_cli(
            ["eval", "--task", "sts", "--data", str(data), "--json", "--model", str(tiny_model_dir)], capsys
        )
        assert_one_line_error(status, err, "eval", str(data), expected)
        assert stdout == ""


def test_other_readers_name_file_line_and_column(tmp_path: Path) -> None:
    triplets = _write(tmp_path, b"anchor,positive,negative\na,b,c\nd,,f\n", "t.csv")
    with pytest.raises(InputError, match=r"t.csv, line 3, column 'positive': text is empty"):
        read_triplets(triplets)
    corpus = _write(tmp_path, b"id,text\n1,a\n1,b\n", "c.csv")
    with pytest.raises(InputError, match=r"c.csv, line 3, column 'id': id '1' already used on line 2"):
        read_corpus(corpus, id_column="id")
    with pytest.raises(InputError, match="unknown table format"):
        read_table(corpus, "xlsx")


# --------------------------------------------------------------------------------------------------------
# Model directories: missing files, corrupted or pickled weights.


def _damage(source: Path, target: Path, how: Callable[[Path], None]) -> Path:
    shutil.copytree(source, target)
    how(target)
    return target


def _flip_header(d: Path) -> None:
    data = bytearray((d / "model.safetensors").read_bytes())
    data[20:60] = b"\x00" * 40
    (d / "model.safetensors").write_bytes(bytes(data))


def _truncate(d: Path) -> None:
    data = (d / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(data[: len(data) // 2])


def _pickled_only(d: Path) -> None:
    from safetensors.torch import load_file

    state = load_file(str(d / "model.safetensors"))
    (d / "model.safetensors").unlink()
    torch.save(state, d / "pytorch_model.bin")


def _remove(*names: str) -> Callable[[Path], None]:
    def remove(d: Path) -> None:
        for name in names:
            for path in d.glob(name):
                shutil.rmtree(path) if path.is_dir() else path.unlink()

    return remove


def _write_file(name: str, content: str) -> Callable[[Path], None]:
    return lambda d: (d / name).write_text(content)


MODEL_CASES: list[tuple[str, Callable[[Path], None], str]] = [
    ("weights missing", _remove("model.safetensors"), "model.safetensors is missing"),
    ("weights header corrupted", _flip_header, "weights are corrupted or do not fit the config"),
    ("weights truncated", _truncate, "weights are corrupted or do not fit the config"),
    ("weights random bytes", _write_file("model.safetensors", "\x07" * 3000), "weights are corrupted"),
    ("weights empty", _write_file("model.safetensors", ""), "weights are corrupted"),
    ("pickled weights only", _pickled_only, "holds only pickled weights (pytorch_model.bin)"),
    ("tower assets missing", _remove("towers"), "towers/shared/ is missing"),
    ("tokenizer missing", _remove("towers/shared/tokenizer*"), "no tokenizer vocabulary"),
    (
        "encoder config missing",
        _remove("towers/shared/config.json"),
        "config.json (the encoder's architecture)",
    ),
    ("config not JSON", _write_file("config.json", "{not json"), "config.json: cannot read"),
    (
        "config incomplete",
        _write_file("config.json", '{"format": "textsiamese-model"}'),
        "incomplete model config",
    ),
    (
        "config from the future",
        _write_file("config.json", '{"format": "textsiamese-model", "format_version": 99}'),
        "written by a newer textsiamese",
    ),
    ("config.json missing", _remove("config.json"), "not a model directory (no config.json or modules.json)"),
]


@pytest.mark.parametrize(("case", "how", "expected"), MODEL_CASES, ids=[c[0] for c in MODEL_CASES])
def test_damaged_model_directories(
    tmp_path: Path,
    tiny_model_dir: Path,
    capsys: pytest.CaptureFixture[str],
    case: str,
    how: Callable[[Path], None],
    expected: str,
) -> None:
    damaged = _damage(tiny_model_dir, tmp_path / "model", how)
    with pytest.raises(ModelError) as error:
        textsiamese.load(damaged, device="cpu")
    assert expected in str(error.value)
    data = _write(tmp_path, GOOD_PAIRS.encode())
    for command in (["info"], ["score", "--pairs", str(data), "--output", str(tmp_path / "o.csv")]):
        status, stdout, err = run_cli([*command, "--model", str(damaged)], capsys)
        assert_one_line_error(status, err, command[0], str(damaged), expected)
        assert stdout == ""
    assert not (tmp_path / "o.csv").exists()


def test_lstm_model_without_or_with_a_broken_vocabulary(tmp_path: Path, tiny_lstm: torch.nn.Module) -> None:
    saved = textsiamese.SiameseModel(tiny_lstm).save(tmp_path / "lstm")  # type: ignore[arg-type]
    (saved / "towers/shared/vocab.json").write_text("[1, 2")
    with pytest.raises(ModelError, match="cannot read the LSTM vocabulary"):
        textsiamese.load(saved, device="cpu")
    (saved / "towers/shared/vocab.json").write_text(json.dumps(["<pad>", "<unk>", "a"]))
    with pytest.raises(ModelError, match="vocabulary has 3 words, config says 17"):
        textsiamese.load(saved, device="cpu")


def test_model_path_that_is_missing_or_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = _write(tmp_path, b"x", "model.bin")
    for path, expected in (
        (tmp_path / "absent", "no such model directory"),
        (file, "expected a model directory"),
    ):
        with pytest.raises(ModelError, match=expected):
            textsiamese.load(path)
        status, _, err = run_cli(["info", "--model", str(path)], capsys)
        assert_one_line_error(status, err, "info", expected)


def test_every_input_error_is_a_textsiamese_error() -> None:
    assert issubclass(InputError, TextSiameseError) and issubclass(ModelError, TextSiameseError)
    error = InputError("f.csv", "bad", line=3, column="score")
    assert str(error) == "f.csv, line 3, column 'score': bad"
    assert (error.source, error.line, error.column, error.reason) == ("f.csv", 3, "score", "bad")


# --------------------------------------------------------------------------------------------------------
# Indexes (search): manifest not matching the model, k larger than the index, an empty index, bad corpora.


def _build_index(tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    corpus = _write(
        tmp_path, b"id,text\nn1,a man plays the guitar\nn2,a woman eats food\nn3,the dog runs\n", "c.csv"
    )
    index = tmp_path / "idx"
    command = ["index", "build", "--corpus", str(corpus), "--id-column", "id", "--output", str(index)]
    status, _, err = run_cli(
        [*command, "--no-progress", "--model", str(model_dir), "--device", "cpu"], capsys
    )
    assert status == 0, err
    return index


def test_index_bad_input_cli_and_api(
    tmp_path: Path, tiny_model_dir: Path, tiny_lstm: torch.nn.Module, capsys: pytest.CaptureFixture[str]
) -> None:
    from textsiamese.search import Index

    index = _build_index(tmp_path, tiny_model_dir, capsys)
    search = ["search", "--index", str(index), "--query", "a guitar", "--device", "cpu"]
    # -k above the index size: every row, with one warning line (was: exit 2, "-k 4 must be between ...")
    status, stdout, err = run_cli([*search, "-k", "4", "--json"], capsys)
    assert status == 0 and len(json.loads(stdout)["hits"]) == 3, err
    assert (
        err
        == "textsiamese search: warning: k=4 is larger than the index (3 rows); returning 3 hits per query\n"
    )
    status, stdout, err = run_cli([*search, "-k", "0"], capsys)
    assert_one_line_error(status, err, "search", "-k 0")
    assert stdout == ""
    other = textsiamese.SiameseModel(tiny_lstm).save(tmp_path / "other")  # type: ignore[arg-type]
    status, _, err = run_cli([*search, "--model", str(other)], capsys)
    assert_one_line_error(status, err, "search", "fingerprint")
    with pytest.raises(ModelError, match="fingerprint"):
        Index.load(index, model=textsiamese.load(other, device="cpu"))
    model = textsiamese.load(tiny_model_dir, device="cpu")
    with pytest.warns(UserWarning, match="larger than the index"):
        assert len(Index.load(index, model=model).search(["a guitar"], k=4)[0]) == 3

    status, _, err = run_cli(["index", "remove", "--index", str(index), "--ids", "n1", "n2", "n3"], capsys)
    assert status == 0, err
    status, stdout, err = run_cli([*search, "-k", "1"], capsys)
    assert_one_line_error(status, err, "search", "the index size (0)")
    with pytest.raises(TextSiameseError, match="empty"):
        Index.load(index, model=model).search(["a guitar"], k=1)

    bad = _write(tmp_path, b"id,text\nn1,a man\nn2,caf\xe9\n", "bad.csv")
    target = tmp_path / "never"
    command = ["index", "build", "--corpus", str(bad), "--id-column", "id", "--output", str(target)]
    status, _, err = run_cli([*command, "--no-progress", "--model", str(tiny_model_dir)], capsys)
    assert_one_line_error(status, err, "index", str(bad), "line 3: invalid UTF-8")
    assert not target.exists()
    missing = tmp_path / "no-index"
    status, _, err = run_cli(["search", "--index", str(missing), "--query", "x"], capsys)
    assert_one_line_error(status, err, "search", str(missing))


def test_debug_shows_the_exception_instead(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        main(["--debug", "score", "--pairs", str(tmp_path / "absent.csv")])


def test_search_commands_take_errors_replace(
    tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """index build / search / paraphrases read corpora with --errors like every other command."""
    from textsiamese.cli import main

    corpus = tmp_path / "corpus.txt"
    corpus.write_bytes(b"a dog runs\ncaf\xe9 au lait\nthe cat eats\n")
    index = tmp_path / "idx"
    build = [
        "index",
        "build",
        "--corpus",
        str(corpus),
        "--model",
        str(tiny_model_dir),
        "--output",
        str(index),
    ]
    assert main(build) == 2
    assert "invalid UTF-8 byte 0xe9" in capsys.readouterr().err
    assert not index.exists()
    assert main([*build, "--kind", "flat", "--errors", "replace"]) == 0
    queries = tmp_path / "queries.txt"
    queries.write_bytes(b"caf\xe9\n")
    search = ["search", "--index", str(index), "--queries", str(queries), "-k", "2", "--json"]
    assert main(search) == 2
    capsys.readouterr()
    assert main([*search, "--errors", "replace"]) == 0
    assert "caf\ufffd" in capsys.readouterr().out


def test_a_failed_faiss_write_is_one_line_and_keeps_the_old_index(
    tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import faiss

    from textsiamese.cli import main

    corpus = tmp_path / "corpus.csv"
    corpus.write_text("id,text\na1,a dog runs\na2,the cat eats\n")
    index = tmp_path / "idx"
    assert (
        main(
            [
                "index",
                "build",
                "--corpus",
                str(corpus),
                "--model",
                str(tiny_model_dir),
                "--output",
                str(index),
                "--kind",
                "flat",
            ]
        )
        == 0
    )
    before = sorted(p.name for p in index.iterdir())

    def full_disk(*args: object) -> None:
        raise RuntimeError("Error in faiss::FileIOWriter: write failed: No space left on device")

    monkeypatch.setattr(faiss, "write_index", full_disk)
    more = tmp_path / "more.csv"
    more.write_text("id,text\nb1,a bird sings\n")
    capsys.readouterr()
    status = main(
        [
            "index",
            "add",
            "--index",
            str(index),
            "--corpus",
            str(more),
            "--id-column",
            "id",
            "--model",
            str(tiny_model_dir),
        ]
    )
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("textsiamese")]
    assert status == 2 and len(err) == 1 and "cannot write the FAISS index" in err[0]
    monkeypatch.undo()
    assert sorted(p.name for p in index.iterdir()) == before
    assert (
        main(["search", "--index", str(index), "--query", "dog", "-k", "2", "--model", str(tiny_model_dir)])
        == 0
    )
