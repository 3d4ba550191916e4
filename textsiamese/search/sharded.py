"""An :class:`~textsiamese.search.Index` built from a shard directory (``textsiamese encode --engine ray``),
shard by shard, without holding the corpus's vectors twice.

The same index a one-process ``index build`` writes (same directory format, ids, texts, metadata, model
fingerprint, recall tuning), built in three passes over the shards, each shard memory-mapped:

1. sample: the rows the coarse quantiser trains on (40 a list, as :func:`~textsiamese.search.kinds.train`
   takes) and the held-out rows the recall tuner queries with (:func:`~textsiamese.search.tuning.hold_out`);
   the quantiser is trained once, on that sample;
2. add: every other row, shard by shard, while the exact top-k of the held-out queries is accumulated over
   the same shards (``faiss.ResultHeap``), so exact search never needs the whole matrix;
3. tune ``nprobe`` / ``ef_search`` against that truth (:func:`~textsiamese.search.tuning.tune_on_truth`),
   then add the held-out rows last, as :meth:`Index.from_vectors` does.

A corpus too small to hold rows out (under 500) is read whole and built by :meth:`Index.from_vectors`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import faiss
import numpy as np

from textsiamese.distributed.shards import Shard, ShardSet
from textsiamese.errors import ConfigError
from textsiamese.search.index import Index
from textsiamese.search.kinds import faiss_metric, get_kind, train, training_size
from textsiamese.search.tuning import TUNE_QUERIES, check_recall_target, hold_out


def build_from_shards(
    directory: str | os.PathLike[str],
    *,
    kind: str = "auto",
    metric: str = "cosine",
    params: Mapping[str, Any] | None = None,
    recall_target: float | None = 0.95,
    tune_k: int = 10,
    memory_budget: int | None = None,
    seed: int = 0,
) -> Index:
    """Build an index over every row of a finished shard directory (see the module docstring).

    Ids, texts and metadata come from the shard records; the manifest's model fingerprint and source go
    into the index, so ``search`` and ``serve`` refuse another model. ``recall_target`` None keeps the
    kind's default ``nprobe`` / ``ef_search``.
    """
    shard_set = ShardSet(directory)
    count = len(shard_set)
    if count == 0:
        raise ConfigError("cannot build an index from an empty corpus")
    if recall_target is not None:
        check_recall_target(recall_target)
    manifest = shard_set.manifest
    common: dict[str, Any] = {
        "kind": kind,
        "metric": metric,
        "params": params,
        "fingerprint": shard_set.fingerprint,
        "model_source": manifest.get("model_source") or None,
        "memory_budget": memory_budget,
        "seed": seed,
    }
    split = hold_out(count, seed)
    if split is None:  # a few hundred rows: in memory, exactly as a one-process build
        rows = _whole(shard_set)
        index = Index.from_vectors(
            rows.vectors,
            rows.ids,
            rows.texts,
            rows.metadata,
            recall_target=recall_target,
            tune_k=tune_k,
            **common,
        )
    else:
        index = _build_sharded(shard_set, split[1], recall_target, tune_k, common)
    index.corpus_columns = dict(manifest.get("corpus_columns") or {})
    return index


def _build_sharded(
    shard_set: ShardSet,
    held: np.ndarray,
    recall_target: float | None,
    tune_k: int,
    common: dict[str, Any],
) -> Index:
    count, metric = len(shard_set), common["metric"]
    index = Index.empty(
        common["kind"],
        count,
        shard_set.dimension,
        metric,
        common["params"],
        common["memory_budget"],
        common["fingerprint"],
        common["model_source"],
    )
    spec, merged = get_kind(index.kind), index.params
    seed = common["seed"]
    tuning = recall_target is not None and spec.tunable is not None
    if not tuning:
        held = held[:0]
    wanted = _training_rows(count, merged, spec.name, seed) if spec.needs_training else np.zeros(0, np.int64)
    sample, queries = _gather(shard_set, wanted, held)
    if spec.needs_training:
        train(index.faiss_index, spec.name, merged, _prepared(sample.vectors, metric), seed)
    query_matrix = _prepared(queries.vectors, metric) if tuning else None
    k = min(tune_k, count - len(held))
    heap = faiss.ResultHeap(len(held), k, keep_max=metric != "euclidean") if tuning else None
    first = 0
    for shard in shard_set:
        keep = ~np.isin(np.arange(first, first + len(shard.ids)), held)
        start = len(index)  # the label the next row gets (labels are insertion positions; none removed)
        part = _subset(shard, keep)
        index.add_vectors(part.vectors, part.ids, part.texts, part.metadata)
        if heap is not None and query_matrix is not None and len(part.ids):
            vectors = _prepared(part.vectors, metric)
            scores, positions = faiss.knn(
                query_matrix, vectors, min(k, len(part.ids)), metric=faiss_metric(metric)
            )
            heap.add_result(scores, np.where(positions >= 0, positions + start, -1))
        first += len(shard.ids)
    if heap is not None and query_matrix is not None:
        heap.finalize()
        truth = (query_matrix, [[int(x) for x in row if x >= 0] for row in heap.I], None, k)
        index.tune_on_truth(truth, float(recall_target or 0.0), stacklevel=4)
    if len(held):
        index.add_vectors(queries.vectors, queries.ids, queries.texts, queries.metadata)
    return index


def _prepared(vectors: np.ndarray, metric: str) -> np.ndarray:
    """Vectors as the index compares them: a float32 copy, L2-normalised for cosine."""
    matrix = np.array(vectors, dtype=np.float32, copy=True)
    if metric == "cosine":
        faiss.normalize_L2(matrix)
    return matrix


def _training_rows(count: int, params: dict[str, Any], kind: str, seed: int) -> np.ndarray:
    """Global rows of the quantiser's training sample (all of them when the corpus is smaller)."""
    wanted = training_size(kind, params)
    if count <= wanted:
        return np.arange(count, dtype=np.int64)
    return np.sort(np.random.default_rng(seed).choice(count, size=wanted, replace=False))


