"""Evaluators: how well a model's similarities agree with gold judgements.

Each evaluator takes a model and validated data and returns a flat dict of plain floats (fractions, not
percent) plus ``task`` and ``n``, the form ``textsiamese eval --json`` prints and the trainer logs:

- ``evaluate_sts``: Spearman / Pearson against gold scores;
- ``evaluate_classification``: accuracy, precision, recall, F1 at a threshold chosen on dev (or by
  cross-validation), average precision, ROC-AUC, expected calibration error;
- ``evaluate_retrieval``: recall@1/5/10, MRR@10, nDCG@10, MAP over the file's corpus;
- ``evaluate_reranking``: the same measures plus MRR, each query ranking only its own candidates (WikiQA);
- ``evaluate_triplets``: accuracy of d(anchor, positive) < d(anchor, negative).

``write_report`` (in ``textsiamese.evaluation.report``) draws the plots behind ``--report``.
"""

from __future__ import annotations

from textsiamese.decisions.calibration import expected_calibration_error
from textsiamese.evaluation.classification import (
    ClassificationOutcome,
    average_precision,
    classification_metrics,
    classify_pairs,
    decision_metrics,
    evaluate_classification,
    roc_auc,
)
from textsiamese.evaluation.retrieval import (
    evaluate_reranking,
    evaluate_retrieval,
    query_metrics,
    reranking_metrics,
    retrieval_metrics,
)
from textsiamese.evaluation.sts import evaluate_sts, sts_correlations
from textsiamese.evaluation.triplet import evaluate_triplets, triplet_accuracy, triplet_distances

__all__ = [
    "ClassificationOutcome",
    "average_precision",
    "classification_metrics",
    "classify_pairs",
    "decision_metrics",
    "evaluate_classification",
    "evaluate_reranking",
    "evaluate_retrieval",
    "evaluate_sts",
    "evaluate_triplets",
    "expected_calibration_error",
    "query_metrics",
    "reranking_metrics",
    "retrieval_metrics",
    "roc_auc",
    "sts_correlations",
    "triplet_accuracy",
    "triplet_distances",
]
