"""Dev evaluation during a run: running the evaluator, and tracking the best step and early stopping.

The evaluator runs on the main process only (the others would compute the same figures) and its result is
broadcast, so every data-parallel process takes the same best-model and early-stopping decisions. The
tracker's state goes into each checkpoint, so a resumed run keeps its best step and its patience count.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import torch

from textsiamese.model import SiameseModel
from textsiamese.training.results import TrainingError

Evaluator = Callable[[SiameseModel], dict[str, Any]]


def evaluate(
    evaluator: Evaluator | None, model: SiameseModel, is_main: bool, world_size: int
) -> dict[str, Any]:
    """Run ``evaluator`` on the main process and share its result with the others; the model is left in
    training mode."""
    metrics: dict[str, Any] = {}
    if is_main and evaluator is not None:
        metrics = dict(evaluator(model))
    if world_size > 1:
        holder = [metrics]
        torch.distributed.broadcast_object_list(holder, src=0)
        metrics = holder[0]
    model.train()
    return metrics


class DevTracker:
    """The dev evaluations of a run (``evaluations``: ``{"step", "metrics"}`` records, the zero-shot
    ``baseline``), the best value of ``metric`` so far and its step, and the evaluations since it improved."""

    def __init__(
        self, metric: str | None, greater_is_better: bool = True, patience: int | None = None
    ) -> None:
        self.metric = metric
        self.greater_is_better = greater_is_better
        self.patience = patience
        self.best_metric: float | None = None
        self.best_step: int | None = None
        self.bad_evaluations = 0
        self.evaluations: list[dict[str, Any]] = []
        self.baseline: dict[str, Any] | None = None

    def add(self, step: int, metrics: dict[str, Any]) -> None:
        """Record the evaluation of ``step``."""
        self.evaluations.append({"step": step, "metrics": metrics})

    def judge(self, step: int, metrics: dict[str, Any]) -> bool | None:
        """Whether ``metrics`` beat the best so far (they become the best) or not (one more bad evaluation);
        None when no metric picks a best model. ``TrainingError`` if the evaluator does not give the metric."""
        if self.metric is None:
            return None
        if self.metric not in metrics:
            raise TrainingError(f"dev metric {self.metric!r} is not among the evaluator's {sorted(metrics)}")
        value = float(metrics[self.metric])
        better = self.best_metric is None or (
            value > self.best_metric if self.greater_is_better else value < self.best_metric
        )
        if better:
            self.best_metric, self.best_step, self.bad_evaluations = value, step, 0
        else:
            self.bad_evaluations += 1
        return better

    @property
    def patience_spent(self) -> bool:
        """Whether early stopping should end the run: ``patience`` evaluations in a row without improving."""
        return self.patience is not None and self.bad_evaluations >= self.patience

    def metrics_at(self, step: int | None) -> dict[str, Any] | None:
        """The metrics of the evaluation at ``step`` (the best: ``metrics_at(best_step)``), or None."""
        return next((e["metrics"] for e in self.evaluations if e["step"] == step), None)

    def last_at(self, step: int) -> dict[str, Any] | None:
        """The metrics of the latest evaluation if it was at ``step`` (no need to evaluate again), or None."""
        last = self.evaluations[-1] if self.evaluations else None
        return last["metrics"] if last is not None and last["step"] == step else None

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint keeps (the records as JSON text: ``torch.load`` with ``weights_only``)."""
        return {
            "best_metric": self.best_metric,
            "best_step": self.best_step,
            "bad_evaluations": self.bad_evaluations,
            "evaluations": json.dumps(self.evaluations),
            "baseline": json.dumps(self.baseline),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a checkpoint's ``state_dict``."""
        self.best_metric, self.best_step = state["best_metric"], state["best_step"]
        self.bad_evaluations = state["bad_evaluations"]
        self.evaluations = json.loads(state["evaluations"])
        self.baseline = json.loads(state["baseline"])
