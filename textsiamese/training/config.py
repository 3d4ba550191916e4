"""``TrainConfig``: the options of one training run (the ``train:`` section of a recipe), and what they make
of a run's length (``run_steps``) and of its learning rate at each step (``lr_factor``)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from textsiamese.errors import ConfigError

SCHEDULES = ("linear", "cosine", "constant")


@dataclass
class TrainConfig:
    """Options of ``Trainer``; every field is also a recipe key under ``train:`` (``--set train.lr=3e-5``).

    Steps are optimizer steps; with ``grad_accumulation`` = k each step consumes k batches.
    """

    epochs: float = 1.0
    max_steps: int | None = None  # overrides epochs when set
    batch_size: int = 16  # examples per process per batch
    lr: float = 2e-5
    weight_decay: float = 0.01  # not applied to biases and norm weights
    warmup_ratio: float = 0.1
    warmup_steps: int | None = None  # overrides warmup_ratio when set
    schedule: str = "linear"  # linear | cosine | constant (after warmup)
    grad_accumulation: int = 1
    max_grad_norm: float | None = 1.0
    seed: int = 42
    device: str | None = None  # cpu, cuda, cuda:1 … (default: cuda when available)
    bf16: bool = True  # autocast to bfloat16 on CUDA (ignored on CPU)
    cache_batch_size: int | None = None  # gradient cache for ranking losses: texts per forward pass
    compile: bool = False  # torch.compile each tower's forward for training (dynamic shapes)
    hard_negatives: bool = True  # ranking losses on triplets: use the negatives as hard negatives
    eval_every: int | None = None  # steps between dev evaluations (and at the end); None: end only
    eval_at_start: bool = False  # evaluate the untrained model first (the zero-shot baseline)
    metric: str | None = None  # dev metric that picks the best model and drives early stopping
    greater_is_better: bool = True
    patience: int | None = None  # evaluations without improvement before stopping early
    checkpoint_every: int | None = None  # steps between checkpoints (default: at each evaluation)
    log_every: int = 10
    average_from: float | None = None  # average the weights from this fraction of the run (SWA) on
    average_every: int | None = None  # steps between averaged snapshots (default: eval_every, else an epoch)
    progress: bool = True

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule must be one of {', '.join(SCHEDULES)}, not {self.schedule!r}")
        for name in ("batch_size", "grad_accumulation", "log_every"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"train.{name} must be at least 1")
        for name in (
            "max_steps",
            "eval_every",
            "checkpoint_every",
            "cache_batch_size",
            "warmup_steps",
            "average_every",
        ):
            value = getattr(self, name)
            if value is not None and int(value) < (0 if name == "warmup_steps" else 1):
                raise ConfigError(f"train.{name} must be a positive whole number, got {value!r}")
        if self.max_steps is None and not self.epochs > 0:
            raise ConfigError("train.epochs must be > 0 (or set train.max_steps)")
        if not self.lr > 0:
            raise ConfigError("train.lr must be > 0")
        if self.average_from is not None and not 0 <= float(self.average_from) < 1:
            raise ConfigError(
                "train.average_from must be in [0, 1): the fraction of the run before averaging"
            )
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError("train.warmup_ratio must be in [0, 1)")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from a recipe's ``train:`` mapping; unknown keys are an error (they are usually typos)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown train option(s) {unknown}; known: {', '.join(sorted(known))}")
        values = dict(values)
        for name in ("epochs", "lr", "weight_decay", "warmup_ratio", "max_grad_norm", "average_from"):
            if isinstance(values.get(name), str):  # YAML 1.1 reads 2e-5 (no dot) as a string
                try:
                    values[name] = float(values[name])
                except ValueError:
                    raise ConfigError(f"train.{name} must be a number, got {values[name]!r}") from None
        try:
            return cls(**values)
        except TypeError as error:
            raise ConfigError(f"bad train options: {error}") from None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def lr_factor(step: int, warmup: int, total: int, schedule: str) -> float:
    """The learning-rate multiplier after ``step`` optimizer steps: linear warmup from 0 to 1 over
    ``warmup`` steps, then linear decay to 0 at ``total``, a half cosine to 0, or constant."""
    if warmup > 0 and step < warmup:
        return (step + 1) / (warmup + 1)
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return max(0.0, 1.0 - progress)


def run_steps(config: TrainConfig, batches_per_epoch: int) -> tuple[int, int]:
    """(optimizer steps, warmup steps) of a run whose epochs hold ``batches_per_epoch`` batches: ``max_steps``,
    else the batches of ``epochs`` epochs over ``grad_accumulation`` (at least one step); ``warmup_steps``,
    else ``warmup_ratio`` of the steps."""
    total = config.max_steps or max(
        1, math.ceil(config.epochs * batches_per_epoch / config.grad_accumulation)
    )
    warmup = config.warmup_steps if config.warmup_steps is not None else int(config.warmup_ratio * total)
    return total, warmup
