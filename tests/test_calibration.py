"""Calibration: the stored forms, agreement with scikit-learn, thresholds, ECE, persistence."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

import textsiamese
from textsiamese.data import PairData
from textsiamese.decisions.calibration import (
    calibrate,
    calibrated_scores,
    check_calibration,
    choose_threshold,
    decision_threshold,
    decisions,
    expected_calibration_error,
    fit_calibration,
    probabilities,
    raw_probabilities,
)
from textsiamese.errors import ModelError


def toy_scores(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Cosines that overstate the chance of "same": most pairs score high, only some are the same."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    scores = np.clip(0.55 + 0.2 * labels + rng.normal(0, 0.12, n), -1, 1)
    return scores, labels


def test_platt_matches_sklearn_logistic_regression() -> None:
    s, y = toy_scores(200, 0)
    cal = fit_calibration(s, y, "platt")
    reference = LogisticRegression(C=1e4, max_iter=1000).fit(s.reshape(-1, 1), y)
    grid = np.linspace(-1, 1, 21)
    np.testing.assert_allclose(
        probabilities(cal, grid), reference.predict_proba(grid.reshape(-1, 1))[:, 1], atol=1e-9
    )


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_isotonic_thresholds_reproduce_sklearn_predictions(metric: str) -> None:
    s, y = toy_scores(300, 1)
    if metric == "euclidean":
        s = 1.5 - s  # a distance: smaller is closer
    cal = fit_calibration(s, y, "isotonic", metric=metric)
    reference = IsotonicRegression(y_min=0, y_max=1, increasing=metric == "cosine", out_of_bounds="clip").fit(
        s, y
    )
    grid = np.linspace(s.min() - 0.2, s.max() + 0.2, 97)
    np.testing.assert_allclose(probabilities(cal, grid), reference.predict(grid), atol=1e-12)
    assert all(isinstance(v, float) for v in cal["x"] + cal["y"])  # JSON-able lists


def test_calibration_lowers_expected_calibration_error() -> None:
    dev_s, dev_y = toy_scores(400, 2)
    test_s, test_y = toy_scores(400, 3)
    raw = raw_probabilities(test_s)
    assert raw is not None
    raw_ece = expected_calibration_error(raw, test_y)
    for method in ("platt", "isotonic"):
        cal = fit_calibration(dev_s, dev_y, method)
        ece = expected_calibration_error(probabilities(cal, test_s), test_y)
        assert ece < raw_ece / 2, (method, ece, raw_ece)


@pytest.mark.parametrize("objective", ["accuracy", "f1"])
@pytest.mark.parametrize("seed", range(4))
def test_threshold_is_the_best_cut_by_brute_force(objective: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    s = np.round(rng.uniform(0, 1, 30), 2)  # with ties
    y = rng.integers(0, 2, 30)
    t = choose_threshold(s, y, objective=objective)

    def score(threshold: float) -> float:
        p = s >= threshold
        if objective == "accuracy":
            return float((p == y).mean())
        tp = (p & (y == 1)).sum()
        return 2 * tp / (p.sum() + y.sum()) if p.sum() + y.sum() else 0.0

    candidates = np.concatenate([[s.max() + 1], np.unique(s)])
    assert score(t) == pytest.approx(max(score(c) for c in candidates))
    assert t not in set(s.tolist())  # a midpoint, never on a dev score


def test_distance_thresholds_point_the_other_way() -> None:
    distances = np.array([0.1, 0.2, 0.9, 1.0])
    labels = np.array([1, 1, 0, 0])
    t = choose_threshold(distances, labels, metric="euclidean")
    assert t == pytest.approx(0.55)
    cal = fit_calibration(distances, labels, "platt", metric="euclidean")
    assert cal["a"] < 0 and list(decisions(cal, distances)) == [True, True, False, False]


def test_logistic_loss_form_uses_the_loss_dissimilarity() -> None:
    # p = sigmoid(-w·d + b) with d = 1 - cos for cosine and d = the distance for euclidean
    cosine = {"method": "logistic", "metric": "cosine", "w": 4.0, "b": 1.0}
    cos = np.array([1.0, 0.75, 0.0])
    expected = 1 / (1 + np.exp(-(-4.0 * (1 - cos) + 1.0)))
    np.testing.assert_allclose(probabilities(cosine, cos), expected)
    assert decision_threshold(cosine) == pytest.approx(0.75)  # p = 0.5 where d = b / w = 0.25
    assert list(decisions(cosine, [0.8, 0.7])) == [True, False]
    euclid = {"method": "logistic", "distance": "euclidean", "w": 2.0, "b": 1.0}
    assert probabilities(euclid, [0.5])[0] == pytest.approx(0.5)
    assert decision_threshold(euclid) == pytest.approx(0.5)
    assert list(decisions(euclid, [0.4, 0.6])) == [True, False]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"method": "magic"}, "method 'magic' is unknown"),
        ({"method": "platt", "a": 1.0}, "lacks 'b'"),
        ({"method": "logistic", "w": -1.0, "b": 0.0}, "w > 0"),
        ({"method": "isotonic", "x": [0.2, 0.1], "y": [0.0, 1.0]}, "ascending"),
        ({"method": "platt", "a": 1.0, "b": 0.0, "metric": "hamming"}, "unknown distance"),
    ],
)
def test_bad_calibrations_are_refused_by_name(bad: dict, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        check_calibration(bad)


def test_calibration_is_saved_with_the_model_and_applied(tiny_model_dir: Path, tmp_path: Path) -> None:
    model = textsiamese.load(tiny_model_dir, device="cpu")
    pairs = PairData(
        sentence1=["a dog runs", "a cat eats", "the man plays", "a woman", "the park", "a ball"],
        sentence2=["a dog is running", "the market", "a man is playing", "guitar", "the park", "food"],
        labels=[1, 0, 1, 0, 1, 0],
    )
    cal = calibrate(model, pairs, method="isotonic")
    assert model.calibration is cal and cal["n"] == 6 and cal["method"] == "isotonic"
    copy = tmp_path / "calibrated"
    shutil.copytree(tiny_model_dir, copy)
    model.save(copy)
    again = textsiamese.load(copy, device="cpu")
    assert again.calibration == cal
    out = calibrated_scores(again, pairs.sentence1, pairs.sentence2)
    np.testing.assert_allclose(out["probability"], probabilities(cal, out["score"]))
    assert out["same"].dtype == bool and list(out["same"]) == list(out["score"] >= cal["threshold"])
    assert again.fingerprint() == textsiamese.load(tiny_model_dir).fingerprint()  # weights unchanged


@pytest.mark.slow
def test_mrpc_calibrated_default_model_beats_raw_cosine_ece(default_model, shared_data: Path) -> None:  # type: ignore[no-untyped-def]
    """Integration (slow): calibrate the real model on an MRPC dev part, apply on a disjoint part."""
    from textsiamese.data import read_pairs
    from textsiamese.evaluation import evaluate_classification

    pairs = read_pairs(shared_data / "mrpc" / "msr_paraphrase_train.txt", "mrpc")
    order = np.random.default_rng(0).permutation(len(pairs))
    dev, test = pairs.subset(order[:400].tolist()), pairs.subset(order[400:800].tolist())
    result = evaluate_classification(default_model, test, dev=dev)
    assert result["threshold_from"] == "dev" and result["calibration_from"] == "dev (platt)"
    assert result["ece"] < result["ece_raw"]
    assert result["accuracy"] > 0.65 and result["roc_auc"] > 0.65


@pytest.mark.parametrize("metric", ["cosine", "euclidean", "dot"])
def test_logistic_form_agrees_with_the_logistic_loss_head(metric: str) -> None:
    """The stored {"method": "logistic", "w", "b"} gives the probability the trained loss head gives."""
    import torch

    from textsiamese.losses.pairs import LogisticLoss
    from textsiamese.model.distances import get_distance

    loss = LogisticLoss(distance=metric, w=3.0, b=0.5)
    torch.manual_seed(0)
    a, b = torch.randn(8, 4), torch.randn(8, 4)
    head = loss.probability(loss.dissimilarity(a, b)).detach().numpy()
    w, bias = loss.calibration
    raw = get_distance(metric).pairwise(a, b).numpy()  # what `textsiamese score` writes
    stored = {"method": "logistic", "metric": metric, "w": w, "b": bias}
    np.testing.assert_allclose(probabilities(stored, raw), head, atol=1e-6)
    np.testing.assert_array_equal(decisions(stored, raw), head >= 0.5)
