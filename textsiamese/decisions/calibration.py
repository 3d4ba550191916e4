"""Calibration: turn a pair's similarity into the probability that the pair is "same", plus a decision.

A raw cosine of 0.7 is not a 70 % chance of a paraphrase. ``fit_calibration`` learns the map from the model's
score to a probability on labelled dev pairs (Platt / logistic regression, or isotonic regression, both from
scikit-learn) and chooses a decision threshold there; ``calibrate`` stores the result in
``model.calibration`` so ``model.save`` writes it into ``config.json`` and ``load`` brings it back.
``probabilities`` / ``decisions`` / ``calibrated_scores`` apply it.

The stored form is a JSON-able dict; ``score`` below is the model's raw value under ``metric`` (the
similarity ``textsiamese score`` writes: cosine or dot, larger is closer; or a distance, smaller is closer):

``{"method": "platt", "metric": "cosine", "a": 14.2, "b": -10.9, ...}``
    ``p = sigmoid(a * score + b)`` (a is negative for a distance metric).
``{"method": "isotonic", "metric": "cosine", "x": [...], "y": [...], ...}``
    ``p`` is the linear interpolation of the points (x ascending, y monotone; scikit-learn's
    ``X_thresholds_`` / ``y_thresholds_``) at ``score``, flat beyond the first and last x.
``{"method": "logistic", "metric": "euclidean", "w": 2.0, "b": 1.0}``
    written by the trainer for a model trained with the ``logistic`` loss: ``p = sigmoid(-w * d + b)`` where d
    is the dissimilarity that loss read: the distance itself for euclidean / squared_euclidean / manhattan,
    ``1 - cos`` for cosine, ``-u·v`` for dot. ``"distance"`` is accepted as a synonym of ``"metric"``;
    ``w`` must be positive.

Optional keys in every form: ``threshold`` (the decision on ``score``: same when ``score >= threshold`` for a
similarity, ``score <= threshold`` for a distance; when absent, same when ``p >= 0.5``), ``objective`` (what
the threshold maximised on dev: ``accuracy``, ``f1``, or a target such as ``precision=0.95``), ``targets``
(per target: its threshold, dev value and bootstrap interval), ``unsure`` (``[low, high]``: between them the
decision is "unsure"), ``n`` (dev pairs), ``fitted_on`` (a file name).

>>> cal = fit_calibration([0.9, 0.8, 0.3, 0.2], [1, 1, 0, 0])        # doctest: +SKIP
>>> probabilities(cal, [0.85, 0.1])                                    # doctest: +SKIP
array([0.9..., 0.0...])

Expected calibration error (``expected_calibration_error``) measures how far predicted probabilities are from
observed frequencies; ``raw_probabilities`` gives the naive reading of a cosine as a probability (clipped to
[0, 1]) that calibration is compared against.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from textsiamese.errors import ConfigError, InputError, ModelError
from textsiamese.model.distances import get_distance

if TYPE_CHECKING:
    from textsiamese.data import PairData
    from textsiamese.model import SiameseModel

METHODS = ("platt", "isotonic", "logistic")
OBJECTIVES = ("accuracy", "f1")

ArrayLike = Sequence[float] | np.ndarray


def _sigmoid(x: np.ndarray) -> np.ndarray:
    out: np.ndarray = 0.5 * (1.0 + np.tanh(0.5 * x))  # overflow-free logistic
    return out


def _as_float_array(values: ArrayLike) -> np.ndarray:
    return np.asarray(values, dtype=np.float64).reshape(-1)


def _check_binary(labels: ArrayLike) -> np.ndarray:
    y = np.asarray(labels).reshape(-1)
    if y.size and not np.isin(y, (0, 1)).all():
        raise ConfigError("labels must be 0 or 1 (1 = same)")
    return y.astype(np.int64)


def closeness(scores: ArrayLike, metric: str = "cosine") -> np.ndarray:
    """Scores turned so that larger means closer (distances negated)."""
    s = _as_float_array(scores)
    return s if get_distance(metric).higher_is_closer else -s


def metric_of(calibration: Mapping[str, Any]) -> str:
    """The metric a calibration was fitted for (``metric`` or its synonym ``distance``; cosine if absent)."""
    return get_distance(str(calibration.get("metric", calibration.get("distance", "cosine")))).name


def check_calibration(calibration: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a stored calibration dict; returns a plain copy. Raises ``ModelError`` naming the problem."""
    if not isinstance(calibration, Mapping):
        raise ModelError(f"calibration must be a JSON object, got {type(calibration).__name__}")
    cal = dict(calibration)
    method = cal.get("method")
    if method not in METHODS:
        raise ModelError(f"calibration method {method!r} is unknown; expected one of {', '.join(METHODS)}")
    try:
        metric_of(cal)
    except ConfigError as error:
        raise ModelError(f"calibration: {error}") from None
    needed = {"platt": ("a", "b"), "logistic": ("w", "b"), "isotonic": ("x", "y")}[method]
    for key in needed:
        if key not in cal:
            raise ModelError(f"{method} calibration lacks {key!r}")
    if method == "isotonic":
        x, y = np.asarray(cal["x"], dtype=float), np.asarray(cal["y"], dtype=float)
        if x.ndim != 1 or x.shape != y.shape or x.size == 0:
            raise ModelError("isotonic calibration needs equally long, non-empty 'x' and 'y' lists")
        if np.any(np.diff(x) < 0):
            raise ModelError("isotonic calibration 'x' must be ascending")
    else:
        for key in needed:
            if not isinstance(cal[key], int | float) or not math.isfinite(cal[key]):
                raise ModelError(f"{method} calibration {key!r} must be a finite number")
        if method == "logistic" and cal["w"] <= 0:
            raise ModelError(f"logistic calibration needs w > 0, got {cal['w']}")
    threshold = cal.get("threshold")
    if threshold is not None and (not isinstance(threshold, int | float) or not math.isfinite(threshold)):
        raise ModelError("calibration threshold must be a finite number")
    band = cal.get("unsure")
    if band is not None and (
        not isinstance(band, list | tuple)
        or len(band) != 2
        or not all(isinstance(v, int | float) and math.isfinite(v) for v in band)
        or band[0] > band[1]
    ):
        raise ModelError("calibration 'unsure' must be [low, high], two finite numbers with low <= high")
    return cal


