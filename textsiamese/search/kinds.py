"""The registry of FAISS index kinds (flat, hnsw, ivf, ivfpq) and the ``auto`` choice between them.

Each kind knows how to create an empty FAISS index for a dimension, a corpus size and a metric, which
default parameters suit that size, which search-time knob trades speed for recall (``nprobe`` or
``ef_search``) and whether it can drop vectors in place. Keeping this in one table means the Python API, the
CLI and the manifest all speak the same names.

>>> choose_kind(1_000, 384, memory_budget=8 << 30)
'flat'
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import faiss
import numpy as np

from textsiamese.errors import ConfigError

METRICS = ("cosine", "dot", "euclidean")
"""Metrics an index can keep. cosine = inner product on L2-normalised vectors; euclidean reports distances."""

# Below this many vectors exact search is a few milliseconds per query: no approximation is worth it.
FLAT_MAX = 50_000


def faiss_metric(metric: str) -> int:
    """The FAISS metric constant for one of :data:`METRICS`."""
    if metric in ("cosine", "dot"):
        return int(faiss.METRIC_INNER_PRODUCT)
    if metric == "euclidean":
        return int(faiss.METRIC_L2)
    raise ConfigError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")


def default_nlist(count: int) -> int:
    """Inverted lists for an IVF index: about 4·√N, and at least 39 training points per list."""
    return max(1, min(round(4 * math.sqrt(max(count, 1))), count // 39 if count >= 39 else 1))


def default_pq_m(dimension: int) -> int:
    """PQ sub-quantizers: one per 8 dimensions (a byte each), the largest divisor of D not above D/8."""
    for m in range(max(1, dimension // 8), 0, -1):
        if dimension % m == 0:
            return m
    return 1


def default_pq_nbits(count: int) -> int:
    """Bits per PQ code: 8 (256 centroids) when there are ≥ 39 training points per centroid, fewer below."""
    bits = 8
    while bits > 4 and count < 39 * (1 << bits):
        bits -= 1
    return bits


@dataclass(frozen=True)
class IndexKind:
    """One kind of index: how to make it, its default parameters and its search-time knob."""

    name: str
    description: str
    defaults: Callable[[int, int], dict[str, Any]]
    create: Callable[[int, int, dict[str, Any]], faiss.Index]
    tunable: str | None
    """Name of the search-time parameter that trades speed for recall (None for exact search)."""
    tunable_range: Callable[[dict[str, Any]], list[int]]
    needs_training: bool
    removes_in_place: bool
    """False where removed ids are only masked at search time (HNSW) until :meth:`Index.compact`."""
    bytes_per_vector: Callable[[int, dict[str, Any]], float]


def _flat_create(dimension: int, metric: int, params: dict[str, Any]) -> faiss.Index:
    return faiss.IndexIDMap2(faiss.IndexFlat(dimension, metric))


def _hnsw_create(dimension: int, metric: int, params: dict[str, Any]) -> faiss.Index:
    index = faiss.IndexHNSWFlat(dimension, int(params["M"]), metric)
    index.hnsw.efConstruction = int(params["ef_construction"])
    index.hnsw.efSearch = int(params["ef_search"])
    return index


def _ivf_create(dimension: int, metric: int, params: dict[str, Any]) -> faiss.Index:
    quantizer = faiss.IndexFlat(dimension, metric)
    index = faiss.IndexIVFFlat(quantizer, dimension, int(params["nlist"]), metric)
    index.nprobe = int(params["nprobe"])
    return index


def _ivfpq_create(dimension: int, metric: int, params: dict[str, Any]) -> faiss.Index:
    if dimension % int(params["m"]) != 0:
        raise ConfigError(f"ivfpq: m={params['m']} must divide the dimension {dimension}")
    quantizer = faiss.IndexFlat(dimension, metric)
    index = faiss.IndexIVFPQ(
        quantizer, dimension, int(params["nlist"]), int(params["m"]), int(params["nbits"]), metric
    )
    index.nprobe = int(params["nprobe"])
    return index


def _nprobe_range(params: dict[str, Any]) -> list[int]:
    nlist = int(params["nlist"])
    values = [1]
    while values[-1] * 2 < nlist:
        values.append(values[-1] * 2)
    if values[-1] != nlist:
        values.append(nlist)
    return values


def _ef_range(params: dict[str, Any]) -> list[int]:
    return [16, 32, 64, 128, 256, 512, 1024, 2048]


INDEX_KINDS: dict[str, IndexKind] = {
    "flat": IndexKind(
        name="flat",
        description="exact search over every vector; best below ~50k vectors",
        defaults=lambda count, dimension: {},
        create=_flat_create,
        tunable=None,
        tunable_range=lambda params: [],
        needs_training=False,
        removes_in_place=True,
        bytes_per_vector=lambda dimension, params: 4 * dimension + 8,
    ),
    "hnsw": IndexKind(
        name="hnsw",
        description="graph index (HNSW): high recall and QPS in memory; slower to build",
        defaults=lambda count, dimension: {"M": 32, "ef_construction": 40, "ef_search": 64},
        create=_hnsw_create,
        tunable="ef_search",
        tunable_range=_ef_range,
        needs_training=False,
        removes_in_place=False,
        bytes_per_vector=lambda dimension, params: 4 * dimension + 8 * int(params.get("M", 32)) + 16,
    ),
    "ivf": IndexKind(
        name="ivf",
        description="inverted lists over k-means cells (IVF-Flat): fast to build, full-precision vectors",
        defaults=lambda count, dimension: {"nlist": default_nlist(count), "nprobe": 16},
        create=_ivf_create,
        tunable="nprobe",
        tunable_range=_nprobe_range,
        needs_training=True,
        removes_in_place=True,
        bytes_per_vector=lambda dimension, params: 4 * dimension + 8,
    ),
    "ivfpq": IndexKind(
        name="ivfpq",
        description="inverted lists of product-quantised codes (IVF-PQ): m bytes a vector, lossy scores",
        defaults=lambda count, dimension: {
            "nlist": default_nlist(count),
            "m": default_pq_m(dimension),
            "nbits": default_pq_nbits(count),
            "nprobe": 16,
        },
        create=_ivfpq_create,
        tunable="nprobe",
        tunable_range=_nprobe_range,
        needs_training=True,
        removes_in_place=True,
        bytes_per_vector=lambda dimension, params: (
            math.ceil(int(params.get("m", default_pq_m(dimension))) * int(params.get("nbits", 8)) / 8) + 8
        ),
    ),
}

KIND_NAMES = ("auto", *INDEX_KINDS)


def get_kind(name: str) -> IndexKind:
    """The registered kind called ``name`` (``auto`` is resolved by :func:`choose_kind` first)."""
    try:
        return INDEX_KINDS[name]
    except KeyError:
        raise ConfigError(f"unknown index kind {name!r}; choose one of {', '.join(KIND_NAMES)}") from None


def available_memory() -> int:
    """Bytes of memory available now (MemAvailable on Linux), or 8 GiB where that cannot be read."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def choose_kind(count: int, dimension: int, memory_budget: int | None = None) -> str:
    """Pick an index kind from corpus size and memory, as ``--kind auto`` does.

    - up to :data:`FLAT_MAX` vectors: ``flat`` (exact search costs milliseconds; nothing to tune);
    - full-precision vectors fit in the budget: ``ivf``. On the 2-core benchmark machine (1M x 384,
      docs/benchmarks.md) it built 3x faster than HNSW and answered faster at a higher recall, and it
      removes rows in place;
    - otherwise ``ivfpq`` (m bytes a vector), whose memory is a fraction of the raw vectors.

    ``memory_budget`` defaults to half the memory available now.
    """
    if count <= FLAT_MAX:
        return "flat"
    budget = available_memory() // 2 if memory_budget is None else memory_budget
    ivf = INDEX_KINDS["ivf"]
    if count * ivf.bytes_per_vector(dimension, ivf.defaults(count, dimension)) <= budget:
        return "ivf"
    return "ivfpq"