def _gather(shard_set: ShardSet, *wanted: np.ndarray) -> list[Shard]:
    """For each sorted array of global rows, those rows (vectors, ids, texts, metadata), in one pass."""
    parts: list[list[Shard]] = [[] for _ in wanted]
    first = 0
    for shard in shard_set:
        stop = first + len(shard.ids)
        for rows, into in zip(wanted, parts, strict=True):
            mask = np.zeros(len(shard.ids), dtype=bool)
            mask[rows[(rows >= first) & (rows < stop)] - first] = True
            into.append(_subset(shard, mask))
        first = stop
    return [_concat(p, shard_set.dimension) for p in parts]


def _subset(shard: Shard, mask: np.ndarray) -> Shard:
    positions = np.flatnonzero(mask)
    return Shard(
        [shard.ids[i] for i in positions],
        [shard.texts[i] for i in positions],
        {name: [values[i] for i in positions] for name, values in shard.metadata.items()},
        np.ascontiguousarray(shard.vectors[positions], dtype=np.float32),
    )


def _concat(parts: list[Shard], dimension: int) -> Shard:
    names = dict.fromkeys(name for part in parts for name in part.metadata)
    return Shard(
        [i for part in parts for i in part.ids],
        [t for part in parts for t in part.texts],
        {n: [v for part in parts for v in part.metadata.get(n, [""] * len(part.ids))] for n in names},
        np.concatenate([p.vectors for p in parts]) if parts else np.zeros((0, dimension), np.float32),
    )


def _whole(shard_set: ShardSet) -> Shard:
    return _concat([_subset(s, np.ones(len(s.ids), dtype=bool)) for s in shard_set], shard_set.dimension)


__all__ = ["TUNE_QUERIES", "build_from_shards"]
