"""Tests of hard-negative and paraphrase mining against brute-force numpy computations."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from textsiamese.errors import ConfigError
from textsiamese.search import (
    Index,
    MiningStats,
    mine_hard_negatives,
    mine_paraphrases,
    paraphrase_pairs,
    write_mined,
)

try:  # tests may or may not be a package
    from ._search_helpers import ToyEncoder, clustered, exact_scores, normalise
except ImportError:
    from _search_helpers import ToyEncoder, clustered, exact_scores, normalise  # type: ignore[no-redef]

D = 24


@pytest.fixture(scope="module")
def setting() -> dict[str, object]:
    """600 corpus rows; 40 anchors with 1-3 positives each, taken from the corpus (so must be excluded)."""
    rng = np.random.default_rng(7)
    corpus = clustered(600, D, clusters=10, seed=3)
    texts = [f"doc {i}" for i in range(600)]
    anchors, positives, anchor_vecs, positive_vecs = [], [], [], []
    for q in range(40):
        members = rng.choice(600, size=int(rng.integers(1, 4)), replace=False)
        # The anchor sits near its first positive, as a query does near its answer.
        a = corpus[members[0]] + 0.3 * rng.standard_normal(D).astype(np.float32)
        for m in members:
            anchors.append(f"query {q}")
            positives.append(texts[m])
            anchor_vecs.append(a)
            positive_vecs.append(corpus[m])
    return {
        "corpus": corpus,
        "texts": texts,
        "anchors": anchors,
        "positives": positives,
        "anchor_vecs": np.array(anchor_vecs, np.float32),
        "positive_vecs": np.array(positive_vecs, np.float32),
    }


def brute_force_negatives(s: dict, n: int, margin: float) -> list[list[str]]:
    """Expected negatives by numpy: rank the whole corpus, drop the anchor's positives and the margin."""
    scores = exact_scores(s["anchor_vecs"], s["corpus"], "cosine")
    pos_scores = (
        normalise(s["anchor_vecs"].astype(np.float64)) * normalise(s["positive_vecs"].astype(np.float64))
    ).sum(1)
    known: dict[str, set[str]] = {}
    for a, p in zip(s["anchors"], s["positives"], strict=True):
        known.setdefault(a, set()).add(p)
    expected = []
    for row, anchor in enumerate(s["anchors"]):
        order = np.argsort(-scores[row], kind="stable")
        keep = [
            s["texts"][j]
            for j in order
            if s["texts"][j] not in known[anchor] and scores[row, j] < pos_scores[row] - margin
        ]
        expected.append(keep[:n])
    return expected


@pytest.mark.parametrize("margin", [0.0, 0.05, 0.2])
@pytest.mark.filterwarnings("ignore:.*pairs skipped")
def test_hard_negatives_match_brute_force(setting: dict, margin: float) -> None:
    s = setting
    index = Index.from_vectors(s["corpus"], texts=s["texts"], kind="flat")
    rows = list(
        mine_hard_negatives(
            index,
            s["anchors"],
            s["positives"],
            num_negatives=4,
            margin=margin,
            batch_size=7,
            anchor_vectors=s["anchor_vecs"],
            positive_vectors=s["positive_vecs"],
        )
    )
    expected = brute_force_negatives(s, 4, margin)
    # Pairs whose positive scores so low that fewer than 4 corpus rows lie below the margin are skipped.
    kept = [(a, p, e) for a, p, e in zip(s["anchors"], s["positives"], expected, strict=True) if len(e) == 4]
    assert len(kept) >= len(expected) - 3
    assert [(r.anchor, r.positive, r.negatives) for r in rows] == kept
    for row in rows:
        positives_of_anchor = {
            p for a, p in zip(s["anchors"], s["positives"], strict=True) if a == row.anchor
        }
        assert not positives_of_anchor & set(row.negatives)
        assert all(score < row.positive_score - margin + 1e-6 for score in row.negative_scores)
        assert row.negative_scores == sorted(row.negative_scores, reverse=True)


@pytest.mark.filterwarnings("ignore:.*pairs skipped")
def test_approximate_index_gives_nearly_the_same_negatives(setting: dict) -> None:
    s = setting
    index = Index.from_vectors(s["corpus"], texts=s["texts"], kind="hnsw")
    rows = list(
        mine_hard_negatives(
            index,
            s["anchors"],
            s["positives"],
            num_negatives=4,
            anchor_vectors=s["anchor_vecs"],
            positive_vectors=s["positive_vecs"],
        )
    )
    expected = [e for e in brute_force_negatives(s, 4, 0.05) if len(e) == 4]
    overlap = np.mean([len(set(r.negatives) & set(e)) / 4 for r, e in zip(rows, expected, strict=True)])
    assert overlap >= 0.9


def test_pairs_without_enough_negatives_are_skipped_and_counted() -> None:
    corpus = np.eye(4, dtype=np.float32)
    index = Index.from_vectors(corpus, texts=["a", "b", "c", "d"], kind="flat")
    stats = MiningStats()
    with pytest.warns(UserWarning, match="1 of 1 pairs skipped"):
        rows = list(
            mine_hard_negatives(
                index,
                ["q"],
                ["a"],
                num_negatives=4,
                margin=0.0,
                stats=stats,
                anchor_vectors=np.array([[1.0, 0.1, 0, 0]], np.float32),
                positive_vectors=corpus[:1],
            )
        )
    assert rows == [] and (stats.pairs, stats.rows, stats.skipped) == (1, 0, 1)


