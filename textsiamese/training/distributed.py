"""Data parallelism over ``torch.distributed``: process group set-up, gradient averaging, gathers.

``torchrun --nproc-per-node N -m textsiamese.cli train RECIPE`` (or any launcher that sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``) starts N processes; each takes its slice
of every global batch, and after each optimizer step's backward passes the gradients are averaged with one
bucketed ``all_reduce``. That is what ``DistributedDataParallel`` does, done once per step rather than per
backward pass so that gradient accumulation and the gradient cache (several backward passes per step) need
no ``no_sync`` bookkeeping, and so that a loss with parameters of its own (``logistic``) is averaged too.
NCCL on CUDA, gloo on CPU.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import torch
import torch.distributed as dist


def env_world() -> tuple[int, int, int]:
    """(rank, world size, local rank) from the launcher's environment (0, 1, 0 when not launched)."""
    return (
        int(os.environ.get("RANK", "0")),
        int(os.environ.get("WORLD_SIZE", "1")),
        int(os.environ.get("LOCAL_RANK", "0")),
    )


def choose_device(requested: str | None = None) -> torch.device:
    """This process's device: ``requested`` (``train.device``) when given; else its GPU (under a launcher the
    one ``LOCAL_RANK`` names, so each process gets its own; otherwise the current one); else the CPU."""
    _, world_size, local_rank = env_world()
    if requested:
        return torch.device(requested)
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank if world_size > 1 else torch.cuda.current_device())
    return torch.device("cpu")


def init_from_env(device: torch.device) -> bool:
    """Join the process group the environment describes; True when this call created it."""
    if dist.is_available() and dist.is_initialized():
        return False
    _, world, _ = env_world()
    if world <= 1:
        return False
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return True


def world() -> tuple[int, int]:
    """(rank, world size) of the current process group, (0, 1) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def average_gradients(
    parameters: Iterable[torch.nn.Parameter], world_size: int, flags: torch.Tensor | None = None
) -> None:
    """Average ``.grad`` over all processes with one flattened ``all_reduce``.

    ``flags`` (a 1-D float tensor on the gradients' device) rides along in the same ``all_reduce`` and is
    summed in place: per-step signals (a non-finite loss, a stop request) reach every process without a
    collective of their own and without the host reading them.
    """
    params = [p for p in parameters if p.requires_grad]
    for p in params:
        if p.grad is None:  # unused on this process this step; others may have used it
            p.grad = torch.zeros_like(p)
    grads = [p.grad for p in params if p.grad is not None]
    extra = [flags.to(grads[0].dtype)] if flags is not None and grads else []
    if not grads:
        if flags is not None:
            dist.all_reduce(flags)
        return
    flat = torch.cat([g.reshape(-1) for g in grads] + extra)
    dist.all_reduce(flat)
    if flags is not None:
        flags.copy_(flat[flat.numel() - flags.numel() :])
    flat /= world_size
    offset = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[offset : offset + n].view_as(g))
        offset += n


def gather(tensor: torch.Tensor, world_size: int, with_grad: bool) -> list[torch.Tensor]:
    """Every process's ``tensor`` (equal shapes), in rank order. With ``with_grad`` the gather is
    differentiable: the gradient of each slice flows back to the process that produced it (summed over
    the processes whose losses used it)."""
    if world_size == 1:
        return [tensor]
    if with_grad:
        from torch.distributed.nn.functional import all_gather

        return list(all_gather(tensor))
    parts = [torch.empty_like(tensor) for _ in range(world_size)]
    dist.all_gather(parts, tensor.contiguous())
    return parts


def gather_ranking(
    queries: torch.Tensor, documents: torch.Tensor, world_size: int, with_grad: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """All processes' queries and documents of a ranking batch, laid out as one global batch: queries in
    rank order; documents as the global positives, then each block of hard negatives in global query order
    (the layout the in-batch-negatives losses expect)."""
    if world_size == 1:
        return queries, documents
    n = queries.shape[0]
    all_queries = torch.cat(gather(queries, world_size, with_grad))
    doc_parts = gather(documents, world_size, with_grad)
    blocks = documents.shape[0] // n
    ordered = [part[k * n : (k + 1) * n] for k in range(blocks) for part in doc_parts]
    return all_queries, torch.cat(ordered)


def barrier(world_size: int) -> None:
    if world_size > 1:
        dist.barrier()
