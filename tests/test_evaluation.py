"""Evaluators against scikit-learn / scipy and hand-worked toy cases."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from eval_stubs import VectorModel, angle_vectors
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    f1_score,
    ndcg_score,
    precision_score,
    recall_score,
    roc_auc_score,
)
from sklearn.model_selection import StratifiedKFold

import textsiamese
from textsiamese.data import PairData, TripletData
from textsiamese.decisions.calibration import apply_threshold, choose_threshold, expected_calibration_error
from textsiamese.errors import InputError
from textsiamese.evaluation import (
    average_precision,
    classification_metrics,
    classify_pairs,
    decision_metrics,
    evaluate_classification,
    evaluate_reranking,
    evaluate_retrieval,
    evaluate_triplets,
    query_metrics,
    reranking_metrics,
    retrieval_metrics,
    roc_auc,
    triplet_accuracy,
)
from textsiamese.evaluation.report import write_report


def cosine_pairs(cosines: list[float], labels: list[int], prefix: str = "") -> tuple[PairData, dict]:
    """Pairs whose cosine similarity is exactly ``cosines[i]`` (2-D unit vectors), and their vectors."""
    angles = {}
    for i, c in enumerate(cosines):
        angles[f"{prefix}a{i}"] = 0.0
        angles[f"{prefix}b{i}"] = math.acos(c)
    pairs = PairData(
        sentence1=[f"{prefix}a{i}" for i in range(len(cosines))],
        sentence2=[f"{prefix}b{i}" for i in range(len(cosines))],
        labels=list(labels),
    )
    return pairs, angle_vectors(angles)


@pytest.mark.parametrize("seed", range(5))
def test_roc_auc_and_average_precision_match_sklearn_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    scores = np.round(rng.normal(size=60), 1)  # rounding makes ties
    labels = rng.integers(0, 2, size=60)
    assert roc_auc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert average_precision(scores, labels) == pytest.approx(
        average_precision_score(labels, scores), abs=1e-12
    )


def test_decision_metrics_match_sklearn() -> None:
    rng = np.random.default_rng(1)
    y, p = rng.integers(0, 2, 50), rng.integers(0, 2, 50).astype(bool)
    got = decision_metrics(p, y)
    assert got["accuracy"] == pytest.approx(accuracy_score(y, p))
    assert got["precision"] == pytest.approx(precision_score(y, p))
    assert got["recall"] == pytest.approx(recall_score(y, p))
    assert got["f1"] == pytest.approx(f1_score(y, p))
    assert decision_metrics(np.zeros(3, bool), [1, 0, 1])["precision"] == 0.0


def test_classification_metrics_hand_worked_and_distance_direction() -> None:
    # cosines 0.9 (1), 0.8 (0), 0.6 (1), 0.2 (0); threshold 0.7 → predicted 1, 1, 0, 0
    got = classification_metrics([0.9, 0.8, 0.6, 0.2], [1, 0, 1, 0], threshold=0.7)
    assert got["accuracy"] == 0.5 and got["precision"] == 0.5 and got["recall"] == 0.5
    assert got["roc_auc"] == 0.75  # positives beat negatives in 3 of 4 comparisons
    assert got["average_precision"] == pytest.approx((1 / 1 + 2 / 3) / 2)
    # the same ranking as euclidean distances (smaller is closer) gives the same figures
    dist = classification_metrics([0.1, 0.2, 0.4, 0.8], [1, 0, 1, 0], threshold=0.3, metric="euclidean")
    assert dist == got


def test_accuracy_and_f1_thresholds_hand_worked() -> None:
    # The cut the trainer's pair-classification figures rest on (chosen on the other folds of the dev split).
    scores, labels = [0.9, 0.8, 0.7, 0.4, 0.3, 0.2], [1, 1, 0, 1, 0, 0]
    t = choose_threshold(scores, labels)  # cut after 0.8 or after 0.4: one mistake each; the first wins
    assert t == pytest.approx(0.75)
    at_t = classification_metrics(scores, labels, t)
    assert at_t["accuracy"] == pytest.approx(5 / 6) and at_t["f1"] == pytest.approx(0.8)
    t_f1 = choose_threshold(scores, labels, objective="f1")  # all three positives, one false positive
    assert t_f1 == pytest.approx(0.35)
    assert classification_metrics(scores, labels, t_f1)["f1"] == pytest.approx(6 / 7)
    perfect = choose_threshold([0.9, 0.8, 0.2, 0.1], [1, 1, 0, 0])
    assert perfect == pytest.approx(0.5)
    assert classification_metrics([0.9, 0.8, 0.2, 0.1], [1, 1, 0, 0], perfect)["accuracy"] == 1.0


def test_expected_calibration_error_hand_worked() -> None:
    # bin [0.1, 0.2): mean p 0.1, frequency 0.5; bin [0.9, 1]: mean p 0.9, frequency 1 → 0.5·0.4 + 0.5·0.1
    assert expected_calibration_error([0.1, 0.1, 0.9, 0.9], [0, 1, 1, 1]) == pytest.approx(0.25)
    assert expected_calibration_error([1.0, 0.0], [1, 0]) == 0.0


def test_threshold_chosen_on_dev_is_applied_unchanged() -> None:
    dev, dev_vectors = cosine_pairs([0.9, 0.8, 0.7, 0.5, 0.3, 0.2], [1, 1, 1, 0, 0, 0], prefix="dev")
    # on the evaluation file the best cut would be 0.45, but the dev cut (0.6) must be used
    test, test_vectors = cosine_pairs([0.95, 0.55, 0.5, 0.4, 0.1], [1, 1, 1, 0, 0], prefix="test")
    model = VectorModel({**dev_vectors, **test_vectors})
    result = evaluate_classification(model, test, dev=dev)  # type: ignore[arg-type]
    assert result["threshold_from"] == "dev"
    assert result["threshold"] == pytest.approx(0.6)
    assert result["accuracy"] == pytest.approx(3 / 5)  # 0.55 and 0.5 are missed at 0.6
    assert choose_threshold([0.95, 0.55, 0.5, 0.4, 0.1], [1, 1, 1, 0, 0]) == pytest.approx(0.45)
    assert result["n"] == 5 and result["dev_n"] == 6 and result["task"] == "classification"
    assert result["calibration_from"] == "dev (platt)" and 0 <= result["ece"] <= 1
    assert result["ece_raw"] == pytest.approx(
        expected_calibration_error([0.95, 0.55, 0.5, 0.4, 0.1], [1, 1, 1, 0, 0]), abs=1e-6
    )


def test_without_dev_the_threshold_is_cross_validated_and_said_so() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 40)
    cosines = np.clip(0.5 + 0.25 * labels + rng.normal(0, 0.2, 40), -0.99, 0.99)
    pairs, vectors = cosine_pairs(cosines.tolist(), labels.tolist())
    outcome = classify_pairs(VectorModel(vectors), pairs, folds=4)  # type: ignore[arg-type]
    assert outcome.metrics["threshold_from"] == "cross-validation (4 folds on the evaluation file)"
    scores = outcome.scores
    expected = np.zeros(40, dtype=bool)
    for train, test in StratifiedKFold(4, shuffle=True, random_state=0).split(scores.reshape(-1, 1), labels):
        expected[test] = apply_threshold(scores[test], choose_threshold(scores[train], labels[train]))
    assert outcome.metrics["accuracy"] == pytest.approx(accuracy_score(labels, expected))
    assert outcome.metrics["roc_auc"] == pytest.approx(roc_auc_score(labels, scores))


def test_a_calibrated_model_uses_its_own_threshold() -> None:
    pairs, vectors = cosine_pairs([0.9, 0.7, 0.4, 0.2], [1, 1, 0, 1])
    calibration = {"method": "platt", "metric": "cosine", "a": 10.0, "b": -5.0, "threshold": 0.5}
    result = evaluate_classification(VectorModel(vectors, calibration=calibration), pairs)  # type: ignore[arg-type]
    assert result["threshold_from"] == "model calibration" and result["threshold"] == 0.5
    assert result["accuracy"] == 0.75
    probs = 1 / (1 + np.exp(-(10 * np.array([0.9, 0.7, 0.4, 0.2]) - 5)))
    assert result["ece"] == pytest.approx(expected_calibration_error(probs, [1, 1, 0, 1]), abs=1e-6)


def test_retrieval_metrics_on_a_hand_worked_three_query_ranking() -> None:
    similarities = np.array(
        [
            [0.9, 0.8, 0.7, 0.1, 0.0],  # ranking 0 1 2 3 4; relevant {1} at rank 2
            [0.1, 0.2, 0.3, 0.4, 0.5],  # ranking 4 3 2 1 0; relevant {4, 0} at ranks 1 and 5
            [0.5, 0.9, 0.1, 0.8, 0.3],  # ranking 1 3 0 4 2; relevant {2} at rank 5
        ]
    )
    relevant = [{1}, {4, 0}, {2}]
    got = retrieval_metrics(similarities, relevant)
    log2 = math.log2
    assert got["recall@1"] == pytest.approx((0 + 0.5 + 0) / 3)
    assert got["recall@5"] == pytest.approx(1.0) and got["recall@10"] == pytest.approx(1.0)
    assert got["mrr@10"] == pytest.approx((1 / 2 + 1 + 1 / 5) / 3)
    ndcg = [1 / log2(3), (1 + 1 / log2(6)) / (1 + 1 / log2(3)), 1 / log2(6)]
    assert got["ndcg@10"] == pytest.approx(sum(ndcg) / 3)
    assert got["map"] == pytest.approx((1 / 2 + (1 + 2 / 5) / 2 + 1 / 5) / 3)
    # independent references: scikit-learn's nDCG and per-query average precision
    truth = np.zeros_like(similarities)
    for i, docs in enumerate(relevant):
        truth[i, list(docs)] = 1
    assert got["ndcg@10"] == pytest.approx(ndcg_score(truth, similarities, k=10))
    aps = [average_precision_score(truth[i], similarities[i]) for i in range(3)]
    assert got["map"] == pytest.approx(np.mean(aps))


def test_mrr_counts_only_the_first_ten() -> None:
    ranking = np.arange(20)
    assert query_metrics(ranking, {10})["mrr@10"] == 0.0
    assert query_metrics(ranking, {9})["mrr@10"] == pytest.approx(0.1)
    assert query_metrics(ranking, {10})["map"] == pytest.approx(1 / 11)


def test_evaluate_retrieval_groups_pairs_and_uses_each_tower() -> None:
    # queries q0, q1 and a query without a relevant document; documents d0..d2
    query_vectors = angle_vectors({"q0": 0.0, "q1": 1.5, "q2": 3.0})
    # document tower: d0 near q0, d1 near q1; the query tower's own view of the docs would rank differently
    document_vectors = angle_vectors({"d0": 0.1, "d1": 1.4, "d2": 0.7})
    pairs = PairData(
        sentence1=["q0", "q0", "q1", "q1", "q2"],
        sentence2=["d0", "d2", "d1", "d0", "d2"],
        labels=[1, 0, 1, 0, 0],
    )
    swapped_docs = angle_vectors({"d0": 1.4, "d1": 0.1, "d2": 0.7})
    two_tower = VectorModel({**query_vectors, **swapped_docs}, document_vectors=document_vectors)
    result = evaluate_retrieval(two_tower, pairs)  # type: ignore[arg-type]
    assert result["n"] == 2 and result["corpus"] == 3 and result["queries_without_relevant"] == 1
    assert result["recall@1"] == 1.0 and result["mrr@10"] == 1.0 and result["map"] == 1.0
    assert ("document", 3) in two_tower.calls and ("query", 2) in two_tower.calls
    # had the query tower encoded the documents, both queries would rank their document second or last
    one_tower = VectorModel({**query_vectors, **swapped_docs})
    assert evaluate_retrieval(one_tower, pairs)["recall@1"] == 0.0  # type: ignore[arg-type]


def test_evaluate_retrieval_matches_brute_force_on_a_tiny_model(minilm_tokenizer) -> None:  # type: ignore[no-untyped-def]
    from conftest import make_tiny_transformer

    model = textsiamese.SiameseModel(
        query=make_tiny_transformer(minilm_tokenizer, seed=1),
        document=make_tiny_transformer(minilm_tokenizer, seed=2),
    )
    queries = ["a dog runs", "the cat eats", "a man plays guitar"]
    docs = ["a dog is running", "the cat is eating food", "music on a guitar", "the park", "a ball"]
    pairs = PairData(
        sentence1=[q for q in queries for _ in docs],
        sentence2=[d for _ in queries for d in docs],
        labels=[int(i == j or (i == 2 and j == 4)) for i in range(3) for j in range(5)],
    )
    result = evaluate_retrieval(model, pairs, chunk_size=2)
    q = model.encode(queries, role="query")
    d = model.encode(docs, role="document")
    sims = (q / np.linalg.norm(q, axis=1, keepdims=True)) @ (d / np.linalg.norm(d, axis=1, keepdims=True)).T
    expected = retrieval_metrics(sims, [{0}, {1}, {2, 4}])
    for key, value in expected.items():
        assert result[key] == pytest.approx(value, abs=1e-6)


def test_reranking_ranks_each_query_within_its_own_candidates() -> None:
    # Rows of four queries, interleaved. q0 ranks its candidates 0.9(-) 0.7(-) 0.4(+) 0.1(+): relevant at
    # ranks 3 and 4, AP = (1/3 + 2/4) / 2 = 5/12, RR = 1/3. q1 ranks 0.8(-) 0.3(+): AP = RR = 1/2.
    # q2 (only relevant) and q3 (only irrelevant) are left out. Ranked against all rows, q1's 0.3 would
    # fall behind q0's candidates; within its own it is second.
    groups = ["q0", "q1", "q0", "q2", "q0", "q1", "q3", "q0", "q2"]
    scores = [0.9, 0.3, 0.4, 0.5, 0.7, 0.8, 0.6, 0.1, 0.2]
    labels = [0, 1, 1, 1, 0, 0, 0, 1, 1]
    got = reranking_metrics(scores, labels, groups)
    assert got["n"] == 2 and got["queries_skipped"] == 2
    assert got["map"] == pytest.approx((5 / 12 + 1 / 2) / 2)
    assert got["mrr"] == pytest.approx((1 / 3 + 1 / 2) / 2) == got["mrr@10"]
    assert got["recall@1"] == 0.0 and got["recall@5"] == 1.0
    # MRR has no cut-off; MRR@10 does: the first relevant candidate at rank 13
    deep = reranking_metrics([1.0 - i / 100 for i in range(13)], [0] * 12 + [1], ["q"] * 13)
    assert deep["mrr"] == pytest.approx(1 / 13) and deep["mrr@10"] == 0.0


@pytest.mark.parametrize("seed", range(3))
def test_reranking_map_and_mrr_match_sklearn_per_group(seed: int) -> None:
    rng = np.random.default_rng(seed)
    groups = rng.integers(0, 15, size=150)
    scores = rng.normal(size=150)  # continuous: no ties
    labels = (rng.random(150) < 0.25).astype(int)
    got = reranking_metrics(scores, labels, groups.tolist())
    aps, rrs = [], []
    for g in np.unique(groups):
        y, s = labels[groups == g], scores[groups == g]
        if 0 < y.sum() < y.size:
            aps.append(average_precision_score(y, s))
            rrs.append(1 / (int(np.flatnonzero(y[np.argsort(-s)])[0]) + 1))
    assert got["n"] == len(aps) > 5 and got["queries_skipped"] == len(np.unique(groups)) - len(aps)
    assert got["map"] == pytest.approx(np.mean(aps)) and got["mrr"] == pytest.approx(np.mean(rrs))


def test_evaluate_reranking_encodes_each_question_once_with_each_tower() -> None:
    # q0 at angle 0 with candidates a (0.1, -), b (0.5, +), c (1.0, -): relevant second, AP = RR = 1/2.
    # q1 at angle 2 with candidates d (2.2, +) and e (2.9, -): relevant first, AP = RR = 1. The candidates'
    # document-tower angles are given; their query-tower angles would put b first for q0.
    questions = angle_vectors({"q0": 0.0, "q1": 2.0, "b": 0.0, "a": 1.0, "c": 1.5, "d": 2.2, "e": 2.9})
    documents = angle_vectors({"a": 0.1, "b": 0.5, "c": 1.0, "d": 2.2, "e": 2.9})
    pairs = PairData(
        sentence1=["q0", "q1", "q0", "q0", "q1"],
        sentence2=["a", "d", "b", "c", "e"],
        labels=[0, 1, 1, 0, 0],
    )
    model = VectorModel(questions, document_vectors=documents)
    result = evaluate_reranking(model, pairs)  # type: ignore[arg-type]
    assert result["task"] == "reranking" and result["metric"] == "cosine" and result["n"] == 2
    assert result["map"] == pytest.approx(0.75) and result["mrr"] == pytest.approx(0.75)
    assert model.calls == [("query", 2), ("document", 5)]
    with pytest.raises(InputError, match="both relevant and irrelevant"):
        evaluate_reranking(model, PairData(["q1"], ["d"], labels=[1]))  # type: ignore[arg-type]


def test_triplet_accuracy_hand_worked_and_evaluator() -> None:
    assert triplet_accuracy([0.1, 0.5, 0.3], [0.2, 0.4, 0.3]) == pytest.approx(1 / 3)  # a tie is a miss
    vectors = angle_vectors({"a": 0.0, "p1": 0.2, "n1": 1.0, "p2": 1.2, "n2": 0.5})
    triplets = TripletData(anchor=["a", "a"], positive=["p1", "p2"], negative=["n1", "n2"])
    result = evaluate_triplets(VectorModel(vectors), triplets)  # type: ignore[arg-type]
    assert result["accuracy"] == 0.5 and result["n"] == 2 and result["task"] == "triplet"
    margins = [(np.cos(0.2) - np.cos(1.0)), (np.cos(1.2) - np.cos(0.5))]
    assert result["mean_margin"] == pytest.approx(np.mean(margins), abs=1e-6)
    euclid = evaluate_triplets(VectorModel(vectors), triplets, metric="euclidean")  # type: ignore[arg-type]
    assert euclid["accuracy"] == 0.5 and euclid["metric"] == "euclidean"


def test_report_writes_pngs_and_a_summary(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 80)
    scores = 0.5 + 0.3 * labels + rng.normal(0, 0.15, 80)
    written = write_report(
        tmp_path / "report",
        {"task": "classification", "accuracy": 0.8, "n": 80},
        scores=scores,
        labels=labels,
        threshold=0.65,
        predicted=scores >= 0.65,
        probabilities=np.clip(scores, 0, 1),
        raw_probabilities=np.clip(scores, 0, 1),
        pca_vectors=rng.normal(size=(80, 8)),
        pca_groups=labels.tolist(),
    )
    names = sorted(p.name for p in written)
    assert names == sorted(
        [
            "scores.png",
            "roc.png",
            "precision_recall.png",
            "reliability.png",
            "confusion.png",
            "pca.png",
            "summary.md",
        ]
    )
    for path in written:
        if path.suffix == ".png":
            assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000
    summary = (tmp_path / "report" / "summary.md").read_text()
    assert "| accuracy | 0.8000 |" in summary and "![roc](roc.png)" in summary


@pytest.mark.parametrize("seed", range(3))
def test_retrieval_metrics_match_sklearn_and_brute_force_on_random_rankings(seed: int) -> None:
    rng = np.random.default_rng(seed)
    similarities = rng.normal(size=(12, 30))  # continuous: no ties
    relevant = [set(rng.choice(30, size=rng.integers(1, 5), replace=False).tolist()) for _ in range(12)]
    truth = np.zeros_like(similarities)
    for i, docs in enumerate(relevant):
        truth[i, list(docs)] = 1
    got = retrieval_metrics(similarities, relevant)
    assert got["ndcg@10"] == pytest.approx(ndcg_score(truth, similarities, k=10))
    assert got["map"] == pytest.approx(
        np.mean([average_precision_score(truth[i], similarities[i]) for i in range(12)])
    )
    order = np.argsort(-similarities, axis=1)
    for k in (1, 5, 10):
        recall = [truth[i, order[i, :k]].sum() / truth[i].sum() for i in range(12)]
        assert got[f"recall@{k}"] == pytest.approx(np.mean(recall))
    first = [int(np.flatnonzero(truth[i, order[i]])[0]) + 1 for i in range(12)]
    assert got["mrr@10"] == pytest.approx(np.mean([1 / r if r <= 10 else 0.0 for r in first]))
