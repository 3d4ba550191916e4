"""Decisions at a chosen operating point: the threshold for a target precision, recall or false-positive rate,
with a bootstrap confidence interval, and an optional "unsure" band between two thresholds.

A threshold that maximises accuracy says nothing about how often a "same" is wrong. ``threshold_for_target``
picks, on labelled dev scores, the loosest threshold (the most pairs called "same") whose dev precision is at
least the target (``precision=0.95``), or whose false-positive rate is at most it (``fpr=0.01``), or the
strictest one that still keeps the target recall (``recall=0.9``). Candidates are the midpoints between
consecutive distinct dev scores, as in ``calibration.choose_threshold``.

``bootstrap_interval`` says how sure that is: the dev pairs are resampled with replacement and the metric
recomputed at the chosen threshold; the percentile interval of those values is reported. Only the four cell
counts (true / false positives and negatives) matter at a fixed threshold, so a resample is one multinomial
draw: O(1) memory per resample whatever the dev size.

``decision_labels`` turns scores into ``same`` / ``unsure`` / ``not`` given a decision threshold and an
optional ``unsure`` band ``(low, high)``: "same" from ``high`` up, "not" below ``low``, "unsure" between (for a
distance metric, smaller is closer and the comparisons turn round).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from textsiamese.errors import ConfigError
from textsiamese.model.distances import get_distance

TARGETS = ("precision", "recall", "fpr")
SAME, UNSURE, NOT = "same", "unsure", "not"


def parse_target(text: str) -> tuple[str, float]:
    """``"precision=0.95"`` → ``("precision", 0.95)``; the value must lie in (0, 1)."""
    name, _, value = text.partition("=")
    name = name.strip().lower()
    if name not in TARGETS or not value:
        raise ConfigError(f"target {text!r}: write METRIC=VALUE with METRIC one of {', '.join(TARGETS)}")
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(f"target {text!r}: {value!r} is not a number") from None
    if not 0 < number < 1:
        raise ConfigError(f"target {text!r}: the value must lie strictly between 0 and 1")
    return name, number


def parse_band(text: str) -> tuple[float, float]:
    """``"0.6,0.8"`` → ``(0.6, 0.8)``; two numbers, the first not above the second."""
    parts = text.split(",")
    try:
        low, high = (float(p) for p in parts)
    except ValueError:
        raise ConfigError(f"--unsure {text!r}: write LOW,HIGH (two numbers)") from None
    if not (math.isfinite(low) and math.isfinite(high)) or low > high:
        raise ConfigError(f"--unsure {text!r}: LOW must not exceed HIGH")
    return low, high


def _sorted(
    scores: Sequence[float] | np.ndarray, labels: Sequence[int] | np.ndarray, metric: str
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Closeness (larger = closer) sorted descending, the labels in that order, and whether the metric is
    a similarity."""
    closer = get_distance(metric).higher_is_closer
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    c = s if closer else -s
    y = np.asarray(labels).reshape(-1).astype(np.int64)
    if c.size == 0 or c.size != y.size:
        raise ConfigError(f"need equally many scores and labels (got {c.size} and {y.size}), at least one")
    if not np.isin(y, (0, 1)).all():
        raise ConfigError("labels must be 0 or 1 (1 = same)")
    if y.sum() == 0 or y.sum() == y.size:
        raise ConfigError("a target threshold needs both same (1) and different (0) dev pairs")
    order = np.argsort(-c, kind="stable")
    return c[order], y[order], closer


def _metric(name: str, tp: np.ndarray, fp: np.ndarray, positives: int, negatives: int) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        if name == "precision":
            return np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 1.0)
        if name == "recall":
            return tp / positives
        return fp / negatives


def _rate(name: str, tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, tn: np.ndarray) -> np.ndarray:
    """precision tp / (tp + fp), recall tp / (tp + fn) or fpr fp / (fp + tn); NaN where undefined."""
    top, other = {"precision": (tp, fp), "recall": (tp, fn), "fpr": (fp, tn)}[name]
    total = top + other
    return np.where(total > 0, top / np.maximum(total, 1), np.nan)


def threshold_for_target(
    scores: Sequence[float] | np.ndarray,
    labels: Sequence[int] | np.ndarray,
    target: str = "precision",
    value: float = 0.95,
    metric: str = "cosine",
) -> tuple[float, float]:
    """The threshold on raw ``scores`` meeting ``target`` (precision ≥ value, recall ≥ value, or fpr ≤
    value) while calling the most pairs "same" (precision, fpr) or the fewest (recall), and the dev value
    of the metric there. When no cut reaches a precision target, the strictest cut is returned (nothing
    "same" on dev); its precision is reported as 1 by convention."""
    if target not in TARGETS:
        raise ConfigError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")
    c, y, closer = _sorted(scores, labels, metric)
    positives, negatives = int(y.sum()), int(y.size - y.sum())
    tp = np.concatenate([[0], np.cumsum(y)])
    fp = np.concatenate([[0], np.cumsum(1 - y)])
    valid = np.ones(c.size + 1, dtype=bool)  # cut k: the k closest are "same"; only between distinct scores
    valid[1:-1] = c[:-1] != c[1:]
    values = _metric(target, tp, fp, positives, negatives)
    ok = valid & (values <= value if target == "fpr" else values >= value)
    candidates = np.flatnonzero(ok)
    k = int(candidates.min() if target == "recall" else candidates.max()) if candidates.size else 0
    if k == 0:
        t = float(c[0]) + 1e-6
    elif k == c.size:
        t = float(c[-1]) - 1e-6
    else:
        t = float(c[k - 1] + c[k]) / 2
    return (t if closer else -t), float(values[k])


