"""Reliability, property-based: random bytes, unicode, column layouts and sizes into the readers and the CLI.

Each property: either a result of the right shape or the documented error (``TextSiameseError``; CLI exit
status 2 with one line), never another exception, never a hang (each example runs under an alarm). The
number of examples is bounded so the file runs in well under a minute on 2 CPU cores.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import textsiamese
from textsiamese.cli import main
from textsiamese.data import read_corpus, read_pairs, read_table, read_triplets
from textsiamese.data.stream import iter_pair_chunks
from textsiamese.errors import InputError, TextSiameseError

# Bounded for CI; RELIABILITY_EXAMPLES=500 (say) searches harder.
EXAMPLES = int(os.environ.get("RELIABILITY_EXAMPLES", "40"))
FIXTURES = [HealthCheck.function_scoped_fixture]
FAST = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=FIXTURES)
CLI = settings(max_examples=max(10, EXAMPLES * 5 // 8), deadline=None, suppress_health_check=FIXTURES)


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Iterator[None]:
    """Tiny models on a shared 2-core machine: one intra-op thread is many times faster than two."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@contextlib.contextmanager
def no_hang(seconds: int = 30) -> Iterator[None]:
    """Fail (rather than hang the suite) if the body runs longer than ``seconds``."""

    def expire(*_: object) -> None:
        raise TimeoutError(f"took longer than {seconds} s: a hang")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _outcome(function: Any) -> tuple[str, Any]:
    """("ok", value) or ("error", message) for a TextSiameseError; anything else propagates."""
    try:
        with no_hang():
            return "ok", function()
    except TextSiameseError as error:
        return "error", str(error)


# --------------------------------------------------------------------------------------------------------
# Readers: random bytes and random unicode.

# Bytes that make files interesting: separators, quotes, line ends, BOM, invalid UTF-8, JSON punctuation.
PIECES = st.sampled_from(
    [b",", b"\t", b"\n", b"\r\n", b"\r", b'"', b"'", b"\xef\xbb\xbf", b"\xff", b"\xc3", b"\x00", b"{", b"}",
     b":", b"[", b"]", b"null", b"1", b"0", b"nan", b"inf", b" ", b"sentence1", b"sentence2", b"score",
     b"label", b"a cat", "\u00e9\u2028\u0085".encode()]
)  # fmt: skip
RANDOM_FILES = st.one_of(
    st.binary(max_size=300),
    st.lists(PIECES, max_size=60).map(b"".join),
    st.lists(PIECES, max_size=40).map(lambda parts: b"sentence1,sentence2,score\n" + b"".join(parts)),
    st.lists(PIECES, max_size=40).map(lambda parts: b"sentence1\tsentence2\tlabel\n" + b"".join(parts)),
)


@FAST
@given(
    content=RANDOM_FILES,
    fmt=st.sampled_from(["csv", "tsv", "jsonl"]),
    errors=st.sampled_from(["strict", "replace"]),
)
def test_random_bytes_into_the_readers(tmp_path: Path, content: bytes, fmt: str, errors: str) -> None:
    path = tmp_path / f"random.{fmt}"
    path.write_bytes(content)
    kind, table = _outcome(lambda: read_table(path, errors=errors))
    if kind == "ok":
        assert table.rows and all(set(row.cells) <= set(table.columns) for row in table.rows)
        assert [row.line for row in table.rows] == sorted({row.line for row in table.rows})
    whole = _outcome(lambda: read_pairs(path, errors=errors))
    streamed = _outcome(lambda: [c for c in iter_pair_chunks(path, chunk_rows=3, errors=errors)])
    # The streaming reader (score) and the whole-file reader (eval) agree: same pairs or the same message.
    assert whole[0] == streamed[0], (whole, streamed)
    if whole[0] == "error":
        # Same message, except that the whole-file reader decodes everything first, so an invalid byte
        # further down is what it reports, where the streaming reader may stop earlier at a bad header.
        assert whole[1] == streamed[1] or "invalid UTF-8" in whole[1] + streamed[1], (whole, streamed)
        assert whole[1].startswith(str(path)) and streamed[1].startswith(str(path))
    else:
        pairs = whole[1]
        assert [s for c in streamed[1] for s in c.sentence1] == pairs.sentence1
        assert [s for c in streamed[1] for s in c.sentence2] == pairs.sentence2
        assert [n for c in streamed[1] for n in c.lines] == pairs.lines
        _check_pairs(pairs)
    for reader in (lambda: read_triplets(path, errors=errors), lambda: read_corpus(path, errors=errors)):
        _outcome(reader)


