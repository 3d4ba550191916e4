"""Decisions at a target: thresholds for a precision / recall / FPR, bootstrap intervals, the unsure band."""

from __future__ import annotations

import csv
import io
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

import textsiamese
from textsiamese.cli import main
from textsiamese.decisions.calibration import model_scores
from textsiamese.decisions.targets import (
    bootstrap_interval,
    decision_labels,
    evaluate_at,
    fit_targets,
    parse_target,
    threshold_for_target,
)
from textsiamese.errors import ConfigError

# Sorted by score: cutting after k gives precision 1, 1, 2/3, 3/4, 3/5, 1/2 for k = 1..6.
SCORES = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]
LABELS = [1, 1, 0, 1, 0, 0]


@pytest.mark.parametrize(
    ("target", "value", "threshold", "achieved"),
    [
        ("precision", 0.75, 0.55, 0.75),  # k = 4 is the loosest cut with precision >= 0.75
        ("precision", 0.9, 0.75, 1.0),  # k = 2
        ("fpr", 0.34, 0.55, 1 / 3),  # one of the three negatives let through, at most
        ("recall", 0.9, 0.55, 1.0),  # the strictest cut keeping all three positives
        ("recall", 0.6, 0.75, 2 / 3),
    ],
)
def test_target_threshold_matches_the_hand_computation(
    target: str, value: float, threshold: float, achieved: float
) -> None:
    t, dev = threshold_for_target(SCORES, LABELS, target, value)
    assert t == pytest.approx(threshold) and dev == pytest.approx(achieved)
    assert evaluate_at(SCORES, LABELS, t, "cosine")[target] == pytest.approx(achieved)
    # A distance turns the scores round: the same cut, negated.
    d, _ = threshold_for_target([-s for s in SCORES], LABELS, target, value, metric="euclidean")
    assert d == pytest.approx(-threshold)


def test_an_unreachable_precision_calls_nothing_same() -> None:
    t, dev = threshold_for_target([0.9, 0.8], [0, 1], "precision", 0.99)
    assert t > 0.9 and dev == 1.0


def test_bootstrap_interval_covers_the_true_precision() -> None:
    """200 simulated dev sets of 400 pairs (same ~ N(1, 1), different ~ N(-1, 1), half each): the threshold
    for precision 0.9 is chosen on each, and its 95 % interval must cover the population precision at that
    threshold (known in closed form) in about 95 % of the draws."""
    from scipy.stats import norm

    def true_precision(t: float) -> float:
        same, different = norm.sf(t - 1), norm.sf(t + 1)
        return float(same / (same + different))

    rng = np.random.default_rng(0)
    covered = 0
    for draw in range(200):
        y = rng.integers(0, 2, 400)
        s = rng.normal(np.where(y == 1, 1.0, -1.0), 1.0)
        t, _ = threshold_for_target(s, y, "precision", 0.9)
        interval = bootstrap_interval(s, y, t, "precision", resamples=1000, seed=draw)
        assert interval.low <= interval.value <= interval.high
        covered += interval.low <= true_precision(t) <= interval.high
    assert covered >= 180, covered  # >= 90 % of 200 for a 95 % interval


def test_decision_labels_with_and_without_a_band() -> None:
    assert decision_labels([0.9, 0.5, 0.2], 0.5) == ["same", "same", "not"]
    assert decision_labels([0.9, 0.5, 0.2], 0.5, unsure=(0.3, 0.7)) == ["same", "unsure", "not"]
    assert decision_labels([0.1, 0.5, 2.0], 0.5, "euclidean", unsure=(0.3, 0.7)) == ["same", "unsure", "not"]
    two = fit_targets(SCORES, LABELS, [("precision", 0.9), ("recall", 0.9)], resamples=100)
    assert two["threshold"] == pytest.approx(0.75) and two["unsure"] == pytest.approx([0.55, 0.75])
    with pytest.raises(ConfigError, match="METRIC=VALUE"):
        parse_target("accuracy=0.9")