def _dissimilarity(scores: np.ndarray, metric: str) -> np.ndarray:
    """The d the logistic loss reads: distances as they are, ``1 - cos`` for cosine, ``-u·v`` for dot."""
    if metric == "cosine":
        return 1.0 - scores
    if metric == "dot":
        return -scores
    return scores


def probabilities(calibration: Mapping[str, Any], scores: ArrayLike) -> np.ndarray:
    """P(same) for each raw score under ``calibration`` (any of the three stored forms)."""
    cal = check_calibration(calibration)
    s = _as_float_array(scores)
    method = cal["method"]
    if method == "platt":
        return _sigmoid(float(cal["a"]) * s + float(cal["b"]))
    if method == "logistic":
        d = _dissimilarity(s, metric_of(cal))
        return _sigmoid(-float(cal["w"]) * d + float(cal["b"]))
    x, y = np.asarray(cal["x"], dtype=float), np.asarray(cal["y"], dtype=float)
    return np.clip(np.interp(s, x, y), 0.0, 1.0)


def decision_threshold(calibration: Mapping[str, Any]) -> float:
    """The threshold on the raw score: the stored one, else the score where ``p`` crosses 0.5."""
    cal = check_calibration(calibration)
    if cal.get("threshold") is not None:
        return float(cal["threshold"])
    metric = metric_of(cal)
    method = cal["method"]
    if method == "platt":
        if cal["a"] == 0:
            raise ModelError("platt calibration with a = 0 has no decision threshold")
        return -float(cal["b"]) / float(cal["a"])
    if method == "logistic":
        d = float(cal["b"]) / float(cal["w"])
        return {"cosine": 1.0 - d, "dot": -d}.get(metric, d)
    x, y = np.asarray(cal["x"], dtype=float), np.asarray(cal["y"], dtype=float)
    closer = get_distance(metric).higher_is_closer
    above = np.flatnonzero(y >= 0.5)
    if above.size == 0:
        return float(x[-1] + 1.0) if closer else float(x[0] - 1.0)
    return float(x[above[0]]) if closer else float(x[above[-1]])


def decisions(calibration: Mapping[str, Any], scores: ArrayLike) -> np.ndarray:
    """The boolean "same" decision for each raw score (see ``decision_threshold``)."""
    return apply_threshold(scores, decision_threshold(calibration), metric_of(calibration))


def apply_threshold(scores: ArrayLike, threshold: float, metric: str = "cosine") -> np.ndarray:
    """``score >= threshold`` for a similarity metric, ``score <= threshold`` for a distance."""
    s = _as_float_array(scores)
    return s >= threshold if get_distance(metric).higher_is_closer else s <= threshold


