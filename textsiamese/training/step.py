"""One training step, sync-free: forward, loss, backward for each batch, then one optimizer step.

A batch is encoded with one forward pass per tower (both sides of a shared-tower batch are one batch), the
loss is taken by the loss family's signature, and backward runs on it scaled for gradient accumulation (the
gradient cache, ``grad_cache.py``, is the same in chunks). The optimizer step averages the gradients across
processes (data parallel), takes the norm, clips, steps fused AdamW and the warmup + decay schedule.

No step reads a tensor on the host (on a GPU that would make the host wait for the device and leave the GPU
idle between steps). The loss, the gradient norm and a non-finite flag stay on the device in ``DeviceStats``;
a step whose loss or gradient norm is not finite sets the flag, which stays set, and fused AdamW skips every
step taken while it is set (its ``found_inf`` input, the one ``GradScaler`` uses). The host reads the stats in
one transfer only at the trainer's check points, and ``nonfinite_message`` names the first bad step there.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from textsiamese.losses import SiameseLoss
from textsiamese.model import SiameseModel
from textsiamese.training import distributed as ddp
from textsiamese.training.batches import TrainSet
from textsiamese.training.checkpoint import STATE_FILE
from textsiamese.training.compile import training_towers
from textsiamese.training.config import TrainConfig, lr_factor
from textsiamese.training.grad_cache import cached_ranking_backward

# What went wrong first, as ``DeviceStats.first_bad[0]`` codes it.
NONFINITE_LOSS, NONFINITE_NORM, NONFINITE_ELSEWHERE = 0.0, 1.0, 2.0
Parts = Sequence[tuple[str, Sequence[Sequence[int]]]]  # (role, token ids of each text) per part of a batch


class TrainStep:
    """The model's training step: its optimizer, schedule, towers (compiled or not) and ``DeviceStats``.

    ``backward(indices)`` is one batch's forward, loss and backward; ``optimizer_step(step_loss, stop)`` ends
    the step. ``rank`` / ``world_size`` are this process's place among the data-parallel processes.
    """

    def __init__(
        self,
        model: SiameseModel,
        loss: SiameseLoss,
        data: TrainSet,
        config: TrainConfig,
        device: torch.device,
        steps: tuple[int, int],
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.model, self.loss_fn, self.data, self.config, self.device = model, loss, data, config, device
        self.rank, self.world_size = rank, world_size
        total_steps, warmup = steps
        self.params = [p for p in [*model.parameters(), *loss.parameters()] if p.requires_grad]
        # Fused on every device (CPU included): the same update code on CPU and CUDA, and only the fused
        # kernel takes ``found_inf``, which skips a non-finite step without a host sync.
        self.optimizer = torch.optim.AdamW(
            [
                {"params": [p for p in self.params if p.dim() >= 2], "weight_decay": config.weight_decay},
                {"params": [p for p in self.params if p.dim() < 2], "weight_decay": 0.0},
            ],
            lr=config.lr,
            fused=True,
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(s, warmup, total_steps, config.schedule)
        )
        self.autocast: AbstractContextManager[Any] = (
            torch.autocast("cuda", dtype=torch.bfloat16)
            if device.type == "cuda" and config.bf16
            else nullcontext()
        )
        self.towers = training_towers(model, config.compile)
        self.stats = DeviceStats.zeros(device)

    def backward(self, indices: Sequence[int]) -> torch.Tensor:
        """Forward and backward of one batch (scaled for gradient accumulation); the detached loss, on the
        device. A non-finite loss is back-propagated too: the step is skipped later, without a host read."""
        scale = 1.0 / self.config.grad_accumulation
        if self.config.cache_batch_size is not None:
            return cached_ranking_backward(self, indices, scale, int(self.config.cache_batch_size))
        loss = self.batch_loss(indices)
        (loss * scale).backward()
        return loss.detach()

    def optimizer_step(self, step_loss: torch.Tensor, stop_requested: bool) -> torch.Tensor:
        """Average, clip and apply the gradients of one step, all on the device; returns the gradient norm.

        A step whose loss (here or, data parallel, on any process) or gradient norm is not finite sets the
        sticky ``found_inf`` flag; fused AdamW then leaves weights, moments and step counts as they are, for
        this step and every later one. The schedule is host-side and still advances, which changes nothing:
        the next check point raises before anything is evaluated or saved.
        """
        stats = self.stats
        loss_bad = ~torch.isfinite(step_loss)
        any_loss_bad = loss_bad
        if self.world_size > 1:
            # The flags travel in the gradients' all-reduce: no extra collective, and no host read.
            flags = torch.stack([loss_bad.float(), torch.full((), float(stop_requested), device=self.device)])
            ddp.average_gradients(self.params, self.world_size, flags)
            any_loss_bad = flags[0] > 0
            torch.maximum(stats.stop, (flags[1] > 0).float(), out=stats.stop)
        grads = [p.grad for p in self.params if p.grad is not None]
        norm = torch.nn.utils.get_total_norm(grads).to(self.device)
        if self.config.max_grad_norm:
            torch.nn.utils.clip_grads_with_norm_(self.params, self.config.max_grad_norm, norm)
        stats.record(step_loss, loss_bad, any_loss_bad, norm)
        self.optimizer.found_inf = stats.found_inf  # type: ignore[attr-defined]
        try:
            self.optimizer.step()
        finally:
            del self.optimizer.found_inf  # type: ignore[attr-defined]
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return norm

    def batch_loss(self, indices: Sequence[int]) -> torch.Tensor:
        """The loss of one (local) batch, with the graph for backward. Ranking losses see the in-batch
        negatives of all processes."""
        parts = self.column_ids(indices)
        family = self.data.family
        if family == "ranking":
            query, documents = self.embed([parts[0], (parts[1][0], [r for p in parts[1:] for r in p[1]])])
            queries, docs = ddp.gather_ranking(query, documents, self.world_size, with_grad=True)
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

    def embed(self, parts: Parts) -> list[torch.Tensor]:
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
                vectors = self.towers[name](features)
            vectors = vectors.float()
            if self.model.normalize:
                vectors = F.normalize(vectors, dim=-1)
            start = 0
            for p in positions:
                n = len(parts[p][1])
                out[p] = vectors[start : start + n]
                start += n
        return [v for v in out if v is not None]

    def column_ids(self, indices: Sequence[int]) -> list[tuple[str, list[list[int]]]]:
        """(role, token ids) of each column of the training set, for the examples ``indices``."""
        return [(c.role, [c.ids[i] for i in indices]) for c in self.data.columns]


@dataclass
class DeviceStats:
    """What the loop keeps on the device between two host reads, so that a step needs no host sync."""

    found_inf: torch.Tensor  # 1.0 from the first non-finite step on (sticky); AdamW skips its steps while set
    bad_steps: torch.Tensor  # steps taken with the flag set: the first bad step is step − bad_steps + 1
    first_bad: torch.Tensor  # float64 (what, value) of the first bad step; what is a NONFINITE_* code
    loss_sum: torch.Tensor  # float64 sum of the step losses since the last log line
    grad_norm: torch.Tensor  # the last step's gradient norm, before clipping
    stop: torch.Tensor  # 1.0 once any process was asked to stop (data parallel: reduced with the gradients)

    @classmethod
    def zeros(cls, device: torch.device) -> DeviceStats:
        """Fresh stats on ``device`` (at the start of a run: nothing summed, no step bad)."""

        def zero(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
            return torch.zeros(shape, dtype=dtype, device=device)

        return cls(zero(), zero(), zero(2, dtype=torch.float64), zero(dtype=torch.float64), zero(), zero())

    def record(
        self, step_loss: torch.Tensor, loss_bad: torch.Tensor, any_loss_bad: torch.Tensor, norm: torch.Tensor
    ) -> None:
        """Add a step, on the device: its loss to the sum, its gradient norm as the last. A non-finite loss
        (``loss_bad`` here, ``any_loss_bad`` on any process) or norm sets the sticky flag and, the first
        time, notes what went wrong."""
        bad = any_loss_bad | ~torch.isfinite(norm)
        what = torch.where(
            loss_bad,
            NONFINITE_LOSS,
            torch.where(any_loss_bad, NONFINITE_ELSEWHERE, NONFINITE_NORM),
        ).double()
        value = torch.where(loss_bad, step_loss, norm.double())
        first = bad & (self.found_inf == 0)
        self.first_bad.copy_(torch.where(first, torch.stack([what, value]), self.first_bad))
        torch.maximum(self.found_inf, bad.float(), out=self.found_inf)
        self.bad_steps += self.found_inf
        self.loss_sum += step_loss
        self.grad_norm.copy_(norm)

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


def nonfinite_message(stats: HostStats, step: int, position: tuple[int, int], checkpoint: Path) -> str:
    """What ``TrainingError`` says when ``step`` (at data ``position``: epoch, batch) was the first
    non-finite one: what was not finite, that nothing was applied, and which checkpoint is left to resume."""
    if stats.what == NONFINITE_LOSS:
        what = f"loss is {stats.value}"
    elif stats.what == NONFINITE_NORM:
        what = f"gradient norm is {stats.value}"
    else:
        what = "loss is not finite on another process"
    kept = (
        f"the last good checkpoint is {checkpoint} (resume with --resume, e.g. with a lower learning rate)"
        if (checkpoint / STATE_FILE).is_file()
        else "no checkpoint was written before it"
    )
    epoch, batch = position
    return (
        f"training stopped at step {step} (epoch {epoch}, batch {batch}): "
        f"{what}; nothing of this step or any later one was applied and {kept}"
    )
