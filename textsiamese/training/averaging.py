"""Weight averaging along a run (stochastic weight averaging, Izmailov et al. 2018).

The last part of a fine-tuning run wanders around a flat region of the loss; the uniform mean of the
weights at several steps there usually generalises a little better than the last step alone, costs one
extra copy of the weights in memory and nothing at inference. ``train.average_from`` (a fraction of the
run's steps) starts the mean; a snapshot is added every ``train.average_every`` steps and at the last step.
The mean goes into each checkpoint, so a resumed run averages the same snapshots as an uninterrupted one.
"""

from __future__ import annotations

import math
from typing import Any

import torch


class WeightAverage:
    """The running uniform mean of a module's floating-point parameters and buffers at the steps
    ``start, start + every, …`` and at ``total`` (steps counted after the optimizer step)."""

    def __init__(self, start: int, every: int, total: int) -> None:
        self.start, self.every, self.total = start, max(1, every), total
        self.count = 0
        self.mean: dict[str, torch.Tensor] = {}
        self.steps: list[int] = []

    def due(self, step: int) -> bool:
        """Whether the weights after ``step`` join the mean."""
        return step == self.total or (step >= self.start and (step - self.start) % self.every == 0)

    @torch.no_grad()
    def add(self, module: torch.nn.Module, step: int) -> None:
        """Fold the current weights of ``module`` into the mean (``mean += (w - mean) / count``)."""
        if self.steps and self.steps[-1] == step:
            return
        self.count += 1
        for name, value in module.state_dict().items():
            if not value.is_floating_point():
                continue
            if name not in self.mean:
                self.mean[name] = value.detach().to("cpu", torch.float32, copy=True)
            else:
                self.mean[name].add_(
                    value.detach().to("cpu", torch.float32) - self.mean[name], alpha=1 / self.count
                )
        self.steps.append(step)

    @torch.no_grad()
    def apply(self, module: torch.nn.Module) -> None:
        """Put the mean into ``module`` (each tensor keeps its device and dtype); a no-op before any ``add``."""
        if not self.mean:
            return
        for name, value in module.state_dict().items():
            if name in self.mean:
                value.copy_(self.mean[name].to(value.device, value.dtype))

    def finish(self, module: torch.nn.Module, step: int) -> None:
        """At the end of a run: the last step joins the mean (an early stop ends off the snapshot grid), and
        the mean goes into ``module``."""
        self.add(module, step)
        self.apply(module)

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint keeps: the mean, how many snapshots it holds, and their steps."""
        return {"average_count": self.count, "average_steps": list(self.steps), "average": dict(self.mean)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a checkpoint's ``state_dict`` (an older checkpoint without one starts empty)."""
        self.count = int(state.get("average_count", 0))
        self.steps = list(state.get("average_steps", []))
        self.mean = {k: v.clone() for k, v in state.get("average", {}).items()}


def averaging_for(
    average_from: float | None, every: int | None, total: int, default_every: int
) -> WeightAverage | None:
    """The ``WeightAverage`` a run's options ask for: from step ``ceil(average_from * total)`` every
    ``every`` steps (default ``default_every``), or None when ``average_from`` is unset."""
    if average_from is None:
        return None
    start = max(1, min(total, math.ceil(average_from * total)))
    return WeightAverage(start, every or default_every, total)
