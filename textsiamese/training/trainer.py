"""The training loop: a plain torch loop over tokenized, length-bucketed batches.

One optimizer step is: for each of ``grad_accumulation`` batches, encode (one forward pass for all texts a
shared tower reads), compute the loss from the embeddings, backward; then average gradients across
processes (data parallel), clip, step AdamW and the warmup + decay schedule. Every ``eval_every`` steps and at
the end the dev evaluator runs; the best model by the dev metric is kept and early stopping can end the run.
Checkpoints hold everything needed to continue exactly: model, optimizer, scheduler, RNG states, step and the
data position (epoch, batch), written atomically.

No step reads a tensor on the host (on a GPU that would make the host wait for the device and leave the GPU
idle between steps). The loss, the gradient norm and a non-finite flag stay on the device in ``DeviceStats``;
a step whose loss or gradient norm is not finite sets the flag, which stays set, and fused AdamW skips every
step taken while it is set (its ``found_inf`` input, the one ``GradScaler`` uses). The host reads the stats in
one transfer only at check points (a log line, an evaluation, a checkpoint, a stop, the end) and raises
``TrainingError`` there, naming the first bad step, before anything is evaluated or written.

>>> trainer = Trainer(model, get_loss("cosent"), pairs, TrainConfig(epochs=1), "runs/x")  # doctest: +SKIP
>>> result = trainer.train()                                                            # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar, cast, overload

import torch
import torch.nn.functional as F

from textsiamese.data import PairData, TripletData
from textsiamese.losses import SiameseLoss
from textsiamese.model import SiameseModel
from textsiamese.training import distributed as ddp
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
from textsiamese.training.compile import training_towers
from textsiamese.training.config import TrainConfig, lr_factor, run_steps
from textsiamese.training.machine import machine_description as machine_description
from textsiamese.training.results import TrainingError, TrainResult
from textsiamese.training.run_log import METRICS_FILE as METRICS_FILE
from textsiamese.training.run_log import RunLog, Throughput, progress_bar
from textsiamese.training.signals import StopSignals
from textsiamese.training.tracking import DevTracker, evaluate
from textsiamese.training.tracking import Evaluator as Evaluator

T = TypeVar("T")

# What went wrong first, as ``DeviceStats.first_bad[0]`` codes it.
NONFINITE_LOSS, NONFINITE_NORM, NONFINITE_ELSEWHERE = 0.0, 1.0, 2.0


@dataclass
class DeviceStats:
    """What the loop keeps on the device between two host reads (``Trainer._read_stats``), so that a step
    needs no host sync."""

    found_inf: torch.Tensor  # 1.0 from the first non-finite step on (sticky); AdamW skips its steps while set
    bad_steps: torch.Tensor  # steps taken with the flag set: the first bad step is step − bad_steps + 1
    first_bad: torch.Tensor  # float64 (what, value) of the first bad step; what is a NONFINITE_* code
    loss_sum: torch.Tensor  # float64 sum of the step losses since the last log line
    grad_norm: torch.Tensor  # the last step's gradient norm, before clipping
    stop: torch.Tensor  # 1.0 once any process was asked to stop (data parallel: reduced with the gradients)

    @classmethod
    def zeros(cls, device: torch.device) -> DeviceStats:
        def zero(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
            return torch.zeros(shape, dtype=dtype, device=device)

        return cls(zero(), zero(), zero(2, dtype=torch.float64), zero(dtype=torch.float64), zero(), zero())

    def read(self) -> HostStats:
        """All of it on the host, in one device-to-host transfer."""
        parts = [self.found_inf, self.bad_steps, self.first_bad, self.loss_sum, self.grad_norm, self.stop]
        found_inf, bad_steps, what, value, loss_sum, grad_norm, stop = torch.cat(
            [t.reshape(-1).double() for t in parts]
        ).tolist()
        return HostStats(found_inf > 0, int(bad_steps), what, value, loss_sum, grad_norm, stop > 0)


@dataclass
class HostStats:
    """``DeviceStats`` as read on the host at a check point."""

    nonfinite: bool
    bad_steps: int
    what: float
    value: float
    loss_sum: float
    grad_norm: float
    stop: bool


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
        self.params = [p for p in [*self.model.parameters(), *self.loss_fn.parameters()] if p.requires_grad]
        decay = [p for p in self.params if p.dim() >= 2]
        no_decay = [p for p in self.params if p.dim() < 2]
        # Fused on every device (CPU included): the same update code on CPU and CUDA, and only the fused
        # kernel takes ``found_inf``, which skips a non-finite step without a host sync.
        self.optimizer = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": cfg.weight_decay},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=cfg.lr,
            fused=True,
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(s, self.warmup, self.total_steps, cfg.schedule)
        )
        self.autocast = (
            torch.autocast("cuda", dtype=torch.bfloat16)
            if self.device.type == "cuda" and cfg.bf16
            else nullcontext()
        )
        # Position: optimizer steps done, and the next batch to read (epoch, index in that epoch's plan).
        self.step = 0
        self.tracker = DevTracker(cfg.metric, cfg.greater_is_better, cfg.patience)
        self.signals = StopSignals(announce=self.is_main)
        self.run_log = RunLog(self.output, self.is_main)
        self._throughput = Throughput()
        self._stats = DeviceStats.zeros(self.device)
        self._positions: dict[int, tuple[int, int]] = {}  # step → (epoch, batch index) since the last read
        self._towers = training_towers(self.model, cfg.compile)
        self._seconds_before = 0.0  # wall time of earlier (interrupted) invocations of this run
        self._started = time.perf_counter()

    # ------------------------------------------------------------------ batches and encoding

    def embed(self, parts: Sequence[tuple[str, Sequence[Sequence[int]]]]) -> list[torch.Tensor]:
        """Embeddings of each (role, token ids) part, in order. Parts read by the same tower go through it
        in one forward pass (both sides of a shared-tower batch are one batch)."""
        by_tower: dict[str, list[int]] = {}
        for position, (role, _) in enumerate(parts):
            by_tower.setdefault(self.model.roles[role], []).append(position)
        out: list[torch.Tensor | None] = [None] * len(parts)
        for name, positions in by_tower.items():
            ids = [row for p in positions for row in parts[p][1]]
            features = self.model.towers[name].collate(ids)  # type: ignore[operator]
            features = {k: v.to(self.device, non_blocking=True) for k, v in features.items()}
            with self.autocast:
                vectors = self._towers[name](features)
            vectors = vectors.float()
            if self.model.normalize:
                vectors = F.normalize(vectors, dim=-1)
            start = 0
            for p in positions:
                n = len(parts[p][1])
                out[p] = vectors[start : start + n]
                start += n
        return [v for v in out if v is not None]

    def _column_ids(self, indices: Sequence[int]) -> list[tuple[str, list[list[int]]]]:
        return [(c.role, [c.ids[i] for i in indices]) for c in self.data.columns]

    def batch_loss(self, indices: Sequence[int]) -> torch.Tensor:
        """The loss of one (local) batch, with the graph for backward. Ranking losses see the in-batch
        negatives of all processes."""
        parts = self._column_ids(indices)
        family = self.family
        if family == "ranking":
            query, documents = self.embed([parts[0], (parts[1][0], [r for p in parts[1:] for r in p[1]])])
            queries, docs = self._gather_ranking(query, documents, with_grad=True)
            return self.loss_fn(queries, docs)
        vectors = self.embed(parts)
        if family == "pair":
            assert self.data.labels is not None
            labels = self.data.labels[list(indices)].to(self.device, non_blocking=True)
            return self.loss_fn(vectors[0], vectors[1], labels)
        if family == "triplet":
            return self.loss_fn(*vectors)
        assert self.data.labels is not None  # labelled: both texts of pair i are class i
        labels = self.data.labels[list(indices)].to(self.device, non_blocking=True)
        return self.loss_fn(torch.cat(vectors), torch.cat([labels, labels]))

    def _gather_ranking(
        self, queries: torch.Tensor, documents: torch.Tensor, with_grad: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """All processes' queries and documents, laid out as one global batch: queries in rank order;
        documents as the global positives, then each block of hard negatives in global query order."""
        if self.world_size == 1:
            return queries, documents
        n = queries.shape[0]
        all_queries = torch.cat(ddp.gather(queries, self.world_size, with_grad))
        doc_parts = ddp.gather(documents, self.world_size, with_grad)
        blocks = documents.shape[0] // n
        ordered = [part[k * n : (k + 1) * n] for k in range(blocks) for part in doc_parts]
        return all_queries, torch.cat(ordered)

    def _cached_ranking_backward(self, indices: Sequence[int], scale: float) -> torch.Tensor:
        """Gradient cache (Gao et al. 2021, "Scaling Deep Contrastive Learning Batch Size under Memory
        Limited Setup"): embed the whole batch without a graph in chunks of ``cache_batch_size`` texts, take
        the loss and its gradient with respect to the embeddings, then re-run each chunk with a graph (same
        dropout, by replaying the RNG) and back-propagate that chunk's embedding gradient. Memory is one
        chunk's activations; gradients equal the uncached ones. Returns the detached loss."""
        chunk = int(self.config.cache_batch_size or 1)
        parts = self._column_ids(indices)
        query_ids = parts[0][1]
        doc_ids = [row for p in parts[1:] for row in p[1]]
        jobs = [("query", query_ids[i : i + chunk]) for i in range(0, len(query_ids), chunk)]
        jobs += [("document", doc_ids[i : i + chunk]) for i in range(0, len(doc_ids), chunk)]
        states = []
        outputs = []
        with torch.no_grad():
            for role, ids in jobs:
                states.append(self._rng_state())
                outputs.append(self.embed([(role, ids)])[0])
        after = self._rng_state()
        n_query_jobs = math.ceil(len(query_ids) / chunk)
        queries = torch.cat(outputs[:n_query_jobs])
        documents = torch.cat(outputs[n_query_jobs:])
        all_q, all_d = self._gather_ranking(queries, documents, with_grad=False)
        all_q = all_q.detach().requires_grad_(True)
        all_d = all_d.detach().requires_grad_(True)
        loss = self.loss_fn(all_q, all_d)
        (loss * scale).backward()
        assert all_q.grad is not None and all_d.grad is not None
        n, w, r = queries.shape[0], self.world_size, self.rank
        # The loss is the global one on every process and gradients are averaged over processes, so each
        # process back-propagates w times its own slice (as a differentiable all_gather would).
        grad_q = all_q.grad[r * n : (r + 1) * n] * w
        blocks = documents.shape[0] // n
        grad_d = torch.cat([all_d.grad[(k * w + r) * n : (k * w + r + 1) * n] for k in range(blocks)]) * w
        grads = list(grad_q.split(chunk)) + list(grad_d.split(chunk))
        for (role, ids), state, grad in zip(jobs, states, grads, strict=True):
            self._set_rng_state(state)
            vectors = self.embed([(role, ids)])[0]
            vectors.backward(grad)
        self._set_rng_state(after)
        return loss.detach()

    def _rng_state(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        cuda = torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None
        return torch.get_rng_state(), cuda

    def _set_rng_state(self, state: tuple[torch.Tensor, torch.Tensor | None]) -> None:
        torch.set_rng_state(state[0])
        if state[1] is not None:
            torch.cuda.set_rng_state(state[1], self.device)

    # ------------------------------------------------------------------ the loop

    def train(self) -> TrainResult:
        """Run to ``total_steps`` (or early stop / interruption) and write the outputs."""
        try:
            return self._run()
        finally:  # also when the run raises (a non-finite step, an evaluator error, a second Ctrl-C)
            self.run_log.close()

    def _run(self) -> TrainResult:
        self._start()
        progress = progress_bar(self.total_steps, self.step, self.config.progress and self.is_main)
        self._throughput = Throughput()
        self._stats = DeviceStats.zeros(self.device)
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
        self._stats.loss_sum.zero_()
        window.restart_window()

    def _finish(self, stopped: str) -> TrainResult:
        """After the loop: unless interrupted, the final evaluation, checkpoint and model; then the result."""
        final = None
        if stopped != "interrupted":
            if self.evaluator is not None:
                final = self.tracker.last_at(self.step)
                if final is None:
                    self._evaluate_and_track()
                    final = self.tracker.evaluations[-1]["metrics"]
            self.save_checkpoint()
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
        )
        summary = {k: v for k, v in result.to_dict().items() if k != "evaluations"}
        self.run_log.write({"step": self.step, "result": summary})
        self.run_log.close()
        ddp.barrier(self.world_size)
        return result

    def _backward(self, indices: Sequence[int]) -> torch.Tensor:
        """Forward and backward of one batch (scaled for gradient accumulation); the detached loss, on the
        device. A non-finite loss is back-propagated too: the step is skipped later, without a host read."""
        scale = 1.0 / self.config.grad_accumulation
        if self.config.cache_batch_size is not None:
            return self._cached_ranking_backward(indices, scale)
        loss = self.batch_loss(indices)
        (loss * scale).backward()
        return loss.detach()

    def _optimizer_step(self, step_loss: torch.Tensor) -> torch.Tensor:
        """Average, clip and apply the gradients of one step, all on the device; returns the gradient norm.

        A step whose loss (here or, data parallel, on any process) or gradient norm is not finite sets the
        sticky ``found_inf`` flag; fused AdamW then leaves weights, moments and step counts as they are, for
        this step and every later one. The schedule is host-side and still advances, which changes nothing:
        the next check point raises before anything is evaluated or saved.
        """
        stats = self._stats
        loss_bad = ~torch.isfinite(step_loss)
        any_loss_bad = loss_bad
        if self.world_size > 1:
            # The flags travel in the gradients' all-reduce: no extra collective, and no host read.
            stop = torch.full((), float(self.signals.requested), device=self.device)
            flags = torch.stack([loss_bad.float(), stop])
            ddp.average_gradients(self.params, self.world_size, flags)
            any_loss_bad = flags[0] > 0
            torch.maximum(stats.stop, (flags[1] > 0).float(), out=stats.stop)
        grads = [p.grad for p in self.params if p.grad is not None]
        norm = torch.nn.utils.get_total_norm(grads).to(self.device)
        if self.config.max_grad_norm:
            torch.nn.utils.clip_grads_with_norm_(self.params, self.config.max_grad_norm, norm)
        norm_bad = ~torch.isfinite(norm)
        bad = any_loss_bad | norm_bad
        what = torch.where(
            loss_bad,
            NONFINITE_LOSS,
            torch.where(any_loss_bad, NONFINITE_ELSEWHERE, NONFINITE_NORM),
        ).double()
        value = torch.where(loss_bad, step_loss, norm.double())
        first = bad & (stats.found_inf == 0)
        stats.first_bad.copy_(torch.where(first, torch.stack([what, value]), stats.first_bad))
        torch.maximum(stats.found_inf, bad.float(), out=stats.found_inf)
        stats.bad_steps += stats.found_inf
        stats.loss_sum += step_loss
        stats.grad_norm.copy_(norm)
        self.optimizer.found_inf = stats.found_inf  # type: ignore[attr-defined]
        try:
            self.optimizer.step()
        finally:
            del self.optimizer.found_inf  # type: ignore[attr-defined]
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return norm

    def _read_stats(self) -> HostStats:
        """Read the device stats on the host (the loop's only sync); ``TrainingError`` if a step since the
        last read was not finite."""
        stats = self._stats.read()
        if stats.nonfinite:
            first = self.step - stats.bad_steps + 1
            if stats.what == NONFINITE_LOSS:
                what = f"loss is {stats.value}"
            elif stats.what == NONFINITE_NORM:
                what = f"gradient norm is {stats.value}"
            else:
                what = "loss is not finite on another process"
            self._fail_nonfinite(what, first)
        self._positions.clear()
        return stats

    def _fail_nonfinite(self, what: str, step: int) -> None:
        epoch, batch = self._positions.get(step, (self.epoch, self.batch_index))
        checkpoint = self.output / CHECKPOINT_DIR
        kept = (
            f"the last good checkpoint is {checkpoint} (resume with --resume, e.g. with a lower learning rate)"
            if (checkpoint / STATE_FILE).is_file()
            else "no checkpoint was written before it"
        )
        message = (
            f"training stopped at step {step} (epoch {epoch}, batch {batch}): "
            f"{what}; nothing of this step or any later one was applied and {kept}"
        )
        if self.is_main:
            self.run_log.write({"step": step, "error": message})
        raise TrainingError(message)

    # ------------------------------------------------------------------ evaluation and checkpoints

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
            "config": json.dumps(self.config.to_dict()),
            "seconds": self._seconds_before + time.perf_counter() - self._started,
        }

    def _load_checkpoint(self) -> None:
        source, state = read_checkpoint(self.output, self.world_size, self.total_steps, self.is_main)
        restore_training(source, state, self.model, self.optimizer, self.scheduler, self.loss_fn, self.device)
        self.step, self.epoch, self.batch_index = state["step"], state["epoch"], state["batch_index"]
        self.tracker.load_state_dict(state)
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
