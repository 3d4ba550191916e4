"""Tuning an approximate index's search knob (``nprobe`` / ``ef_search``) to a recall measured, not guessed.

The oracle is exhaustive search (``faiss.knn``) over the corpus vectors under the index's own metric.
:func:`tune_search_parameter` sweeps the kind's candidate values from cheap to expensive, stops at the first
whose recall@k reaches the target (or at a plateau), and bisects between it and the last value below. Query
rows drawn from the corpus are left out of their own result lists, and :func:`hold_out` lets a build tune on
rows that are not yet in the index, which are harder (and more honest) queries than indexed ones.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import faiss
import numpy as np

from textsiamese.errors import ConfigError
from textsiamese.search.kinds import IndexKind, faiss_metric

TUNE_QUERIES = 500
"""Queries the recall tuner uses when none are given (held-out corpus rows at build time, at most 10%)."""

HELD_OUT_MIN = 50
"""Fewer held-out rows than this (a corpus under 500) tune on the indexed rows instead."""

SearchAt = Callable[[np.ndarray, int, int], tuple[np.ndarray, np.ndarray]]
"""``search(queries, k, value)``: the index's (scores, labels) with its knob set to ``value``."""

Truth = tuple[np.ndarray, list[list[int]], np.ndarray | None, int]
"""(query vectors, the exact top-k labels of each, each query's own label or None, k as clamped)."""