def choose_threshold(
    scores: ArrayLike, labels: ArrayLike, metric: str = "cosine", objective: str = "accuracy"
) -> float:
    """The threshold on raw ``scores`` that maximises ``objective`` (accuracy or F1) on these labelled pairs.

    Candidates are the midpoints between consecutive distinct scores (and one beyond each end), so the
    threshold never sits exactly on a dev score. Ties between equally good cut points go to the first
    (the strictest) one.
    """
    if objective not in OBJECTIVES:
        raise ConfigError(f"unknown threshold objective {objective!r}; choose one of {', '.join(OBJECTIVES)}")
    c = closeness(scores, metric)
    y = _check_binary(labels)
    if c.size == 0 or c.size != y.size:
        raise ConfigError(f"need equally many scores and labels (got {c.size} and {y.size}), at least one")
    order = np.argsort(-c, kind="stable")
    c_sorted, y_sorted = c[order], y[order]
    positives = int(y.sum())
    # Cut after position k-1 (the k closest predicted "same"), only where the next value differs.
    k = np.arange(0, c.size + 1)
    tp = np.concatenate([[0], np.cumsum(y_sorted)])
    valid = np.ones(c.size + 1, dtype=bool)
    valid[1:-1] = c_sorted[:-1] != c_sorted[1:]
    if objective == "accuracy":
        value = (tp + (c.size - positives) - (k - tp)) / c.size
    else:
        denominator = k + positives
        value = np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1), 0.0)
    value = np.where(valid, value, -np.inf)
    best = int(np.argmax(value))
    if best == 0:
        t = float(c_sorted[0]) + 1.0
    elif best == c.size:
        t = float(c_sorted[-1]) - 1.0
    else:
        t = float(c_sorted[best - 1] + c_sorted[best]) / 2.0
    return t if get_distance(metric).higher_is_closer else -t


def fit_calibration(
    scores: ArrayLike,
    labels: ArrayLike,
    method: str = "platt",
    metric: str = "cosine",
    objective: str = "accuracy",
) -> dict[str, Any]:
    """Fit ``method`` (``platt`` or ``isotonic``) on raw scores and 0/1 labels, and choose a threshold.

    Returns the JSON-able dict described in the module docstring.
    """
    from sklearn.isotonic import IsotonicRegression
    from sklearn.linear_model import LogisticRegression

    s = _as_float_array(scores)
    y = _check_binary(labels)
    if s.size != y.size:
        raise ConfigError(f"{s.size} scores but {y.size} labels")
    if len(set(y.tolist())) < 2:
        raise InputError("<calibration>", "calibration needs both same (1) and different (0) pairs")
    if not np.isfinite(s).all():
        raise ConfigError("scores must be finite")
    metric = get_distance(metric).name
    result: dict[str, Any] = {"method": method, "metric": metric}
    if method == "platt":
        # Weak regularisation: a one-feature logistic regression is Platt scaling.
        fit = LogisticRegression(C=1e4, max_iter=1000).fit(s.reshape(-1, 1), y)
        result.update(a=float(fit.coef_[0, 0]), b=float(fit.intercept_[0]))
    elif method == "isotonic":
        iso = IsotonicRegression(
            y_min=0.0, y_max=1.0, increasing=get_distance(metric).higher_is_closer, out_of_bounds="clip"
        ).fit(s, y)
        result.update(x=[float(v) for v in iso.X_thresholds_], y=[float(v) for v in iso.y_thresholds_])
    else:
        raise ConfigError(f"cannot fit calibration method {method!r}; choose platt or isotonic")
    result["threshold"] = choose_threshold(s, y, metric, objective)
    result["objective"] = objective
    result["n"] = int(s.size)
    return check_calibration(result)


def model_scores(
    model: SiameseModel,
    texts_a: Sequence[str],
    texts_b: Sequence[str],
    metric: str | None = None,
    batch_size: int | None = None,
    show_progress: bool = False,
) -> np.ndarray:
    """The model's raw scores for aligned pairs under ``metric`` (default: the calibration's, else the
    model's own), as float64."""
    if metric is None:
        metric = metric_of(model.calibration) if model.calibration else model.similarity_metric
    values = model.similarity(
        texts_a, texts_b, metric=metric, batch_size=batch_size, show_progress=show_progress
    )
    return np.asarray(values, dtype=np.float64)


