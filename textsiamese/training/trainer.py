"""The training loop: a plain torch loop over tokenized, length-bucketed batches.

``Trainer`` wires the run together and holds its position; each concern has a module of its own beside it:

* ``step.py``: one step (forward, loss and backward per batch; gradient averaging, clipping, fused AdamW and
  the schedule), kept sync-free: loss, gradient norm and a sticky non-finite flag stay on the device in
  ``DeviceStats`` and fused AdamW skips every step taken while the flag is set;
* ``batches.py``: the training set and the seeded batch plan (``BatchPlan``: epoch, batch index);
* ``tracking.py``: dev evaluations, the best model by ``config.metric`` and early stopping;
* ``checkpoint.py``: save and resume exactly (model, optimizer, scheduler, RNG, data position), atomically;
* ``run_log.py``: ``metrics.jsonl``, TensorBoard, the progress bar; ``signals.py``: SIGINT / SIGTERM.

The host reads the device stats in one transfer only at check points (a log line, an evaluation, a
checkpoint, a stop, the end) and raises ``TrainingError`` there, naming the first bad step, before anything
is evaluated or written.

>>> trainer = Trainer(model, get_loss("cosent"), pairs, TrainConfig(epochs=1), "runs/x")  # doctest: +SKIP
>>> result = trainer.train()                                                            # doctest: +SKIP
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Generic, TypeVar, cast, overload

import torch

from textsiamese.data import PairData, TripletData
from textsiamese.losses import SiameseLoss
from textsiamese.model import SiameseModel
from textsiamese.training import distributed as ddp
from textsiamese.training.averaging import averaging_for
from textsiamese.training.batches import BatchPlan, TrainSet, labels_checked, prepare_train_set
from textsiamese.training.batches import build_train_set as build_train_set
from textsiamese.training.batches import check_train_labels as check_train_labels
from textsiamese.training.batches import plan_epoch as plan_epoch
from textsiamese.training.checkpoint import CHECKPOINT_DIR as CHECKPOINT_DIR
from textsiamese.training.checkpoint import STATE_FILE as STATE_FILE
from textsiamese.training.checkpoint import (
    read_checkpoint,
    restore_rng,
    restore_training,
    rng_state,
    write_checkpoint,
)
from textsiamese.training.compile import CompiledTower as CompiledTower
from textsiamese.training.config import TrainConfig, run_steps
from textsiamese.training.machine import machine_description as machine_description
from textsiamese.training.results import TrainingError, TrainResult
from textsiamese.training.run_log import METRICS_FILE as METRICS_FILE
from textsiamese.training.run_log import RunLog, Throughput, progress_bar
from textsiamese.training.signals import StopSignals
from textsiamese.training.step import NONFINITE_ELSEWHERE as NONFINITE_ELSEWHERE
from textsiamese.training.step import NONFINITE_LOSS as NONFINITE_LOSS
from textsiamese.training.step import NONFINITE_NORM as NONFINITE_NORM
from textsiamese.training.step import DeviceStats as DeviceStats
from textsiamese.training.step import HostStats, Parts, TrainStep, nonfinite_message
from textsiamese.training.tracking import DevTracker, evaluate
from textsiamese.training.tracking import Evaluator as Evaluator

T = TypeVar("T")


class _Kept(Generic[T]):
    """A ``Trainer`` attribute kept by one of its parts (``_Kept("tracker")``: ``trainer.best_step`` is
    ``trainer.tracker.best_step``), so the attributes users read on the trainer stay where they were."""

    def __init__(self, part: str) -> None:
        self.part = part
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, trainer: None, owner: type | None = None) -> _Kept[T]: ...
    @overload
    def __get__(self, trainer: object, owner: type | None = None) -> T: ...
    def __get__(self, trainer: object | None, owner: type | None = None) -> T | _Kept[T]:
        if trainer is None:
            return self
        return cast(T, getattr(getattr(trainer, self.part), self.name))

    def __set__(self, trainer: object, value: T) -> None:
        setattr(getattr(trainer, self.part), self.name, value)


class Trainer:
    """Fine-tune ``model`` with ``loss`` on ``data``; outputs go to ``output_dir``.

    ``data`` is ``PairData``, ``TripletData`` or an already tokenized ``TrainSet``; its shape must suit the
    loss family (see ``textsiamese.training.batches``). ``evaluator(model) -> dict`` runs on the dev data;
    ``config.metric`` names the key that picks the best model. ``resume=True`` continues from
    ``output_dir/checkpoint``. Every training label is checked for the loss once, here (``InputError``);
    while ``train`` runs, the loss skips its per-batch check. ``config.compile`` trains through
    ``torch.compile``d towers (``CompiledTower``).

    Output directory: ``final/`` (model at the end), ``best/`` (best dev metric), ``checkpoint/``
    (``model/`` + ``state.pt``), ``metrics.jsonl`` (one JSON object per log line and per evaluation) and, when
    ``tensorboard`` is installed, TensorBoard event files under ``tensorboard/``.
    """

    # The dev tracker's figures, read and set as the trainer's own.
    best_metric = _Kept[float | None]("tracker")
    best_step = _Kept[int | None]("tracker")
    bad_evaluations = _Kept[int]("tracker")
    evaluations = _Kept[list[dict[str, Any]]]("tracker")
    baseline = _Kept[dict[str, Any] | None]("tracker")
    # The data position (next batch: ``batch_index`` of ``epoch``'s plan) and the plan's sizes.
    epoch = _Kept[int]("batches")
    batch_index = _Kept[int]("batches")
    global_batch = _Kept[int]("batches")
    batches_per_epoch = _Kept[int]("batches")
    # What the step trains with.
    params = _Kept[list[torch.nn.Parameter]]("_train_step")
    optimizer = _Kept[torch.optim.AdamW]("_train_step")
    scheduler = _Kept[torch.optim.lr_scheduler.LambdaLR]("_train_step")
    autocast = _Kept[AbstractContextManager[Any]]("_train_step")

    def __init__(
        self,
        model: SiameseModel,
        loss: SiameseLoss,
        data: PairData | TripletData | TrainSet,
        config: TrainConfig | None = None,
        output_dir: str | Path = "runs/train",
        evaluator: Evaluator | None = None,
        resume: bool = False,
    ) -> None:
        self.config = config or TrainConfig()
        self.output = Path(output_dir)
        self.loss_fn = loss
        self.family = getattr(loss, "family", "")
        self.evaluator = evaluator
        self.resume = resume
        cfg = self.config
        if self.config.cache_batch_size is not None and self.family != "ranking":
            raise TrainingError("train.cache_batch_size (gradient cache) works with ranking losses only")

        self.device = ddp.choose_device(cfg.device)
        self._own_group = ddp.init_from_env(self.device)
        self.rank, self.world_size = ddp.world()
        self.is_main = self.rank == 0

        self.model = model.to(self.device)
        self.loss_fn.to(self.device)
        self.data = prepare_train_set(model, data, loss, cfg.hard_negatives, announce=self.is_main)
        self.batches = BatchPlan(self.data, cfg.batch_size, cfg.seed, self.rank, self.world_size)
        self.total_steps, self.warmup = run_steps(cfg, self.batches_per_epoch)
        self._train_step = TrainStep(
            self.model,
            loss,
            self.data,
            cfg,
            self.device,
            (self.total_steps, self.warmup),
            self.rank,
            self.world_size,
        )
        # Position: optimizer steps done, and the next batch to read (epoch, index in that epoch's plan).
        self.step = 0
        default_every = cfg.eval_every or self.batches_per_epoch
        self.averaging = averaging_for(cfg.average_from, cfg.average_every, self.total_steps, default_every)
        self.tracker = DevTracker(cfg.metric, cfg.greater_is_better, cfg.patience)
        self.signals = StopSignals(announce=self.is_main)
        self.run_log = RunLog(self.output, self.is_main)
        self._throughput = Throughput()
        self._positions: dict[int, tuple[int, int]] = {}  # step → (epoch, batch index) since the last read
        self._seconds_before = 0.0  # wall time of earlier (interrupted) invocations of this run
        self._started = time.perf_counter()

    # ------------------------------------------------------------------ the step (step.py)

    def embed(self, parts: Parts) -> list[torch.Tensor]:
        """Embeddings of each (role, token ids) part, in order. Parts read by the same tower go through it
        in one forward pass (both sides of a shared-tower batch are one batch)."""
        return self._train_step.embed(parts)

    def batch_loss(self, indices: Sequence[int]) -> torch.Tensor:
        """The loss of one (local) batch, with the graph for backward. Ranking losses see the in-batch
        negatives of all processes."""
        return self._train_step.batch_loss(indices)

    def _gather_ranking(
        self, queries: torch.Tensor, documents: torch.Tensor, with_grad: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """All processes' queries and documents as one global ranking batch (``ddp.gather_ranking``)."""
        return ddp.gather_ranking(queries, documents, self.world_size, with_grad)

    def _backward(self, indices: Sequence[int]) -> torch.Tensor:
        """Forward, loss and backward of one batch; the detached loss, on the device."""
        return self._train_step.backward(indices)

    def _optimizer_step(self, step_loss: torch.Tensor) -> torch.Tensor:
        """Average, clip and apply the step's gradients (skipped on the device if not finite); the norm."""
        return self._train_step.optimizer_step(step_loss, self.signals.requested)

    def _read_stats(self) -> HostStats:
        """Read the device stats on the host (the loop's only sync); ``TrainingError`` if a step since the
        last read was not finite."""
        stats = self._train_step.stats.read()
        if stats.nonfinite:
            step = self.step - stats.bad_steps + 1
            position = self._positions.get(step, (self.epoch, self.batch_index))
            message = nonfinite_message(stats, step, position, self.output / CHECKPOINT_DIR)
            self.run_log.write({"step": step, "error": message})
            raise TrainingError(message)
        self._positions.clear()
        return stats

    # ------------------------------------------------------------------ the loop

    def train(self) -> TrainResult:
        """Run to ``total_steps`` (or early stop / interruption) and write the outputs."""
        try:
            return self._run()
        finally:  # also when the run raises (a non-finite step, an evaluator error, a second Ctrl-C)
            self.run_log.close()

    def _run(self) -> TrainResult:
        """Start (or resume), loop with the signal handlers and the one-time label check in force, finish."""
        self._start()
        progress = progress_bar(self.total_steps, self.step, self.config.progress and self.is_main)
        self._throughput = Throughput()
        self._train_step.stats = DeviceStats.zeros(self.device)
        self._positions = {}
        self.model.train()
        self.loss_fn.train()
        self.optimizer.zero_grad(set_to_none=True)
        with self.signals.installed(), labels_checked(self.loss_fn):
            stopped = self._loop(progress)
        progress.close()
        return self._finish(stopped)

    def _start(self) -> None:
        """Before the first step: the output directory, the position (resumed or seeded), the run log and,
        when asked, the zero-shot baseline."""
        cfg = self.config
        self._started = time.perf_counter()
        if self.is_main:
            self.output.mkdir(parents=True, exist_ok=True)
        ddp.barrier(self.world_size)
        if self.resume:
            self._load_checkpoint()
        else:
            torch.manual_seed(cfg.seed + self.rank)
        self.run_log.open_tensorboard(purge_step=self.step if self.resume else None)
        if cfg.eval_at_start and self.evaluator is not None and self.step == 0 and self.baseline is None:
            self.baseline = self._evaluate()
            self.run_log.write({"step": 0, "baseline": self.baseline})
            self.run_log.write_dev(self.baseline, self.step)

    def _loop(self, progress: Any) -> str:
        """The training loop; returns why it ended (completed | early_stopping | interrupted)."""
        accumulation = self.config.grad_accumulation
        while self.step < self.total_steps:
            step_loss = torch.zeros((), dtype=torch.float64, device=self.device)
            for _ in range(accumulation):
                indices = self.batches.next_batch()
                step_loss += self._backward(indices).double() / accumulation
                self._throughput.count(len(indices) * self.world_size)
            self._optimizer_step(step_loss)
            self.step += 1
            self._positions[self.step] = (self.epoch, self.batch_index)
            if self.averaging is not None and self.averaging.due(self.step):
                self.averaging.add(self.model.towers, self.step)
            self._throughput.window_steps += 1
            progress.update(1)
            stopped = self._check_point(progress)
            if stopped is not None:
                return stopped
        return "completed"

    def _check_point(self, progress: Any) -> str | None:
        """After a step: at a log, evaluation or checkpoint step (or a stop request) read the device stats
        once and do what is due. Returns why the run stops, or None to go on."""
        cfg = self.config
        logging = self.step % cfg.log_every == 0 or self.step == self.total_steps
        evaluating = bool(self.evaluator is not None and cfg.eval_every and self.step % cfg.eval_every == 0)
        every = cfg.checkpoint_every or cfg.eval_every
        checkpointing = bool(every and self.step % every == 0) or evaluating
        # Data-parallel processes act on a stop request only at the check points they share; one process
        # alone still reads the stats before its stop checkpoint.
        alone_stopping = self.world_size == 1 and self.signals.requested
        if not (logging or checkpointing or alone_stopping):
            return None
        stats = self._read_stats()
        if logging:
            self._log_train(stats, progress)
        stopped = None
        with self._throughput.paused():  # examples_per_s counts training time only
            if evaluating and self._evaluate_and_track():
                stopped = "early_stopping"
            if checkpointing:
                self.save_checkpoint()
        if stopped is not None:
            return stopped
        if stats.stop if self.world_size > 1 else self.signals.requested:
            self.save_checkpoint()
            return "interrupted"
        return None

    def _log_train(self, stats: HostStats, progress: Any) -> None:
        """The train line of a log point: the mean step loss since the last one, the rate, the norm."""
        window = self._throughput
        self.run_log.write_train(
            step=self.step,
            epoch=round(self.epoch + self.batch_index / self.batches_per_epoch, 4),
            loss=stats.loss_sum / window.window_steps,
            lr=float(self.scheduler.get_last_lr()[0]),
            grad_norm=stats.grad_norm,
            rate=window.window_rate(),
            progress=progress,
        )
        self._train_step.stats.loss_sum.zero_()
        window.restart_window()

    def _finish(self, stopped: str) -> TrainResult:
        """After the loop: unless interrupted, the final evaluation, checkpoint and model (the weight average
        when ``average_from`` is set, evaluated again); then the result."""
        final = unaveraged = None
        if stopped != "interrupted":
            if self.evaluator is not None:
                final = self.tracker.last_at(self.step)
                if final is None:
                    self._evaluate_and_track()
                    final = self.tracker.evaluations[-1]["metrics"]
            self.save_checkpoint()
            unaveraged, final = final, self._apply_average(final)
            if self.is_main:
                self.model.save(self.output / "final")
        seconds = self._seconds_before + time.perf_counter() - self._started
        result = TrainResult(
            output=str(self.output),
            steps=self.step,
            total_steps=self.total_steps,
            stopped=stopped,
            seconds=round(seconds, 2),
            best_step=self.best_step,
            best=self.tracker.metrics_at(self.best_step),
            final=final,
            baseline=self.baseline,
            examples_per_second=round(
                self._throughput.examples / max(time.perf_counter() - self._started, 1e-9), 2
            ),
            signal=self.signals.name,
            evaluations=list(self.evaluations),
            averaged_steps=list(self.averaging.steps) if self.averaging is not None else None,
            unaveraged=unaveraged if self.averaging is not None else None,
        )
        summary = {k: v for k, v in result.to_dict().items() if k != "evaluations"}
        self.run_log.write({"step": self.step, "result": summary})
        self.run_log.close()
        ddp.barrier(self.world_size)
        return result

    # ------------------------------------------------------------------ evaluation and checkpoints

    def _apply_average(self, final: dict[str, Any] | None) -> dict[str, Any] | None:
        """With weight averaging on, put the mean into the model and return its dev metrics (logged as
        ``averaged``); otherwise ``final`` unchanged. The checkpoint keeps the last step's own weights."""
        if self.averaging is None:
            return final
        self.averaging.finish(self.model.towers, self.step)
        if self.evaluator is None:
            return final
        metrics = self._evaluate()
        self.run_log.write({"step": self.step, "averaged": metrics, "averaged_steps": self.averaging.steps})
        return metrics

    def _evaluate(self) -> dict[str, Any]:
        """Run the evaluator on the main process and share its result with the others."""
        return evaluate(self.evaluator, self.model, self.is_main, self.world_size)

    def _evaluate_and_track(self) -> bool:
        """Evaluate, keep the best model, and say whether early stopping should end the run."""
        metrics = self._evaluate()
        self.tracker.add(self.step, metrics)
        self.run_log.write({"step": self.step, "eval": metrics})
        self.run_log.write_dev(metrics, self.step)
        better = self.tracker.judge(self.step, metrics)
        if better is None:
            return False
        if better and self.is_main:
            self.model.save(self.output / "best")
        ddp.barrier(self.world_size)
        return self.tracker.patience_spent

    def save_checkpoint(self) -> Path:
        """Write ``output/checkpoint`` (model + optimizer, scheduler, RNG, position), atomically."""
        target = self.output / CHECKPOINT_DIR
        if self.is_main:
            write_checkpoint(target, self.model, self._checkpoint_state())
        ddp.barrier(self.world_size)
        return target

    def _checkpoint_state(self) -> dict[str, Any]:
        """What ``state.pt`` holds: position, optimizer, scheduler, loss, RNG, dev tracker, options, time."""
        return {
            "step": self.step,
            "epoch": self.epoch,
            "batch_index": self.batch_index,
            "total_steps": self.total_steps,
            "world_size": self.world_size,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "loss": self.loss_fn.state_dict(),
            **rng_state(self.device),
            **self.tracker.state_dict(),
            **(self.averaging.state_dict() if self.averaging is not None else {}),
            "config": json.dumps(self.config.to_dict()),
            "seconds": self._seconds_before + time.perf_counter() - self._started,
        }

    def _load_checkpoint(self) -> None:
        """Continue from ``output/checkpoint``: weights, optimizer, schedule, position, tracker, RNG."""
        source, state = read_checkpoint(self.output, self.world_size, self.total_steps, self.is_main)
        restore_training(source, state, self.model, self.optimizer, self.scheduler, self.loss_fn, self.device)
        self.step, self.epoch, self.batch_index = state["step"], state["epoch"], state["batch_index"]
        self.tracker.load_state_dict(state)
        if self.averaging is not None:
            self.averaging.load_state_dict(state)
        self._seconds_before = float(state.get("seconds", 0.0))
        restore_rng(state, self.device)
        if self.is_main:
            print(f"resumed from {source} at step {self.step} of {self.total_steps}", flush=True)

    @property
    def _tensorboard(self) -> Any:
        """The TensorBoard writer while the run is open (None after it, or without tensorboard)."""
        return self.run_log.tensorboard

    def close(self) -> None:
        """Leave the process group this trainer created (if any)."""
        if self._own_group and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
