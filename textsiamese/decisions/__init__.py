"""From a score to a decision: what a similarity means and what to answer with it.

``calibration`` learns, on labelled dev pairs, the map from a model's raw score to the probability that a
pair is "same" (Platt or isotonic) and the decision threshold, stores it in the model's config and applies
it; ``oneshot`` classifies texts by their nearest enrolled reference (or class centroid), answering
``unknown`` below a similarity threshold. Both read scores from a model; neither changes it.
"""

from __future__ import annotations

from textsiamese.decisions.calibration import (
    METHODS,
    OBJECTIVES,
    apply_threshold,
    calibrate,
    calibrated_scores,
    check_calibration,
    choose_threshold,
    closeness,
    decision_threshold,
    decisions,
    expected_calibration_error,
    fit_calibration,
    metric_of,
    model_scores,
    probabilities,
    raw_probabilities,
    reliability_curve,
)
from textsiamese.decisions.oneshot import STRATEGIES, OneShotClassifier, Predictions, accuracy

__all__ = [
    "METHODS",
    "OBJECTIVES",
    "STRATEGIES",
    "OneShotClassifier",
    "Predictions",
    "accuracy",
    "apply_threshold",
    "calibrate",
    "calibrated_scores",
    "check_calibration",
    "choose_threshold",
    "closeness",
    "decision_threshold",
    "decisions",
    "expected_calibration_error",
    "fit_calibration",
    "metric_of",
    "model_scores",
    "probabilities",
    "raw_probabilities",
    "reliability_curve",
]