def calibrate(
    model: SiameseModel,
    pairs: PairData,
    method: str = "platt",
    metric: str | None = None,
    objective: str = "accuracy",
    batch_size: int | None = None,
    show_progress: bool = False,
    targets: Sequence[tuple[str, float]] = (),
    unsure: tuple[float, float] | None = None,
    resamples: int = 2000,
) -> dict[str, Any]:
    """Fit a calibration on labelled dev ``pairs`` and store it in ``model.calibration`` (saved with the model).

    ``targets`` (e.g. ``[("precision", 0.95)]``, at most two) replace the ``objective`` threshold by the one
    meeting the target on these pairs, with its bootstrap interval; two targets, or ``unsure=(low, high)``,
    add an unsure band (see ``textsiamese.decisions.targets.fit_targets``).

    >>> cal = calibrate(model, read_pairs("dev.tsv", need="label"))      # doctest: +SKIP
    >>> model.save("runs/calibrated")                                     # doctest: +SKIP
    """
    if pairs.labels is None:
        raise InputError(pairs.source, "calibration needs a 0/1 'label' column")
    metric = get_distance(metric or model.similarity_metric).name
    scores = model_scores(
        model, pairs.sentence1, pairs.sentence2, metric, batch_size=batch_size, show_progress=show_progress
    )
    try:
        calibration = fit_calibration(scores, pairs.labels, method=method, metric=metric, objective=objective)
    except InputError as error:
        raise InputError(pairs.source, error.reason) from None
    if targets or unsure is not None:
        from textsiamese.decisions.targets import fit_targets

        calibration.update(fit_targets(scores, pairs.labels, targets, metric, unsure, resamples))
    calibration["fitted_on"] = pairs.source
    model.calibration = calibration
    return calibration


def calibrated_scores(
    model: SiameseModel,
    texts_a: Sequence[str],
    texts_b: Sequence[str],
    batch_size: int | None = None,
    show_progress: bool = False,
) -> dict[str, np.ndarray]:
    """``score`` for each pair and, when the model is calibrated, ``probability``, ``same`` (bool) and
    ``decision`` (``same`` / ``unsure`` / ``not``).

    This is what ``textsiamese score`` writes per row.
    """
    scores = model_scores(model, texts_a, texts_b, batch_size=batch_size, show_progress=show_progress)
    result = {"score": scores}
    if model.calibration:
        result["probability"] = probabilities(model.calibration, scores)
        result["same"] = decisions(model.calibration, scores)
        result["decision"] = np.asarray(decision_words(model.calibration, scores))
    return result


def decision_words(calibration: Mapping[str, Any], scores: ArrayLike) -> list[str]:
    """``same`` / ``not`` at the decision threshold, or ``same`` / ``unsure`` / ``not`` when the calibration
    has an ``unsure`` band."""
    from textsiamese.decisions.targets import decision_labels

    cal = check_calibration(calibration)
    return decision_labels(scores, decision_threshold(cal), metric_of(cal), cal.get("unsure"))


def raw_probabilities(scores: ArrayLike, metric: str = "cosine") -> np.ndarray | None:
    """The naive reading of a similarity as a probability (clipped to [0, 1]); None for a distance metric,
    which has no such reading."""
    if not get_distance(metric).higher_is_closer:
        return None
    return np.clip(_as_float_array(scores), 0.0, 1.0)


def expected_calibration_error(probs: ArrayLike, labels: ArrayLike, bins: int = 10) -> float:
    """ECE with ``bins`` equal-width bins on [0, 1]: ``sum_b (n_b / N) * |mean(p in b) - mean(y in b)|``.

    A probability of exactly 1 falls in the last bin.
    """
    p = _as_float_array(probs)
    y = _check_binary(labels)
    if p.size != y.size or p.size == 0:
        raise ConfigError(f"need equally many probabilities and labels (got {p.size} and {y.size})")
    if bins < 1:
        raise ConfigError("bins must be at least 1")
    index = np.minimum((np.clip(p, 0.0, 1.0) * bins).astype(np.int64), bins - 1)
    total = 0.0
    for b in range(bins):
        mask = index == b
        if mask.any():
            total += mask.sum() / p.size * abs(p[mask].mean() - y[mask].mean())
    return float(total)


def reliability_curve(probs: ArrayLike, labels: ArrayLike, bins: int = 10) -> dict[str, np.ndarray]:
    """Per non-empty bin: mean predicted probability, observed frequency of "same", and count."""
    p = _as_float_array(probs)
    y = _check_binary(labels)
    index = np.minimum((np.clip(p, 0.0, 1.0) * bins).astype(np.int64), bins - 1)
    mean_p, freq, count = [], [], []
    for b in range(bins):
        mask = index == b
        if mask.any():
            mean_p.append(p[mask].mean())
            freq.append(y[mask].mean())
            count.append(int(mask.sum()))
    return {"predicted": np.array(mean_p), "observed": np.array(freq), "count": np.array(count)}


__all__ = [
    "METHODS",
    "OBJECTIVES",
    "apply_threshold",
    "calibrate",
    "calibrated_scores",
    "check_calibration",
    "choose_threshold",
    "closeness",
    "decision_threshold",
    "decision_words",
    "decisions",
    "expected_calibration_error",
    "fit_calibration",
    "metric_of",
    "model_scores",
    "probabilities",
    "raw_probabilities",
    "reliability_curve",
]
