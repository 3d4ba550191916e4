"""What a run reports while it trains: ``metrics.jsonl``, TensorBoard scalars, the progress bar, throughput.

``metrics.jsonl`` holds one JSON object per record: a train line every ``log_every`` steps, each dev
evaluation, the zero-shot baseline, a failure and the final result. When ``tensorboard`` is installed the
same train figures and the dev metrics also go to event files under ``tensorboard/``. Only the main process
writes, so a data-parallel run logs once.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

METRICS_FILE = "metrics.jsonl"
TRAIN_SCALARS = ("loss", "lr", "examples_per_s")


class RunLog:
    """The log of one run in ``output``; on a process other than the main one every write does nothing."""

    def __init__(self, output: Path, is_main: bool) -> None:
        self.output = output
        self.is_main = is_main
        self.tensorboard: Any = None  # a SummaryWriter while the run is open and tensorboard is installed

    def write(self, record: dict[str, Any]) -> None:
        """Append ``record`` (stamped with the time) to ``metrics.jsonl``; a train line also goes to
        TensorBoard."""
        if not self.is_main:
            return
        record = {"time": round(time.time(), 3), **record}
        with open(self.output / METRICS_FILE, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, default=_jsonable) + "\n")
        if self.tensorboard is not None and "loss" in record:
            for key in TRAIN_SCALARS:
                self.tensorboard.add_scalar(f"train/{key}", record[key], record["step"])

    def write_train(
        self, step: int, epoch: float, loss: float, lr: float, grad_norm: float, rate: float, progress: Any
    ) -> None:
        """The train line of a log point, also shown on the progress bar."""
        record = {
            "step": step,
            "epoch": epoch,
            "loss": loss,
            "lr": lr,
            "grad_norm": grad_norm,
            "examples_per_s": rate,
        }
        self.write(record)
        progress.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", pairs_s=f"{rate:.1f}")

    def write_dev(self, metrics: dict[str, Any], step: int) -> None:
        """Dev figures (the baseline at step 0, then each evaluation) as TensorBoard scalars."""
        if self.tensorboard is None:
            return
        for key, value in metrics.items():
            if isinstance(value, float):
                self.tensorboard.add_scalar(f"dev/{key}", value, step)

    def open_tensorboard(self, purge_step: int | None) -> None:
        """Start the event files, if tensorboard is installed. On resume ``purge_step`` is the checkpoint's
        step: events the interrupted run logged after it are dropped, so a step is never shown twice."""
        if not self.is_main:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is optional
            return
        self.tensorboard = SummaryWriter(str(self.output / "tensorboard"), purge_step=purge_step)

    def close(self) -> None:
        """Flush and release the event files (safe to call twice, and when none were opened)."""
        if self.tensorboard is not None:
            self.tensorboard.close()
            self.tensorboard = None


def progress_bar(total: int, initial: int, enabled: bool) -> Any:
    """The step progress bar (tqdm); disabled, every call on it does nothing."""
    from tqdm.auto import tqdm

    return tqdm(
        total=total, initial=initial, desc="train", unit="step", disable=not enabled, dynamic_ncols=True
    )


@dataclass
class Throughput:
    """Examples counted for the examples-per-second figures: since the last train line (the window) and in
    all. Evaluating and checkpointing are not training: time spent ``paused`` is left out of the window."""

    examples: int = 0
    window_steps: int = 0
    window_examples: int = 0
    window_start: float = field(default_factory=time.perf_counter)

    def count(self, examples: int) -> None:
        """``examples`` more were trained on (the global batch: all processes)."""
        self.examples += examples
        self.window_examples += examples

    def window_rate(self) -> float:
        """Examples per second of training time since the window started."""
        return self.window_examples / max(1e-9, time.perf_counter() - self.window_start)

    def restart_window(self) -> None:
        """Start a new window (after a train line)."""
        self.window_steps, self.window_examples, self.window_start = 0, 0, time.perf_counter()

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Leave the time of the block out of the window."""
        paused = time.perf_counter()
        yield
        self.window_start += time.perf_counter() - paused


def _jsonable(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.tolist()
    return str(value)
