"""Dev-split evaluators the trainer calls: the evaluation package's own, so the figures a run logs are the
figures ``textsiamese eval`` gives for the same model and file.

* ``sts``: ``evaluate_sts`` (Spearman / Pearson of the model's similarity against gold scores).
* ``pair_classification``: ``evaluate_classification`` without a separate dev set, so the decision threshold
  is chosen by k-fold cross-validation on the dev split and each pair is decided by a threshold fitted on the
  other folds (``threshold_from`` says so); a threshold is never fitted on the pairs it is measured on.
  A model that carries its own calibration is judged at its calibrated threshold instead, as in ``eval``.
* ``retrieval``: ``evaluate_retrieval``; each query (``sentence1``) must find its pair partners among all
  distinct documents of the split (AG News title → description).
* ``reranking``: ``evaluate_reranking``; each query ranks only its own candidates, and only queries with a
  relevant and an irrelevant candidate count (WikiQA).

``DEFAULT_METRIC`` is the key each task's best model is chosen by when a recipe names none.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from textsiamese.data import PairData
from textsiamese.errors import ConfigError, InputError
from textsiamese.evaluation import (
    evaluate_classification,
    evaluate_reranking,
    evaluate_retrieval,
    evaluate_sts,
)
from textsiamese.model import SiameseModel

EVALUATORS: dict[str, Callable[..., dict[str, Any]]] = {
    "sts": evaluate_sts,
    "pair_classification": evaluate_classification,
    "retrieval": evaluate_retrieval,
    "reranking": evaluate_reranking,
}
TASKS = tuple(EVALUATORS)
DEFAULT_METRIC = {
    "sts": "spearman",
    "pair_classification": "accuracy",
    "retrieval": "mrr@10",
    "reranking": "map",
}


def make_evaluator(
    task: str, pairs: PairData, batch_size: int | None = None
) -> Callable[[SiameseModel], dict[str, Any]]:
    """The evaluator for ``task`` on the dev ``pairs``: ``model -> flat dict of floats``.

    The column the task needs (``score`` for sts, ``label`` otherwise) is checked now, so a recipe with the
    wrong dev file fails before training rather than at its first evaluation.
    """
    if task not in EVALUATORS:
        raise ConfigError(f"unknown eval task {task!r}; choose one of {', '.join(TASKS)}")
    needed, present = ("score", pairs.scores) if task == "sts" else ("label", pairs.labels)
    if present is None:
        raise InputError(pairs.source, f"the {task} evaluator needs a {needed!r} column in the dev data")
    evaluate = EVALUATORS[task]
    return lambda model: evaluate(model, pairs, batch_size=batch_size)