def test_text_mining_with_a_model_excludes_all_positives_and_the_anchor() -> None:
    model = ToyEncoder(dimension=64)
    corpus = [
        "the cat sat on the mat",
        "a cat sat on a mat",
        "The  cat sat on the MAT",  # the positive again, spaced and cased differently
        "the dog sat on the log",
        "cats like mats",
        "stock markets fell today",
        "where did the cat sit",
    ]
    index = Index.build(model, corpus, kind="flat")
    rows = list(
        mine_hard_negatives(
            index,
            ["where did the cat sit", "where did the cat sit"],
            ["the cat sat on the mat", "a cat sat on a mat"],
            num_negatives=2,
            margin=0.0,
        )
    )
    assert len(rows) == 2
    for row in rows:
        assert not {
            "the cat sat on the mat",
            "a cat sat on a mat",
            "The  cat sat on the MAT",
            "where did the cat sit",
        } & set(row.negatives)
    assert ("query", 2) in model.calls and ("document", 2) in model.calls


def test_mining_needs_texts_and_a_non_empty_index() -> None:
    index = Index.from_vectors(np.eye(3, dtype=np.float32), kind="flat")
    with pytest.raises(ConfigError, match="texts"):
        list(
            mine_hard_negatives(
                index,
                ["q"],
                ["p"],
                num_negatives=1,
                margin=-1.0,
                anchor_vectors=np.ones((1, 3), np.float32),
                positive_vectors=np.ones((1, 3), np.float32),
            )
        )
    with pytest.raises(ConfigError, match="at least 1"):
        list(mine_hard_negatives(index, ["q"], ["p"], num_negatives=0))


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl"])
def test_write_mined_columns(setting: dict, tmp_path: Path, suffix: str) -> None:
    s = setting
    index = Index.from_vectors(s["corpus"], texts=s["texts"], kind="flat")
    rows = mine_hard_negatives(
        index,
        s["anchors"][:5],
        s["positives"][:5],
        num_negatives=3,
        margin=-10.0,
        anchor_vectors=s["anchor_vecs"][:5],
        positive_vectors=s["positive_vecs"][:5],
    )
    path = tmp_path / f"triplets{suffix}"
    assert write_mined(rows, path, 3) == 5
    columns = ["anchor", "positive", "negative_1", "negative_2", "negative_3"]
    if suffix == ".jsonl":
        records = [json.loads(line) for line in path.read_text().splitlines()]
        assert list(records[0]) == columns
    else:
        with open(path, newline="") as handle:
            table = list(csv.reader(handle, delimiter="\t" if suffix == ".tsv" else ","))
        assert table[0] == columns and len(table) == 6
    assert not list(tmp_path.glob(".*.tmp"))


def brute_force_pairs(vectors: np.ndarray, threshold: float) -> dict[tuple[int, int], float]:
    scores = exact_scores(vectors, vectors, "cosine")
    i, j = np.nonzero(np.triu(scores >= threshold, k=1))
    return {(int(a), int(b)): float(scores[a, b]) for a, b in zip(i, j, strict=True)}


@pytest.mark.parametrize("threshold", [0.5, 0.8])
def test_paraphrases_match_brute_force(threshold: float) -> None:
    vectors = clustered(700, D, clusters=40, spread=0.4, seed=5)
    vectors[10] = vectors[20]  # an exact duplicate must be found with score 1
    expected = brute_force_pairs(vectors, threshold)
    pairs = paraphrase_pairs(vectors, threshold, chunk_size=64)
    got = {(i, j): s for i, j, s in pairs}
    borderline = {p for p, s in expected.items() if abs(s - threshold) < 1e-5}
    assert set(got) - borderline == set(expected) - borderline and len(expected) > 50
    for pair, score in got.items():
        assert score == pytest.approx(expected.get(pair, score), abs=1e-5)
    assert got[(10, 20)] == pytest.approx(1.0, abs=1e-6)
    assert [s for _, _, s in pairs] == sorted((s for _, _, s in pairs), reverse=True)


def test_approximate_paraphrases_recall() -> None:
    vectors = clustered(2000, D, clusters=80, spread=0.4, seed=6)
    expected = set(brute_force_pairs(vectors, 0.85))
    got = {(i, j) for i, j, _ in paraphrase_pairs(vectors, 0.85, kind="hnsw", max_neighbors=50)}
    assert got <= expected  # approximate search may miss pairs, never invent them
    assert len(got & expected) / len(expected) >= 0.9


def test_mine_paraphrases_by_text() -> None:
    model = ToyEncoder(dimension=64)
    texts = ["the cat sat on the mat", "stocks fell", "The cat sat on the mat", "a dog barked"]
    pairs = mine_paraphrases(model, texts, ids=["a", "b", "c", "d"], threshold=0.95)
    assert pairs[0][:2] == ("a", "c") and pairs[0][2] == pytest.approx(1.0, abs=1e-6)
    assert all(score >= 0.95 for _, _, score in pairs)