def _mrpc(shared_data: Path, path: Path, rows: slice) -> Path:
    with (shared_data / "mrpc" / "msr_paraphrase_train.txt").open(encoding="utf-8-sig") as handle:
        table = list(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))[1:][rows]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sentence1", "sentence2", "label"])
        writer.writerows([[r[3], r[4], r[0]] for r in table])
    return path


def test_cli_calibrate_score_and_eval_at_a_target(
    tiny_model_dir: Path, shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    dev = _mrpc(shared_data, tmp_path / "dev.csv", slice(0, 120))
    test = _mrpc(shared_data, tmp_path / "test.csv", slice(120, 200))
    args = ["--data", str(dev), "--model", str(model_dir), "--json", "--resamples", "200"]
    assert main(["calibrate", *args, "--target", "precision=0.8", "--target", "recall=0.9"]) == 0
    summary = json.loads(capsys.readouterr().out)
    model = textsiamese.load(model_dir)
    with dev.open() as handle:
        rows = list(csv.DictReader(handle))
    scores = model_scores(model, [r["sentence1"] for r in rows], [r["sentence2"] for r in rows], "cosine")
    labels = [int(r["label"]) for r in rows]
    high, precision = threshold_for_target(scores, labels, "precision", 0.8)
    low, _ = threshold_for_target(scores, labels, "recall", 0.9)
    assert summary["precision"] == pytest.approx(precision) and len(summary["precision_interval"]) == 2
    assert model.calibration is not None
    assert model.calibration["unsure"] == pytest.approx(sorted([low, high]))
    assert model.calibration["threshold"] == pytest.approx(max(low, high))
    assert main(["score", "--pairs", str(dev), "--model", str(model_dir)]) == 0
    written = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    want = decision_labels(scores, high, unsure=(low, high))
    assert [r["decision"] for r in written] == want and "unsure" in want
    evaluated = ["eval", "--task", "classification", "--data", str(test), "--model", str(model_dir)]
    assert main([*evaluated, "--dev", str(dev), "--target", "precision=0.8", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["precision=0.8 threshold"] == pytest.approx(high)
    assert result["precision=0.8 dev"] == pytest.approx(precision)
    assert 0 <= result["precision=0.8 data_precision"] <= 1 or math.isnan(
        result["precision=0.8 data_precision"]
    )
    assert main([*evaluated, "--target", "precision=0.8"]) == 2
    assert "pass --dev" in capsys.readouterr().err


def test_cli_enroll_dev_target_and_classify_unsure(
    tiny_model_dir: Path, shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from test_oneshot import _agnews_file

    from textsiamese.decisions.oneshot import OneShotClassifier

    refs = _agnews_file(shared_data, tmp_path / "refs.csv", slice(0, 16))
    dev = _agnews_file(shared_data, tmp_path / "dev.csv", slice(16, 80))
    texts = _agnews_file(shared_data, tmp_path / "texts.csv", slice(80, 120))
    out, model = tmp_path / "refs", ["--model", str(tiny_model_dir)]
    band = ["--target", "precision=0.6", "--target", "precision=0.3", "--resamples", "200"]
    assert (
        main(["enroll", "--references", str(refs), "--output", str(out), "--dev", str(dev), *band, *model])
        == 0
    )
    assert "dev precision" in capsys.readouterr().err
    matcher = OneShotClassifier.load(out, textsiamese.load(tiny_model_dir))
    low, high = matcher.bands["centroid"]
    assert low <= high and matcher.threshold == pytest.approx(low)
    assert main(["classify", "--references", str(out), "--texts", str(texts), *model]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    for row in rows:
        similarity = float(row["similarity"])
        if row["predicted"] == "unsure":
            assert low - 1e-6 <= similarity < high + 1e-6
        elif row["predicted"] == "unknown":
            assert similarity < low + 1e-6
        else:
            assert similarity >= high - 1e-6