def hold_out(count: int, seed: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Positions of the rows to index first and of the random rows held out to tune on (min(500, 10%)),
    or None when the corpus is too small to spare :data:`HELD_OUT_MIN` rows."""
    held_out = min(TUNE_QUERIES, count // 10)
    if held_out < HELD_OUT_MIN:
        return None
    held = np.zeros(count, dtype=bool)
    held[np.random.default_rng(seed).choice(count, size=held_out, replace=False)] = True
    return np.flatnonzero(~held), np.flatnonzero(held)


def stored_vectors(
    faiss_index: Any, kind: str, dimension: int, ids: Sequence[str | None]
) -> tuple[np.ndarray, np.ndarray]:
    """(labels, vectors) of the live rows (``ids[label]`` not None) as FAISS stores them; not possible for
    ivfpq, whose codes are lossy."""
    if kind == "ivfpq":
        raise ConfigError("ivfpq keeps compressed codes only: pass the corpus vectors to tune()")
    if kind == "flat":
        labels = faiss.vector_to_array(faiss_index.id_map).astype(np.int64)
        vectors = faiss_index.index.reconstruct_n(0, faiss_index.ntotal)
    elif kind == "hnsw":
        labels = np.arange(faiss_index.ntotal, dtype=np.int64)
        vectors = faiss_index.storage.reconstruct_n(0, faiss_index.ntotal)
    else:
        labels, vectors = _inverted_list_contents(faiss_index.invlists, dimension)
        if not len(labels):
            return labels, vectors
    keep = np.array([ids[int(label)] is not None for label in labels], dtype=bool)
    return labels[keep], np.ascontiguousarray(vectors[keep])


def _inverted_list_contents(invlists: Any, dimension: int) -> tuple[np.ndarray, np.ndarray]:
    """Every (label, float32 vector) an IVF-Flat index holds, list by list (its codes are raw floats)."""
    parts_l, parts_v = [], []
    for list_no in range(invlists.nlist):
        size = invlists.list_size(list_no)
        if size == 0:
            continue
        ids_ptr = invlists.get_ids(list_no)
        codes_ptr = invlists.get_codes(list_no)
        parts_l.append(faiss.rev_swig_ptr(ids_ptr, size).copy())
        raw = faiss.rev_swig_ptr(codes_ptr, size * invlists.code_size).copy()
        parts_v.append(raw.view(np.float32).reshape(size, dimension))
        invlists.release_ids(list_no, ids_ptr)
        invlists.release_codes(list_no, codes_ptr)
    if not parts_l:
        return np.zeros(0, np.int64), np.zeros((0, dimension), np.float32)
    return np.concatenate(parts_l), np.concatenate(parts_v)


def exact_truth(
    matrix: np.ndarray,
    labels: np.ndarray,
    metric: str,
    k: int,
    queries: np.ndarray | None,
    n_queries: int,
    seed: int,
) -> Truth:
    """Exact top-k labels over ``matrix`` (row i has label ``labels[i]``) for ``queries``, or for
    ``n_queries`` random corpus rows, each with its own row left out (k at most N - 1; below 1 there are no
    queries)."""
    count = matrix.shape[0]
    faiss_kind = faiss_metric(metric)
    if queries is not None:
        k = min(k, count)
        _, positions = faiss.knn(queries, matrix, k, metric=faiss_kind)
        return queries, [[int(labels[p]) for p in row if p >= 0] for row in positions], None, k
    k = min(k, count - 1)
    if k < 1:
        return matrix[:0], [], None, k
    rows = np.random.default_rng(seed).choice(count, size=min(n_queries, count), replace=False)
    query_matrix = np.ascontiguousarray(matrix[rows])
    self_labels = labels[rows]
    _, positions = faiss.knn(query_matrix, matrix, k + 1, metric=faiss_kind)
    truth = []
    for row, position_row in enumerate(positions):
        row_labels = [int(labels[p]) for p in position_row if p >= 0]
        truth.append([x for x in row_labels if x != self_labels[row]][:k])
    return query_matrix, truth, self_labels, k


def recall_at(search: SearchAt, truth: Truth, value: int) -> float:
    """Mean recall@k of the index searched with its knob at ``value``, against the exact ``truth``."""
    queries, true_rows, self_labels, k = truth
    extra = 0 if self_labels is None else 1
    _, found = search(queries, k + extra, value)
    total = 0.0
    for row, true_row in enumerate(true_rows):
        got = [int(x) for x in found[row] if x >= 0 and (self_labels is None or x != self_labels[row])][:k]
        total += len(set(got) & set(true_row)) / max(len(true_row), 1)
    return total / max(len(true_rows), 1)


def sweep(
    measure: Callable[[int], float], candidates: list[int], recall_target: float
) -> tuple[tuple[int, float] | None, tuple[int, float] | None]:
    """(smallest value measured to reach the target, last value below it), each with its recall.

    Candidates run cheap to expensive and stop at the first hit, or at a plateau (PQ's quantisation error
    caps recall: searching more lists buys nothing); then the gap to the last miss is bisected to within
    an eighth."""
    best: tuple[int, float] | None = None
    below: tuple[int, float] | None = None
    for value in candidates:
        recall = measure(value)
        if recall >= recall_target:
            best = (value, recall)
            break
        if below is not None and recall - below[1] < 0.002 and value >= 8:
            break
        below = (value, recall)
    if best is not None and below is not None:
        low, high = below[0], best[0]
        while high - low > max(1, low // 8):
            middle = (low + high) // 2
            recall = measure(middle)
            if recall >= recall_target:
                high, best = middle, (middle, recall)
            else:
                low = middle
    return best, below


def exact_search_record(recall_target: float, k: int) -> dict[str, Any]:
    """The tuning record of an exact kind (flat): nothing to tune, recall 1."""
    return {"recall_target": recall_target, "k": k, "parameter": None, "recall": 1.0, "reached": True}


def check_recall_target(recall_target: float) -> None:
    """A ConfigError unless the target is a recall in (0, 1]."""
    if not 0.0 < recall_target <= 1.0:
        raise ConfigError(f"recall target must be in (0, 1], got {recall_target}")


def tune_search_parameter(
    search: SearchAt,
    spec: IndexKind,
    params: dict[str, Any],
    corpus: tuple[np.ndarray, np.ndarray],
    *,
    metric: str,
    recall_target: float,
    k: int,
    queries: np.ndarray | None,
    n_queries: int,
    seed: int,
    warn_stacklevel: int,
) -> dict[str, Any]:
    """The tuning record (``parameter``, ``value``, ``recall``, ``reached``, ...) of the smallest value of
    ``spec``'s knob whose recall@k reaches ``recall_target``, against exact search over ``corpus``
    (labels, vectors) for ``queries`` or ``n_queries`` corpus rows (:func:`exact_truth`). ``params`` is
    only read: the caller applies the value.

    Where no value reaches the target, the best one found is recorded with ``reached: False`` and a
    UserWarning is raised as ``warnings.warn(..., stacklevel=warn_stacklevel)`` in the caller would."""
    check_recall_target(recall_target)
    labels, matrix = corpus
    truth = exact_truth(matrix, labels, metric, k, queries, n_queries, seed)
    # one frame deeper than the caller counted: tune_on_truth warns from inside this call
    return tune_on_truth(
        search, spec, params, truth, recall_target=recall_target, warn_stacklevel=warn_stacklevel + 1
    )


def tune_on_truth(
    search: SearchAt,
    spec: IndexKind,
    params: dict[str, Any],
    truth: Truth,
    *,
    recall_target: float,
    warn_stacklevel: int,
) -> dict[str, Any]:
    """The tuning record of :func:`tune_search_parameter` against an exact ``truth`` already computed
    (by :func:`exact_truth`, or shard by shard when the corpus is not in memory, as
    :mod:`textsiamese.search.sharded` does)."""
    assert spec.tunable is not None
    started = time.perf_counter()
    check_recall_target(recall_target)
    _, true_rows, self_labels, k = truth
    record: dict[str, Any] = {"recall_target": recall_target, "k": k}
    if k < 1:  # one corpus row: no neighbour to find, nothing to tune
        record.update(parameter=spec.tunable, value=params[spec.tunable], recall=1.0, reached=True)
        return record
    low = k if spec.name == "hnsw" else 1
    candidates = [v for v in spec.tunable_range(params) if v >= low]
    best, below = sweep(lambda value: recall_at(search, truth, value), candidates, recall_target)
    reached = best is not None
    if best is None:
        best = below if below is not None else (int(params[spec.tunable]), 0.0)
        warnings.warn(
            f"{spec.name}: recall@{k} {best[1]:.3f} at {spec.tunable}={best[0]} is below the target "
            f"{recall_target}; use a more exact kind or parameters (e.g. ivf instead of ivfpq, or flat)",
            stacklevel=warn_stacklevel + 1,
        )
    record.update(
        queries=len(true_rows),
        parameter=spec.tunable,
        value=int(best[0]),
        recall=round(float(best[1]), 4),
        reached=reached,
        queries_from="given" if self_labels is None else "corpus rows",
        seconds=round(time.perf_counter() - started, 2),
    )
    return record
