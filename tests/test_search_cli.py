"""The search command line: index build/add/remove/info, search, mine and paraphrases, with a tiny model."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

import textsiamese
from textsiamese.cli import main

try:  # tests may or may not be a package
    from .conftest import make_tiny_transformer
except ImportError:
    from conftest import make_tiny_transformer  # type: ignore[no-redef]

TEXTS = [
    ("n1", "a man is playing the guitar", "music"),
    ("n2", "a woman is eating food", "food"),
    ("n3", "the dog runs in the park", "pets"),
    ("n4", "a cat is playing with a ball", "pets"),
    ("n5", "the man is eating", "food"),
    ("n6", "a woman is playing the guitar", "music"),
]


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    status = main(args)
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture
def corpus_csv(tmp_path: Path) -> Path:
    path = tmp_path / "corpus.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text", "topic"])
        writer.writerows(TEXTS)
    return path


@pytest.fixture
def built_index(
    corpus_csv: Path, tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> Path:
    out = tmp_path / "idx"
    status, _, err = run_cli(
        [
            "index",
            "build",
            "--corpus",
            str(corpus_csv),
            "--id-column",
            "id",
            "--model",
            str(tiny_model_dir),
            "--output",
            str(out),
            "--no-progress",
            "--device",
            "cpu",
        ],
        capsys,
    )
    assert status == 0, err
    assert "6 rows, flat" in err
    return out


def test_build_search_json(
    built_index: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = run_cli(
        [
            "search",
            "--index",
            str(built_index),
            "--query",
            "a man is playing the guitar",
            "--query",
            "food",
            "-k",
            "3",
            "--json",
            "--model",
            str(tiny_model_dir),
            "--device",
            "cpu",
        ],
        capsys,
    )
    assert status == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["query"] for line in lines] == ["a man is playing the guitar", "food"]
    first = lines[0]["hits"]
    assert len(first) == 3 and first[0]["id"] == "n1" and first[0]["text"] == TEXTS[0][1]
    assert first[0]["topic"] == "music" and first[0]["score"] == pytest.approx(1.0, abs=1e-4)
    assert [h["score"] for h in first] == sorted((h["score"] for h in first), reverse=True)


def test_search_reopens_the_recorded_model_and_reads_query_files(
    built_index: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    queries = tmp_path / "queries.txt"
    queries.write_text("a dog runs in the park\n\na cat is playing with a ball\n")
    # No --model: the manifest's model_source (the tiny model directory) is used.
    status, out, err = run_cli(
        ["search", "--index", str(built_index), "--queries", str(queries), "-k", "1", "--device", "cpu"],
        capsys,
    )
    assert status == 0, err
    assert out.count("query: ") == 2 and "n3" in out and "n4" in out


def test_add_remove_info(built_index: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    more = tmp_path / "more.jsonl"
    more.write_text(json.dumps({"id": "n7", "text": "a dog is eating food", "topic": "pets"}) + "\n")
    status, _, err = run_cli(
        [
            "index",
            "add",
            "--index",
            str(built_index),
            "--corpus",
            str(more),
            "--id-column",
            "id",
            "--no-progress",
            "--device",
            "cpu",
        ],
        capsys,
    )
    assert status == 0 and "added 1 row; 7 rows" in err
    status, _, err = run_cli(
        [
            "index",
            "add",
            "--index",
            str(built_index),
            "--corpus",
            str(more),
            "--id-column",
            "id",
            "--no-progress",
            "--device",
            "cpu",
        ],
        capsys,
    )
    assert status == 2 and "duplicate id 'n7'" in err and err.count("\n") == 1
    status, _, err = run_cli(["index", "remove", "--index", str(built_index), "--ids", "n1", "nope"], capsys)
    assert status == 2 and "nothing was removed" in err
    status, _, err = run_cli(["index", "remove", "--index", str(built_index), "--ids", "n1", "n2"], capsys)
    assert status == 0 and "removed 2 rows; 5 rows" in err
    status, out, _ = run_cli(["index", "info", "--index", str(built_index), "--json"], capsys)
    manifest = json.loads(out)
    assert manifest["count"] == 5 and manifest["kind"] == "flat" and manifest["metric"] == "cosine"
    status, out, err = run_cli(
        ["search", "--index", str(built_index), "--query", "guitar", "-k", "5", "--json", "--device", "cpu"],
        capsys,
    )
    assert status == 0, err
    assert {h["id"] for h in json.loads(out)["hits"]} == {"n3", "n4", "n5", "n6", "n7"}


def test_other_model_and_corrupted_index_are_refused(
    built_index: Path,
    tmp_path: Path,
    minilm_tokenizer,
    capsys: pytest.CaptureFixture[str],  # type: ignore[no-untyped-def]
) -> None:
    other = tmp_path / "other-model"
    textsiamese.SiameseModel(make_tiny_transformer(minilm_tokenizer, seed=1), normalize=True).save(other)
    status, _, err = run_cli(
        ["search", "--index", str(built_index), "--query", "x", "--model", str(other), "--device", "cpu"],
        capsys,
    )
    assert status == 2 and "fingerprint" in err and err.count("\n") == 1
    status, _, err = run_cli(["search", "--index", str(built_index), "--query", "x", "-k", "0"], capsys)
    assert status == 2 and "-k 0" in err
    (index_file,) = built_index.glob("index-*.faiss")
    index_file.write_bytes(index_file.read_bytes()[:-10])
    status, _, err = run_cli(
        ["search", "--index", str(built_index), "--query", "x", "--device", "cpu"], capsys
    )
    assert status == 2 and "truncated" in err


def test_mine_writes_anchor_positive_negatives(
    corpus_csv: Path, tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pairs = tmp_path / "pairs.csv"
    pairs.write_text(
        "sentence1,sentence2,label\n"
        "who plays guitar,a man is playing the guitar,1\n"
        "who plays guitar,a woman is playing the guitar,1\n"
        "who plays guitar,the dog runs in the park,0\n"
        "what is eaten,a woman is eating food,1\n"
    )
    out = tmp_path / "mined.csv"
    status, _, err = run_cli(
        [
            "mine",
            "--pairs",
            str(pairs),
            "--corpus",
            str(corpus_csv),
            "--model",
            str(tiny_model_dir),
            "--negatives",
            "2",
            "--margin",
            "-1",
            "--output",
            str(out),
            "--no-progress",
            "--device",
            "cpu",
        ],
        capsys,
    )
    assert status == 0, err
    with open(out, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["anchor", "positive", "negative_1", "negative_2"] and len(rows) == 3
    guitar = {"a man is playing the guitar", "a woman is playing the guitar"}
    for row in rows[:2]:
        assert not guitar & {row["negative_1"], row["negative_2"]}


def test_paraphrases_json(tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    corpus = tmp_path / "c.txt"
    corpus.write_text("a man is eating food\nthe dog runs\nA man is eating food\n")
    status, out, err = run_cli(
        [
            "paraphrases",
            "--corpus",
            str(corpus),
            "--threshold",
            "0.99",
            "--json",
            "--model",
            str(tiny_model_dir),
            "--no-progress",
            "--device",
            "cpu",
        ],
        capsys,
    )
    assert status == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert rows[0]["id_1"] == "1" and rows[0]["id_2"] == "3" and rows[0]["score"] >= 0.99
