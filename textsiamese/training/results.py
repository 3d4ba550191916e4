"""What a training run ends with: a ``TrainResult``, or a ``TrainingError`` when it cannot go on.

Both live here, below every other training module, so that the loop, the checkpoint code and the batch
planner can all raise ``TrainingError`` without importing the trainer.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from textsiamese.errors import TextSiameseError


class TrainingError(TextSiameseError):
    """Training cannot go on (a non-finite loss, a checkpoint that does not fit the run)."""


@dataclass
class TrainResult:
    """What a run did: steps taken, why it stopped, the best and last dev evaluations, wall time."""

    output: str
    steps: int
    total_steps: int
    stopped: str  # completed | early_stopping | interrupted
    seconds: float  # wall time of the whole run, earlier interrupted invocations included
    best_step: int | None = None
    best: dict[str, Any] | None = None
    final: dict[str, Any] | None = None
    baseline: dict[str, Any] | None = None
    examples_per_second: float = 0.0
    signal: str | None = None
    evaluations: list[dict[str, Any]] = field(default_factory=list)
    averaged_steps: list[int] | None = None  # the steps whose weights ``final`` averages (average_from)
    unaveraged: dict[str, Any] | None = None  # the last step's own dev metrics when ``final`` is the average

    def to_dict(self) -> dict[str, Any]:
        """The result as plain data (``results.json`` and the run log's last record)."""
        return asdict(self)