def _check_pairs(pairs: Any) -> None:
    n = len(pairs)
    assert n > 0 and len(pairs.sentence2) == n and len(pairs.lines) == n
    assert all(text.strip() for text in pairs.sentence1 + pairs.sentence2)
    if pairs.scores is not None:
        assert len(pairs.scores) == n and all(math.isfinite(s) for s in pairs.scores)
    if pairs.labels is not None:
        assert len(pairs.labels) == n and set(pairs.labels) <= {0, 1}


@FAST
@given(text=st.text(max_size=200), fmt=st.sampled_from(["csv", "tsv", "jsonl", "txt"]))
def test_random_unicode_into_the_readers(tmp_path: Path, text: str, fmt: str) -> None:
    path = tmp_path / f"random.{fmt}"
    path.write_text(text, "utf-8", errors="surrogatepass")
    _outcome(lambda: read_table(path, "tsv" if fmt == "txt" else fmt))
    kind, corpus = _outcome(lambda: read_corpus(path))
    if kind == "ok" and fmt == "txt":
        assert len(corpus.ids) == len(corpus.texts) > 0 and all(t.strip() for t in corpus.texts)
    kind, pairs = _outcome(lambda: read_pairs(path, "tsv" if fmt == "txt" else "auto"))
    if kind == "ok":
        _check_pairs(pairs)


# --------------------------------------------------------------------------------------------------------
# Random column layouts: a file written properly (csv module / json) from random cells; an oracle says which
# rows are valid, and the reader must agree exactly.

COLUMN_NAMES = ["sentence1", "sentence2", "score", "label", "id", "note"]
# No lone carriage return in generated cells: csv.writer with lineterminator="\n" leaves such a cell unquoted,
# so the file really holds an old-Mac line end there and the reader splits the row, as it should.
CELL = st.one_of(
    st.text(alphabet=st.characters(exclude_categories=("Cs",), exclude_characters="\r"), max_size=12),
    st.sampled_from(["", " ", "0", "1", "2", "-1", "0.5", "3.25", "nan", "inf", "1e400", "yes", " 1 "]),
)


@st.composite
def layouts(draw: st.DrawFn) -> tuple[list[str], list[list[str]]]:
    columns = draw(st.lists(st.sampled_from(COLUMN_NAMES), min_size=1, max_size=6, unique=True))
    if draw(st.booleans()):  # half the layouts are pairs in some column order, mostly with good cells
        columns = draw(
            st.permutations(["sentence1", "sentence2", *(c for c in columns if c[:8] != "sentence")])
        )
        cell = st.one_of(st.sampled_from(["a cat", "the dog runs", "0", "1"]), CELL)
    else:
        cell = CELL
    rows = draw(st.lists(st.lists(cell, min_size=len(columns), max_size=len(columns)), max_size=12))
    return columns, rows


def _expected(columns: list[str], rows: list[list[str]], fmt: str) -> str | tuple[int, int]:
    """The first problem the reader must report ("error") or (number of pairs, with-scores flag)."""
    kept = [row for row in rows if fmt == "jsonl" or any(cell.strip() for cell in row)]
    if fmt == "tsv":
        kept = [row for row in kept if "\t".join(row).strip()]
    if not kept:
        return "error"
    if not {"sentence1", "sentence2"} <= set(columns):
        return "error"
    for row in kept:
        cells = dict(zip(columns, row, strict=True))
        if not cells["sentence1"].strip() or not cells["sentence2"].strip():
            return "error"
        if "score" in cells:
            try:
                if not math.isfinite(float(cells["score"])):
                    return "error"
            except ValueError:
                return "error"
        if "label" in cells:
            try:
                if float(cells["label"].strip()) not in (0.0, 1.0):
                    return "error"
            except ValueError:
                return "error"
    return len(kept), int("score" in columns)


def _write_layout(path: Path, columns: list[str], rows: list[list[str]], fmt: str) -> None:
    if fmt == "jsonl":
        lines = [json.dumps(dict(zip(columns, row, strict=True))) for row in rows]
        path.write_text("".join(line + "\n" for line in lines), "utf-8")
        return
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter="," if fmt == "csv" else "\t", lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)
    path.write_text(buffer.getvalue(), "utf-8")


