"""Readers: the generic pair format, named datasets, and the errors bad input gets."""

from __future__ import annotations

from pathlib import Path

import pytest

from textsiamese.data import pairs_from_dataset, read_corpus, read_pairs, read_triplets
from textsiamese.errors import InputError


def write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_csv_pairs_with_scores_keep_extra_columns(tmp_path: Path) -> None:
    f = write(tmp_path / "p.csv", 'id,sentence1,sentence2,score\n7,"A, quoted",B,4.5\n8,C,D,0\n')
    pairs = read_pairs(f)
    assert pairs.sentence1 == ["A, quoted", "C"]
    assert pairs.scores == [4.5, 0.0]
    assert pairs.labels is None
    assert pairs.extra == {"id": ["7", "8"]}
    columns, rows = pairs.as_table()
    assert columns == ["id", "sentence1", "sentence2", "score"]
    assert rows[0] == ["7", "A, quoted", "B", 4.5]


def test_tsv_and_jsonl_and_remapped_columns(tmp_path: Path) -> None:
    tsv = write(tmp_path / "p.tsv", "q\ta\tlabel\r\nwho?\tme\t1\r\nwhy?\tno\t0\r\n")
    pairs = read_pairs(tsv, columns={"sentence1": "q", "sentence2": "a"}, need="label")
    assert (pairs.sentence1, pairs.sentence2, pairs.labels) == (["who?", "why?"], ["me", "no"], [1, 0])
    jsonl = write(
        tmp_path / "p.jsonl",
        '{"sentence1": "x", "sentence2": "y", "label": 1}\n\n'
        '{"sentence1": "z", "sentence2": "w", "label": 0}\n',
    )
    assert read_pairs(jsonl).labels == [1, 0]


def test_zero_means_similar_convention_is_flipped_at_the_edge(tmp_path: Path) -> None:
    f = write(tmp_path / "p.csv", "sentence1,sentence2,label\na,b,0\nc,d,1\n")
    assert read_pairs(f, label_convention="0=similar").labels == [1, 0]


def test_datasets_dataset_is_read_like_a_file() -> None:
    from datasets import Dataset

    ds = Dataset.from_dict({"sentence1": ["a", "b"], "sentence2": ["c", "d"], "score": [0.5, 1.0]})
    pairs = pairs_from_dataset(ds, need="score")
    assert pairs.scores == [0.5, 1.0]
    assert pairs.sentence2 == ["c", "d"]


@pytest.mark.parametrize(
    ("content", "message", "line", "column"),
    [
        ("sentence1,sentence2,score\na,b,0.5\nc,d,abc\n", "cannot parse 'abc' as a number", 3, "score"),
        ("sentence1,sentence2,score\na,b,nan\n", "not a finite number", 2, "score"),
        ("sentence1,sentence2,label\na,b,2\n", "label must be 0 or 1, got '2'", 2, "label"),
        ("sentence1,sentence2,score\na,   ,1\n", "text is empty", 2, "sentence2"),
        ("sentence1,sentence2,score\na,b\n", "row has 2 cells but the header has 3", 2, None),
        ("sentence1,text,score\na,b,1\n", "header lacks column(s) 'sentence2'", 1, None),
    ],
)
def test_bad_cells_name_file_line_and_column(
    tmp_path: Path, content: str, message: str, line: int, column: str | None
) -> None:
    f = write(tmp_path / "bad.csv", content)
    with pytest.raises(InputError) as caught:
        read_pairs(f)
    error = caught.value
    assert message in str(error)
    assert (error.line, error.column) == (line, column)
    assert str(f) in str(error)
    assert "\n" not in str(error)


def test_missing_empty_and_non_utf8_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        read_pairs(tmp_path / "absent.csv")
    with pytest.raises(InputError, match="file is empty"):
        read_pairs(write(tmp_path / "empty.csv", "\n  \n"))
    with pytest.raises(InputError, match="no data rows"):
        read_pairs(write(tmp_path / "header.csv", "sentence1,sentence2\n"))
    bad = write(tmp_path / "latin1.csv", b"sentence1,sentence2\nok,fine\ncaf\xe9,x\n")
    with pytest.raises(InputError) as caught:
        read_pairs(bad)
    assert caught.value.line == 3
    assert "0xe9 at byte 4" in str(caught.value)
    assert read_pairs(bad, errors="replace").sentence1 == ["ok", "caf\ufffd"]


