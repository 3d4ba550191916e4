"""Gradient cache (Gao et al. 2021, "Scaling Deep Contrastive Learning Batch Size under Memory Limited
Setup") for ranking losses: a large in-batch-negatives batch in the memory of a small one.

The whole batch is embedded without a graph in chunks of ``cache_batch_size`` texts; the loss and its
gradient with respect to the embeddings are taken on the full batch (all processes' embeddings gathered);
then each chunk is re-run with a graph, with the dropout masks of its first pass (the RNG is replayed), and
that chunk's embedding gradient is back-propagated. Memory is one chunk's activations; gradients equal the
uncached ones.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from textsiamese.training import distributed as ddp

if TYPE_CHECKING:
    from textsiamese.training.step import TrainStep

RngState = tuple[torch.Tensor, torch.Tensor | None]


def cached_ranking_backward(
    step: TrainStep, indices: Sequence[int], scale: float, chunk: int
) -> torch.Tensor:
    """Backward of one ranking batch (``scale``: gradient accumulation) through the gradient cache, in
    chunks of ``chunk`` texts; returns the detached loss, as ``TrainStep.backward`` does."""
    parts = step.column_ids(indices)
    query_ids = parts[0][1]
    doc_ids = [row for p in parts[1:] for row in p[1]]
    jobs = [("query", query_ids[i : i + chunk]) for i in range(0, len(query_ids), chunk)]
    jobs += [("document", doc_ids[i : i + chunk]) for i in range(0, len(doc_ids), chunk)]
    states = []
    outputs = []
    with torch.no_grad():
        for role, ids in jobs:
            states.append(_rng_state(step.device))
            outputs.append(step.embed([(role, ids)])[0])
    after = _rng_state(step.device)
    n_query_jobs = math.ceil(len(query_ids) / chunk)
    queries = torch.cat(outputs[:n_query_jobs])
    documents = torch.cat(outputs[n_query_jobs:])
    all_q, all_d = ddp.gather_ranking(queries, documents, step.world_size, with_grad=False)
    all_q = all_q.detach().requires_grad_(True)
    all_d = all_d.detach().requires_grad_(True)
    loss = step.loss_fn(all_q, all_d)
    (loss * scale).backward()
    assert all_q.grad is not None and all_d.grad is not None
    n, w, r = queries.shape[0], step.world_size, step.rank
    # The loss is the global one on every process and gradients are averaged over processes, so each
    # process back-propagates w times its own slice (as a differentiable all_gather would).
    grad_q = all_q.grad[r * n : (r + 1) * n] * w
    blocks = documents.shape[0] // n
    grad_d = torch.cat([all_d.grad[(k * w + r) * n : (k * w + r + 1) * n] for k in range(blocks)]) * w
    grads = list(grad_q.split(chunk)) + list(grad_d.split(chunk))
    for (role, ids), state, grad in zip(jobs, states, grads, strict=True):
        _set_rng_state(state, step.device)
        vectors = step.embed([(role, ids)])[0]
        vectors.backward(grad)
    _set_rng_state(after, step.device)
    return loss.detach()


def _rng_state(device: torch.device) -> RngState:
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda


def _set_rng_state(state: RngState, device: torch.device) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)