@dataclass
class Interval:
    """A bootstrap percentile interval of a metric at a fixed threshold."""

    value: float
    low: float
    high: float
    level: float
    resamples: int


def _cells(
    scores: Sequence[float] | np.ndarray, labels: Sequence[int] | np.ndarray, threshold: float, metric: str
) -> np.ndarray:
    """Counts of (true positive, false positive, false negative, true negative) at ``threshold``."""
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    positive = np.asarray(labels).reshape(-1).astype(np.int64) == 1
    same = s >= threshold if get_distance(metric).higher_is_closer else s <= threshold
    masks = (same & positive, same & ~positive, ~same & positive, ~same & ~positive)
    return np.array([int(np.sum(m)) for m in masks])


def bootstrap_interval(
    scores: Sequence[float] | np.ndarray,
    labels: Sequence[int] | np.ndarray,
    threshold: float,
    target: str = "precision",
    metric: str = "cosine",
    resamples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> Interval:
    """The ``level`` percentile bootstrap interval of ``target`` at ``threshold`` on these dev pairs."""
    if target not in TARGETS:
        raise ConfigError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")
    if resamples < 10 or not 0 < level < 1:
        raise ConfigError("need at least 10 resamples and a level in (0, 1)")
    cells = _cells(scores, labels, threshold, metric)
    rng = np.random.default_rng(seed)
    tp, fp, fn, tn = rng.multinomial(int(cells.sum()), cells / cells.sum(), size=resamples).T
    values = _rate(target, tp, fp, fn, tn)
    point = float(_rate(target, *(np.array([v]) for v in cells))[0])
    alpha = (1 - level) / 2
    low, high = np.nanquantile(values, [alpha, 1 - alpha])
    return Interval(point, float(low), float(high), level, resamples)


def decision_labels(
    scores: Sequence[float] | np.ndarray,
    threshold: float,
    metric: str = "cosine",
    unsure: tuple[float, float] | Sequence[float] | None = None,
) -> list[str]:
    """``same`` / ``not`` at ``threshold``, or ``same`` / ``unsure`` / ``not`` with an ``unsure`` band
    ``(low, high)`` (which then replaces the threshold)."""
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    closer = get_distance(metric).higher_is_closer
    c = s if closer else -s
    if unsure is None:
        edge = threshold if closer else -threshold
        return [SAME if v >= edge else NOT for v in c]
    low, high = sorted(float(v) for v in unsure)
    if not closer:  # for a distance, "same" is at or below the smaller value
        low, high = -high, -low
    return [SAME if v >= high else NOT if v < low else UNSURE for v in c]


def fit_targets(
    scores: Sequence[float] | np.ndarray,
    labels: Sequence[int] | np.ndarray,
    targets: Sequence[tuple[str, float]],
    metric: str = "cosine",
    unsure: tuple[float, float] | None = None,
    resamples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, object]:
    """The calibration keys for decisions at ``targets`` (one or two) on labelled dev scores.

    One target: ``threshold`` is its threshold. Two targets: the stricter threshold is the decision and the
    two bound the ``unsure`` band (e.g. ``precision=0.95`` above, ``recall=0.95`` below: "same" is right 95 %
    of the time and "not" misses at most 5 % of the true pairs). ``unsure=(low, high)`` sets the band by
    hand. Each target is stored with its dev value and bootstrap interval under ``targets``.
    """
    if not targets and unsure is None:
        raise ConfigError("give a target (e.g. precision=0.95) or an unsure band")
    if len(targets) > 2:
        raise ConfigError("give at most two targets (their thresholds bound the unsure band)")
    closer = get_distance(metric).higher_is_closer
    found = []
    for name, value in targets:
        threshold, achieved = threshold_for_target(scores, labels, name, value, metric)
        interval = bootstrap_interval(scores, labels, threshold, name, metric, resamples, level, seed)
        found.append(
            {
                "metric": name,
                "target": value,
                "threshold": threshold,
                "dev": achieved,
                "interval": [interval.low, interval.high],
                "level": level,
                "resamples": resamples,
            }
        )
    out: dict[str, object] = {"targets": found} if found else {}
    thresholds = sorted((float(f["threshold"]) for f in found), reverse=closer)  # type: ignore[arg-type]
    if thresholds:
        out["threshold"] = thresholds[0]  # the strictest
        out["objective"] = ",".join(f"{f['metric']}={f['target']}" for f in found)
    if unsure is not None:
        out["unsure"] = [float(min(unsure)), float(max(unsure))]
    elif len(thresholds) == 2:
        out["unsure"] = sorted(thresholds)
    return out


def evaluate_at(
    scores: Sequence[float] | np.ndarray, labels: Sequence[int] | np.ndarray, threshold: float, metric: str
) -> dict[str, float]:
    """Precision, recall and false-positive rate of "same" at ``threshold`` (NaN where undefined)."""
    cells = [np.array([v]) for v in _cells(scores, labels, threshold, metric)]
    return {name: float(_rate(name, *cells)[0]) for name in TARGETS}


__all__ = [
    "NOT",
    "SAME",
    "TARGETS",
    "UNSURE",
    "Interval",
    "bootstrap_interval",
    "decision_labels",
    "evaluate_at",
    "fit_targets",
    "parse_band",
    "parse_target",
    "threshold_for_target",
]