@FAST
@given(layout=layouts(), fmt=st.sampled_from(["csv", "jsonl"]))
def test_random_column_layouts_match_an_oracle(tmp_path: Path, layout: Any, fmt: str) -> None:
    columns, rows = layout
    path = tmp_path / f"layout.{fmt}"
    _write_layout(path, columns, rows, fmt)
    expected = _expected(columns, rows, fmt)
    kind, pairs = _outcome(lambda: read_pairs(path))
    if expected == "error":
        assert kind == "error", (columns, rows)
        return
    assert kind == "ok", pairs
    count, with_scores = expected  # type: ignore[misc]
    assert len(pairs) == count and (pairs.scores is not None) == bool(with_scores)
    _check_pairs(pairs)
    kept = [row for row in rows if fmt == "jsonl" or any(c.strip() for c in row)]
    assert pairs.sentence1 == [dict(zip(columns, r, strict=True))["sentence1"] for r in kept]
    out_columns, out_rows = pairs.as_table()
    assert (
        len(out_rows) == count and out_columns == columns
    )  # columns kept by name and in the file's order, never by position


# --------------------------------------------------------------------------------------------------------
# The CLI: score and eval on random files and sizes. The model is loaded once (the reading, scoring and
# writing paths are what is under test); exit status is 0 with the right number of rows, or 2 with one line.


@pytest.fixture(scope="module")
def tiny_model(tiny_model_dir: Path) -> textsiamese.SiameseModel:
    return textsiamese.load(tiny_model_dir, device="cpu")


@pytest.fixture
def cached_model(monkeypatch: pytest.MonkeyPatch, tiny_model: textsiamese.SiameseModel) -> None:
    import textsiamese.cli.evaluate
    import textsiamese.cli.score

    for module in (textsiamese.cli.score, textsiamese.cli.evaluate):
        monkeypatch.setattr(module, "load_model", lambda args: tiny_model)


def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with no_hang(60):
        status = main(args)
    out, err = capsys.readouterr()
    if status != 0:
        errors = [line for line in err.strip().split("\n") if ": error: " in line]
        assert status == 2 and len(errors) == 1 and "Traceback" not in err, err
        assert err.strip().split("\n")[-1] == errors[0], err  # the error is one line, and the last
    return status, out, err


@CLI
@given(layout=layouts(), chunk=st.integers(1, 5), fmt=st.sampled_from(["csv", "tsv", "jsonl"]))
def test_score_on_random_layouts_and_sizes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], cached_model: None, layout: Any, chunk: int, fmt: str
) -> None:
    columns, rows = layout
    if fmt == "tsv":  # TSV has no quoting: cells cannot hold tabs or line ends
        rows = [[" ".join(cell.replace("\t", " ").split()) for cell in row] for row in rows]
    data, out = tmp_path / f"in.{fmt}", tmp_path / "scores.jsonl"
    out.unlink(missing_ok=True)
    _write_layout(data, columns, rows, fmt)
    status, _, err = _cli(
        ["score", "--pairs", str(data), "--output", str(out), "--chunk-size", str(chunk)], capsys
    )
    expected = _expected(columns, rows, fmt)
    if expected == "error":
        assert status == 2 and not out.exists(), err
        return
    assert status == 0, err
    written = [json.loads(line) for line in out.read_bytes().decode("utf-8").split("\n") if line]
    assert len(written) == expected[0]  # type: ignore[index]
    score_column = "predicted_score" if "score" in columns else "score"
    assert all(isinstance(record[score_column], float) for record in written)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left


@CLI
@given(content=RANDOM_FILES)
def test_score_and_eval_on_random_bytes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], cached_model: None, content: bytes
) -> None:
    data, out = tmp_path / "in.csv", tmp_path / "out.csv"
    data.write_bytes(content)
    out.unlink(missing_ok=True)
    status, _, _ = _cli(["score", "--pairs", str(data), "--output", str(out)], capsys)
    assert out.exists() == (status == 0)
    for task in ("sts", "classification", "retrieval", "triplet"):
        status, stdout, _ = _cli(
            ["eval", "--task", task, "--data", str(data), "--json", "--folds", "2"], capsys
        )
        if status == 0:
            assert json.loads(stdout)["task"] in (task, "one-shot")


@CLI
@given(
    texts=st.lists(st.text(min_size=1, max_size=40), min_size=2, max_size=10),
    gold=st.lists(st.floats(-10, 10), min_size=10, max_size=10),
)
def test_eval_sts_on_random_unicode_texts(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    cached_model: None,
    texts: list[str],
    gold: list[float],
) -> None:
    data = tmp_path / "in.jsonl"
    records = [
        {"sentence1": a, "sentence2": b, "score": g}
        for a, b, g in zip(texts, reversed(texts), gold, strict=False)
    ]
    data.write_text("".join(json.dumps(r) + "\n" for r in records), "utf-8")
    status, stdout, err = _cli(["eval", "--task", "sts", "--data", str(data), "--json"], capsys)
    blank = any(not t.strip() for t in texts)
    flat = len({r["score"] for r in records}) < 2
    assert (status == 2) == (blank or flat), err
    if status == 0:
        result = json.loads(stdout)
        assert result["n"] == len(records)
        assert np.isnan(result["spearman"]) or -1.0 <= result["spearman"] <= 1.0


