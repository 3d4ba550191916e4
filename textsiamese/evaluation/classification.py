"""Pair classification (paraphrase detection, verification): is each pair "same" (label 1) or not?

Threshold-free measures (ROC-AUC, average precision) read the scores directly. Accuracy, precision, recall
and F1 need a decision threshold, and choosing it on the file it is measured on flatters the result, so it is
chosen elsewhere and applied unchanged:

1. on a separate labelled ``dev`` set when one is given (``threshold_from: "dev"``);
2. else the model's own calibration threshold, when it has one for this metric
   (``threshold_from: "model calibration"``);
3. else by k-fold cross-validation on the evaluation file: each fold is decided by a threshold chosen on the
   other folds, and the metrics pool these out-of-fold decisions (``threshold_from: "cross-validation"``;
   ``threshold`` is then the mean of the fold thresholds, for reference).

Expected calibration error is reported for the model's probabilities when it is calibrated (or, with a
``dev`` set, for a Platt calibration fitted there: ``calibration_from``), and ``ece_raw`` for the raw cosine
clipped to [0, 1] read as a probability.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from scipy.stats import rankdata

from textsiamese.decisions.calibration import (
    apply_threshold,
    choose_threshold,
    closeness,
    decision_threshold,
    expected_calibration_error,
    fit_calibration,
    metric_of,
    model_scores,
    probabilities,
    raw_probabilities,
)
from textsiamese.errors import InputError
from textsiamese.model.distances import get_distance

if TYPE_CHECKING:
    from textsiamese.data import PairData
    from textsiamese.model import SiameseModel

Result = dict[str, float | int | str]


def roc_auc(scores: Sequence[float] | np.ndarray, labels: Sequence[int] | np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` (larger = more likely 1), by the Mann-Whitney U statistic
    (ties count one half). NaN when only one class is present."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels).astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(s)
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


def average_precision(scores: Sequence[float] | np.ndarray, labels: Sequence[int] | np.ndarray) -> float:
    """Average precision: the mean over positives of the precision at their rank, with tied scores treated
    as one cut (as scikit-learn's ``average_precision_score``). NaN without positives."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels).astype(np.int64)
    n_pos = int(y.sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-s, kind="stable")
    s_sorted, y_sorted = s[order], y[order]
    last_of_tie = np.append(s_sorted[1:] != s_sorted[:-1], True)
    tp = np.cumsum(y_sorted)[last_of_tie]
    predicted = (np.arange(1, s.size + 1))[last_of_tie]
    precision = tp / predicted
    recall_step = np.diff(np.concatenate([[0], tp])) / n_pos
    return float((precision * recall_step).sum())


def decision_metrics(predicted: np.ndarray, labels: Sequence[int] | np.ndarray) -> dict[str, float]:
    """Accuracy, precision, recall and F1 of boolean decisions (precision 0 when nothing is predicted)."""
    p = np.asarray(predicted).astype(bool)
    y = np.asarray(labels).astype(bool)
    tp = int((p & y).sum())
    fp = int((p & ~y).sum())
    fn = int((~p & y).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "accuracy": float((p == y).mean()) if y.size else float("nan"),
        "precision": precision,
        "recall": recall,
        "f1": f1,
    }


def classification_metrics(
    scores: Sequence[float] | np.ndarray,
    labels: Sequence[int] | np.ndarray,
    threshold: float,
    metric: str = "cosine",
) -> dict[str, float]:
    """All pair-classification measures of raw ``scores`` at a given ``threshold``."""
    c = closeness(scores, metric)
    y = np.asarray(labels)
    result = decision_metrics(apply_threshold(scores, threshold, metric), y)
    result["average_precision"] = average_precision(c, y)
    result["roc_auc"] = roc_auc(c, y)
    return result


@dataclass
class ClassificationOutcome:
    """Everything an evaluation computed: ``metrics`` (what ``--json`` prints) and the arrays the report
    plots."""

    metrics: Result
    scores: np.ndarray
    labels: np.ndarray
    predicted: np.ndarray
    threshold: float
    metric: str
    probabilities: np.ndarray | None = None
    raw_probabilities: np.ndarray | None = None
    embeddings: tuple[np.ndarray, np.ndarray] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _cross_validated(
    scores: np.ndarray, labels: np.ndarray, metric: str, objective: str, folds: int, seed: int
) -> tuple[np.ndarray, float, int]:
    """Out-of-fold decisions, the mean fold threshold, and the number of folds used (0: none possible)."""
    from sklearn.model_selection import StratifiedKFold

    smallest = int(min(labels.sum(), (1 - labels).sum()))
    k = min(folds, smallest)
    if k < 2:
        t = choose_threshold(scores, labels, metric, objective)
        return apply_threshold(scores, t, metric), t, 0
    predicted = np.zeros(labels.size, dtype=bool)
    thresholds = []
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    for train, test in splitter.split(scores.reshape(-1, 1), labels):
        t = choose_threshold(scores[train], labels[train], metric, objective)
        thresholds.append(t)
        predicted[test] = apply_threshold(scores[test], t, metric)
    return predicted, float(np.mean(thresholds)), k


def _decide(
    model: SiameseModel,
    scores: np.ndarray,
    labels: np.ndarray,
    metric: str,
    result: Result,
    *,
    dev: PairData | None,
    objective: str,
    folds: int,
    seed: int,
    batch_size: int | None,
    show_progress: bool,
) -> tuple[np.ndarray, float, dict[str, Any] | None]:
    """The decisions on ``scores``, their threshold and the calibration to report, chosen away from the
    evaluation file: on ``dev`` when given, else from the model's calibration, else by cross-validation.
    Says in ``result`` where the threshold (and calibration) came from."""
    calibration = model.calibration
    usable_calibration = calibration if calibration and metric_of(calibration) == metric else None
    if dev is not None:
        dev_scores = model_scores(
            model, dev.sentence1, dev.sentence2, metric, batch_size=batch_size, show_progress=show_progress
        )
        assert dev.labels is not None
        threshold = choose_threshold(dev_scores, dev.labels, metric, objective)
        predicted = apply_threshold(scores, threshold, metric)
        result.update(threshold=threshold, threshold_from="dev", threshold_objective=objective)
        result["dev_n"] = len(dev)
        if usable_calibration is None and len(set(dev.labels)) == 2:
            usable_calibration = fit_calibration(dev_scores, dev.labels, "platt", metric, objective)
            result["calibration_from"] = "dev (platt)"
        elif usable_calibration is not None:
            result["calibration_from"] = f"model ({usable_calibration['method']})"
    elif usable_calibration is not None:
        threshold = decision_threshold(usable_calibration)
        predicted = apply_threshold(scores, threshold, metric)
        result.update(threshold=threshold, threshold_from="model calibration")
        result["calibration_from"] = f"model ({usable_calibration['method']})"
    else:
        predicted, threshold, used = _cross_validated(scores, labels, metric, objective, folds, seed)
        result.update(
            threshold=threshold,
            threshold_from=f"cross-validation ({used} folds on the evaluation file)"
            if used
            else "the evaluation file itself (too few pairs of a class to cross-validate)",
            threshold_objective=objective,
        )
    return np.asarray(predicted), float(threshold), usable_calibration


def classify_pairs(
    model: SiameseModel,
    pairs: PairData,
    dev: PairData | None = None,
    metric: str | None = None,
    objective: str = "accuracy",
    folds: int = 5,
    seed: int = 0,
    batch_size: int | None = None,
    show_progress: bool = False,
) -> ClassificationOutcome:
    """Evaluate pair classification and keep the arrays (see ``evaluate_classification`` for the dict)."""
    if pairs.labels is None:
        raise InputError(pairs.source, "classification needs a 0/1 'label' column")
    if dev is not None and dev.labels is None:
        raise InputError(dev.source, "the dev file needs a 0/1 'label' column")
    calibration = model.calibration
    if metric is None:
        metric = metric_of(calibration) if calibration else model.similarity_metric
    metric = get_distance(metric).name
    a, b = model.encode_pairs(
        pairs.sentence1, pairs.sentence2, batch_size=batch_size, show_progress=show_progress
    )
    scores = get_distance(metric).pairwise(torch.from_numpy(a), torch.from_numpy(b)).double().numpy()
    labels = np.asarray(pairs.labels, dtype=np.int64)
    result: Result = {"task": "classification", "metric": metric}
    probs: np.ndarray | None = None
    predicted, threshold, usable_calibration = _decide(
        model,
        scores,
        labels,
        metric,
        result,
        dev=dev,
        objective=objective,
        folds=folds,
        seed=seed,
        batch_size=batch_size,
        show_progress=show_progress,
    )
    result.update(decision_metrics(predicted, labels))
    result["average_precision"] = average_precision(closeness(scores, metric), labels)
    result["roc_auc"] = roc_auc(closeness(scores, metric), labels)
    raw = raw_probabilities(scores, metric)
    if usable_calibration is not None:
        probs = probabilities(usable_calibration, scores)
        result["ece"] = expected_calibration_error(probs, labels)
    if raw is not None:
        result["ece_raw"] = expected_calibration_error(raw, labels)
    result["positives"] = int(labels.sum())
    result["n"] = len(pairs)
    return ClassificationOutcome(
        metrics=result,
        scores=scores,
        labels=labels,
        predicted=np.asarray(predicted, dtype=bool),
        threshold=float(threshold),
        metric=metric,
        probabilities=probs,
        raw_probabilities=raw,
        embeddings=(a, b),
    )


def evaluate_classification(
    model: SiameseModel,
    pairs: PairData,
    dev: PairData | None = None,
    metric: str | None = None,
    objective: str = "accuracy",
    folds: int = 5,
    seed: int = 0,
    batch_size: int | None = None,
    show_progress: bool = False,
) -> Result:
    """Accuracy, precision, recall, F1 (at a threshold chosen away from ``pairs``), average precision,
    ROC-AUC and expected calibration error on labelled ``pairs``.

    >>> evaluate_classification(model, read_pairs("test.tsv", need="label"), dev=read_pairs("dev.tsv"))
    ... # doctest: +SKIP
    {'task': 'classification', 'metric': 'cosine', 'threshold': 0.74, 'threshold_from': 'dev', ...}
    """
    return classify_pairs(
        model,
        pairs,
        dev=dev,
        metric=metric,
        objective=objective,
        folds=folds,
        seed=seed,
        batch_size=batch_size,
        show_progress=show_progress,
    ).metrics