def resolve_params(
    kind: str, count: int, dimension: int, params: Mapping[str, Any] | None, memory_budget: int | None
) -> tuple[IndexKind, dict[str, Any]]:
    """The kind to build (``auto`` resolved by :func:`choose_kind`) and its parameters: the kind's
    defaults for this corpus with ``params`` laid over them, each one checked to be the kind's."""
    if kind == "auto":
        kind = choose_kind(count, dimension, memory_budget)
    spec = get_kind(kind)
    merged = spec.defaults(count, dimension)
    for key, value in (params or {}).items():
        if key not in merged:
            known = ", ".join(merged) or "none"
            raise ConfigError(f"{kind} index has no parameter {key!r} (known: {known})")
        merged[key] = value
    if "nlist" in merged and int(merged["nlist"]) > count:
        raise ConfigError(f"nlist={merged['nlist']} is larger than the corpus ({count} vectors)")
    return spec, merged


def training_size(kind: str, params: dict[str, Any]) -> int:
    """Points IVF k-means trains on: 40 a list (FAISS asks for 39), and for ivfpq at least 64 a PQ centroid."""
    return max(int(params["nlist"]) * 40, (1 << int(params.get("nbits", 0))) * 64 if kind == "ivfpq" else 0)


def train(faiss_index: Any, kind: str, params: dict[str, Any], matrix: np.ndarray, seed: int) -> None:
    """Train IVF centroids (and PQ codebooks) on a sample of 40 points a list (FAISS asks for 39):
    k-means cost grows with the sample, and more points barely move the centroids."""
    wanted = training_size(kind, params)
    if matrix.shape[0] > wanted:
        rows = np.random.default_rng(seed).choice(matrix.shape[0], size=wanted, replace=False)
        sample = matrix[np.sort(rows)]
    else:
        sample = matrix
    faiss_index.cp.seed = seed + 1234
    faiss_index.train(sample)


def search_parameters(
    kind: str, params: dict[str, Any], k: int, value: int | None = None, exclude: Any = None
) -> Any:
    """FAISS search parameters for one search: ``ef_search`` (at least k) or ``nprobe`` (1 to nlist) from
    ``params`` unless ``value`` overrides it (the tuner's trial), and for HNSW the ``exclude`` selector of
    masked rows. None for flat, which has nothing to set."""
    if kind == "hnsw":
        ef = int(value if value is not None else params["ef_search"])
        search_params = faiss.SearchParametersHNSW(  # type: ignore[attr-defined]
            efSearch=max(ef, k)
        )
        if exclude is not None:
            search_params.sel = exclude
        return search_params
    if kind in ("ivf", "ivfpq"):
        nprobe = int(value if value is not None else params["nprobe"])
        return faiss.SearchParametersIVF(  # type: ignore[call-arg]
            nprobe=min(max(nprobe, 1), int(params["nlist"]))
        )
    return None