@FAST
@given(texts=st.lists(st.text(max_size=30), max_size=8))
def test_encode_any_unicode(tiny_model: textsiamese.SiameseModel, texts: list[str]) -> None:
    with no_hang():
        vectors = tiny_model.encode(texts, batch_size=3)
    assert vectors.shape == (len(texts), tiny_model.dimension) and vectors.dtype == np.float32
    assert np.isfinite(vectors).all()


@FAST
@given(rows=st.lists(st.tuples(st.text(max_size=8), st.text(max_size=8)), max_size=8))
def test_in_memory_datasets(rows: list[tuple[str, str]]) -> None:
    from textsiamese.data import pairs_from_dataset

    records = [{"sentence1": a, "sentence2": b} for a, b in rows]
    kind, pairs = _outcome(lambda: pairs_from_dataset(records))
    valid = bool(rows) and all(a.strip() and b.strip() for a, b in rows)
    assert (kind == "ok") == valid
    if kind == "ok":
        assert pairs.sentence1 == [a for a, _ in rows]
    elif rows:
        assert isinstance(pairs, str)


def test_readers_raise_only_input_errors_for_a_few_known_hard_files(tmp_path: Path) -> None:
    """Pinned examples that once escaped as other exceptions (found by the properties above)."""
    cases = {
        "cr.csv": b"sentence1,sentence2\ra,b\rc,d\n",  # old-Mac line ends: csv.Error in the streaming reader
    }
    for name, content in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        whole = read_pairs(path)
        streamed = list(iter_pair_chunks(path, chunk_rows=1))
        assert whole.sentence1 == [s for c in streamed for s in c.sentence1] == ["a", "c"]
        assert whole.lines == [n for c in streamed for n in c.lines] == [2, 3]
    with pytest.raises(InputError):
        read_pairs(tmp_path / "absent.csv")


@FAST
@given(content=RANDOM_FILES, name=st.sampled_from(["stsb", "sick", "mrpc", "wikiqa", "agnews", "snli"]))
def test_random_bytes_into_the_named_dataset_readers(tmp_path: Path, content: bytes, name: str) -> None:
    path = tmp_path / f"random.{'jsonl' if name == 'snli' else 'txt'}"
    path.write_bytes(content)
    kind, pairs = _outcome(lambda: read_pairs(path, name, errors="replace"))
    if kind == "ok":
        _check_pairs(pairs)
    if name == "snli":
        _outcome(lambda: read_triplets(path, "snli"))


@pytest.fixture(scope="module")
def tiny_index(tmp_path_factory: pytest.TempPathFactory, tiny_model: textsiamese.SiameseModel) -> Path:
    from textsiamese.search import Index

    texts = ["a man plays the guitar", "a woman eats food", "the dog runs", "a cat", "the park"]
    path = tmp_path_factory.mktemp("index") / "idx"
    Index.build(tiny_model, texts, ids=[f"n{i}" for i in range(len(texts))], kind="flat").save(path)
    return path


@CLI
@given(queries=st.lists(st.text(max_size=30), min_size=1, max_size=4), k=st.integers(-2, 8))
def test_search_on_random_queries_and_k(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    tiny_index: Path,
    tiny_model_dir: Path,
    queries: list[str],
    k: int,
) -> None:
    file = tmp_path / "queries.txt"
    file.write_text("\n".join(queries) + "\n", "utf-8", errors="surrogatepass")
    command = ["search", "--index", str(tiny_index), "--queries", str(file), "-k", str(k), "--json"]
    status, stdout, err = _cli([*command, "--model", str(tiny_model_dir), "--device", "cpu"], capsys)
    text = file.read_bytes().decode("utf-8", errors="replace")  # not read_text: it turns \r into \n
    lines = [line for line in text.split("\n") if line.strip()]
    if status == 0:  # JSON lines are separated by \n only (U+0085, U+2028 may appear raw inside them)
        results = [json.loads(line) for line in stdout.split("\n") if line]
        # a k above the index size gets every row (with a warning), as FAISS users expect
        assert len(results) == len(lines) and all(len(r["hits"]) == min(k, 5) for r in results)
    else:
        assert not (k >= 1 and lines), err