def test_score_column_required_when_asked(tmp_path: Path) -> None:
    f = write(tmp_path / "p.csv", "sentence1,sentence2,label\na,b,1\n")
    with pytest.raises(InputError, match="lacks column"):
        read_pairs(f, need="score")


def test_triplets_and_corpus(tmp_path: Path) -> None:
    t = write(tmp_path / "t.csv", "anchor,positive,negative,negative_2\na,p,n,m\n")
    triplets = read_triplets(t)
    assert (triplets.anchor, triplets.negative, triplets.more_negatives) == (["a"], ["n"], [["m"]])
    c = write(tmp_path / "c.csv", "doc,text,topic\nd1,hello,x\nd2,world,y\n")
    corpus = read_corpus(c, id_column="doc")
    assert (corpus.ids, corpus.texts, corpus.metadata) == (
        ["d1", "d2"],
        ["hello", "world"],
        {"topic": ["x", "y"]},
    )
    dup = write(tmp_path / "dup.csv", "id,text\n1,a\n1,b\n")
    with pytest.raises(InputError, match="id '1' already used on line 2"):
        read_corpus(dup, id_column="id")
    lines = write(tmp_path / "c.txt", "first\n\nsecond\n")
    assert read_corpus(lines).ids == ["1", "3"]


@pytest.mark.parametrize(
    ("fmt", "path", "rows", "kind"),
    [
        ("stsb", "stsb/sts-dev.csv", 1500, "scores"),
        ("stsb", "stsb/sts-train.csv", 5749, "scores"),
        ("sick", "sick/SICK-train-trial.txt", 4934, "scores"),
        ("mrpc", "mrpc/msr_paraphrase_train.txt", 4076, "labels"),
        ("wikiqa", "wikiqa/WikiQA-train.txt", 20360, "labels"),
        ("agnews", "agnews/agnews-title-description-train.csv", 3800, "labels"),
    ],
)
def test_named_readers_read_the_shared_files(
    shared_data: Path, fmt: str, path: str, rows: int, kind: str
) -> None:
    pairs = read_pairs(shared_data / path, fmt)
    assert len(pairs) == rows
    assert getattr(pairs, kind) is not None


def test_named_reader_quirks(shared_data: Path) -> None:
    stsb = read_pairs(shared_data / "stsb/sts-dev.csv", "stsb")
    assert stsb.sentence1[0] == "A man with a hard hat is dancing."
    assert stsb.scores is not None and stsb.scores[0] == 5.0
    sick = read_pairs(shared_data / "sick/SICK-train-trial.txt", "sick")
    assert sick.scores is not None and sick.scores[0] == 4.5  # CRLF file: no '\r' left on the last column
    assert not sick.extra["SemEval_set"][0].endswith("\r")
    mrpc = read_pairs(shared_data / "mrpc/msr_paraphrase_train.txt", "mrpc")
    assert mrpc.labels is not None and mrpc.labels[:2] == [1, 0]  # BOM-prefixed header still found
    agnews = read_pairs(shared_data / "agnews/agnews-title-description-train.csv", "agnews")
    assert agnews.extra["class"][:2] == ["3", "4"]


def test_snli_readers(tmp_path: Path) -> None:
    rows = [
        ("p1", "h-ent", "entailment"),
        ("p1", "h-con", "contradiction"),
        ("p1", "h-neu", "neutral"),
        ("p2", "h2", "entailment"),
        ("p3", "h3", "-"),
    ]
    import json

    f = write(
        tmp_path / "snli.jsonl",
        "".join(json.dumps({"sentence1": a, "sentence2": b, "gold_label": g}) + "\n" for a, b, g in rows),
    )
    pairs = read_pairs(f, "snli")
    assert list(zip(pairs.sentence2, pairs.labels or [], strict=True)) == [
        ("h-ent", 1),
        ("h-con", 0),
        ("h2", 1),
    ]
    triplets = read_triplets(f, "snli")
    assert (triplets.anchor, triplets.positive, triplets.negative) == (["p1"], ["h-ent"], ["h-con"])
