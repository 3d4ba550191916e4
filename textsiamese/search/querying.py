"""What every index can answer: its facts, its model check, search, recall tuning (the queries side of
:class:`~textsiamese.search.index.Index`).

Why a base class: the queries side (search, top-k bounds, the tuner that measures recall with the same
search) reads on its own, while :mod:`textsiamese.search.index` keeps the lifecycle that changes rows
(build, add, remove, compact, save, load). Users only ever meet ``Index``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any, Protocol

import faiss
import numpy as np

from textsiamese.errors import ConfigError, ModelError
from textsiamese.search.kinds import get_kind, search_parameters
from textsiamese.search.rows import Hit, RowTable, as_matrix
from textsiamese.search.tuning import (
    TUNE_QUERIES,
    Truth,
    check_recall_target,
    exact_search_record,
    stored_vectors,
    tune_on_truth,
    tune_search_parameter,
)

__all__ = ["Encoder", "SearchableIndex"]


class Encoder(Protocol):
    """What an index needs from a model: ``SiameseModel`` satisfies it."""

    @property
    def dimension(self) -> int: ...

    def fingerprint(self) -> str: ...

    def encode(
        self,
        texts: Sequence[str],
        role: str = ...,
        batch_size: int | None = ...,
        *,
        show_progress: bool = ...,
        prompt: str | None = ...,
    ) -> Any: ...


class SearchableIndex:
    """The state of an index and everything that reads it: facts, model check, search, tuning.

    See :class:`~textsiamese.search.index.Index`, which adds building, updates and persistence.
    """

    def __init__(
        self,
        faiss_index: faiss.Index,
        *,
        kind: str,
        metric: str,
        dimension: int,
        params: dict[str, Any],
        fingerprint: str | None = None,
        model_source: str | None = None,
        tuning: dict[str, Any] | None = None,
    ) -> None:
        self._index: Any = faiss_index  # SWIG classes: the stubs do not know their attributes
        self.kind = kind
        self.metric = metric
        self.dimension = dimension
        self.params = dict(params)
        self.fingerprint = fingerprint
        self.model_source = model_source
        self.tuning = tuning
        # read_corpus keywords of the corpus file the rows came from (text_column, id_column), kept in the
        # manifest so that later additions read their files the same way; empty when not built from a file
        self.corpus_columns: dict[str, str] = {}
        self.model: Encoder | None = None
        self._rows = RowTable()
        self.read_only = False

    # ------------------------------------------------------------------ basic facts

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, item: object) -> bool:
        return item in self._rows.label_of

    def __repr__(self) -> str:
        return (
            f"Index(kind={self.kind!r}, metric={self.metric!r}, dimension={self.dimension}, "
            f"count={len(self)}, params={self.params})"
        )

    @property
    def ids(self) -> list[str]:
        """Live ids in insertion order (a tuned build adds its held-out tuning rows last)."""
        return self._rows.live_ids()

    @property
    def _ids(self) -> list[str | None]:
        """Ids by label, ``None`` where removed (read by tests that map raw FAISS labels)."""
        return self._rows.ids

    @property
    def faiss_index(self) -> faiss.Index:
        """The underlying FAISS index (for inspection; changing it bypasses the id mapping)."""
        return self._index

    @property
    def higher_is_closer(self) -> bool:
        """True for similarity metrics (cosine, dot), False for euclidean distance."""
        return self.metric != "euclidean"

    def get(self, id: str) -> Hit:
        """The stored row for ``id`` (score 0), or a ConfigError if it is not in the index."""
        label = self._rows.label_of.get(id)
        if label is None:
            raise ConfigError(f"id {id!r} is not in the index")
        return self._rows.hit(label, 0.0)

    # ------------------------------------------------------------------ model

    def attach_model(self, model: Encoder) -> None:
        """Use ``model`` for text queries and additions, after checking that the index was built with it."""
        if int(model.dimension) != self.dimension:
            raise ModelError(
                f"model dimension {model.dimension} differs from the index dimension {self.dimension}; "
                "use the model the index was built with, or rebuild the index"
            )
        if self.fingerprint is not None and model.fingerprint() != self.fingerprint:
            raise ModelError(
                f"model fingerprint {model.fingerprint()[:12]} differs from the index's "
                f"{self.fingerprint[:12]} (built from {self.model_source or 'another model'}); "
                "use that model or rebuild the index"
            )
        self.model = model

    def _encoder(self, model: Encoder | None) -> Encoder:
        if model is not None and model is not self.model:
            self.attach_model(model)
        if self.model is None:
            raise ConfigError("text queries need a model: pass model=, or Index.load(path, model=...)")
        return self.model

    # ------------------------------------------------------------------ queries

    def _prepare(self, vectors: Any) -> np.ndarray:
        """Checked float32 vectors of the index's dimension, L2-normalised (a copy) for cosine."""
        matrix = as_matrix(vectors, self.dimension, "vectors", copy=self.metric == "cosine")
        if self.metric == "cosine":
            faiss.normalize_L2(matrix)
        return matrix

    def _check_k(self, k: int) -> int:
        """The number of hits to search for: ``k``, or the index size with a warning when ``k`` is larger.

        A top-k larger than the corpus asks for every row, so it gets them (as a FAISS user expects fewer hits
        than asked, not an error); the warning points at the caller of :meth:`search` / :meth:`search_vectors`.
        An empty index or ``k < 1`` cannot be answered and is a ConfigError.
        """
        if len(self) == 0:
            raise ConfigError("the index is empty: add rows before searching")
        if k < 1:
            raise ConfigError(f"k must be at least 1, got {k}")
        if k > len(self):
            warnings.warn(
                f"k={k} is larger than the index ({len(self)} rows); returning {len(self)} hits per query",
                stacklevel=3,
            )
            return len(self)
        return k

    def _search_labels(
        self, matrix: np.ndarray, k: int, value: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Raw FAISS (scores, labels) for prepared queries, masked rows excluded; ``value`` overrides the
        tuned knob (the tuner's trials). Euclidean scores come back as distances, not their squares."""
        params = search_parameters(self.kind, self.params, k, value, self._rows.exclusion_selector())
        if params is None:
            scores, labels = self._index.search(matrix, k)
        else:
            scores, labels = self._index.search(matrix, k, params=params)
        if self.metric == "euclidean":
            scores = np.sqrt(np.maximum(scores, 0.0))
        return scores, labels

    def search_vectors(self, vectors: Any, k: int = 10) -> tuple[np.ndarray, list[list[str]]]:
        """Top-k for query vectors: scores (Q, k) float32 and ids per query (fewer than k where an
        approximate index found fewer; their scores are NaN). A ``k`` above the index size returns every row,
        with a warning."""
        k = self._check_k(k)
        scores, labels = self._search_labels(self._prepare(vectors), k)
        return self._rows.found_ids(scores, labels)

    def search(
        self,
        queries: str | Sequence[str] | np.ndarray,
        k: int = 10,
        *,
        model: Encoder | None = None,
        batch_size: int | None = None,
        prompt: str | None = None,
    ) -> list[list[Hit]]:
        """Top-k hits for each query: text queries go through the query tower, arrays are used as they are.
        A ``k`` above the index size returns every row, with a warning. ``prompt`` overrides the model's
        query prompt (``SiameseModel.encode``'s ``prompt``).

        >>> index.search(["who won the match?"], k=3)[0][0].text  # doctest: +SKIP
        """
        k = self._check_k(k)
        if isinstance(queries, str):
            queries = [queries]
        if isinstance(queries, np.ndarray):
            matrix = self._prepare(queries)
        else:
            texts = list(queries)
            if not texts:
                return []
            encoder = self._encoder(model)
            matrix = self._prepare(encoder.encode(texts, role="query", batch_size=batch_size, prompt=prompt))
        scores, labels = self._search_labels(matrix, k)
        return self._rows.hits(scores, labels)

    # ------------------------------------------------------------------ tuning

    def stored_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """(labels, vectors) of the live rows as stored (normalised for cosine); not possible for ivfpq,
        whose codes are lossy."""
        return stored_vectors(self._index, self.kind, self.dimension, self._rows.ids)

    def tune(
        self,
        recall_target: float = 0.95,
        *,
        k: int = 10,
        vectors: Any = None,
        ids: Sequence[str] | None = None,
        queries: Any = None,
        n_queries: int = TUNE_QUERIES,
        seed: int = 0,
    ) -> dict[str, Any]:
        """Set ``nprobe`` / ``ef_search`` to the smallest value whose recall@k against exact search reaches
        ``recall_target``, and record the result in :attr:`tuning` (saved in the manifest).

        The oracle is exhaustive search (``faiss.knn``) over the corpus vectors: the stored ones, or
        ``vectors`` with their ``ids`` (required for ivfpq). ``queries`` default to ``n_queries`` indexed rows,
        each one's own row left out of both result lists; rows already in the index are easier queries than
        new ones (for HNSW especially), so pass real ``queries`` when the recall must hold for them.
        """
        if get_kind(self.kind).tunable is None:
            self.tuning = exact_search_record(recall_target, k)
            return self.tuning
        if vectors is None:
            labels, matrix = self.stored_vectors()
        else:
            matrix = self._prepare(vectors)
            labels = self._rows.labels_of(ids, matrix.shape[0])
        return self._tune(matrix, labels, recall_target, k, queries, n_queries=n_queries, seed=seed)

    def _tune(
        self,
        matrix: np.ndarray,
        labels: np.ndarray,
        recall_target: float,
        k: int,
        queries: Any,
        *,
        n_queries: int = TUNE_QUERIES,
        seed: int = 0,
        stacklevel: int = 3,
    ) -> dict[str, Any]:
        """Tune the kind's knob against exact search over ``matrix`` (row i has label ``labels[i]``), set
        it in :attr:`params` and record :attr:`tuning` (see :func:`~textsiamese.search.tuning.tune_search_parameter`).

        ``stacklevel`` points a below-target warning at the user's call: 3 from :meth:`tune` or
        :meth:`from_vectors`, 4 through :meth:`_add_tuned`."""
        spec = get_kind(self.kind)
        check_recall_target(recall_target)
        record = tune_search_parameter(
            self._search_labels,
            spec,
            self.params,
            (labels, matrix),
            metric=self.metric,
            recall_target=recall_target,
            k=k,
            queries=None if queries is None else self._prepare(queries),
            n_queries=n_queries,
            seed=seed,
            warn_stacklevel=stacklevel,
        )
        self.params[record["parameter"]] = record["value"]
        self.tuning = record
        return record

    def tune_on_truth(self, truth: Truth, recall_target: float, *, stacklevel: int = 3) -> dict[str, Any]:
        """:meth:`tune` against an exact ``truth`` computed elsewhere (labels are this index's), for a
        corpus that is not in memory at once (:func:`textsiamese.search.sharded.build_from_shards`)."""
        spec = get_kind(self.kind)
        if spec.tunable is None:
            self.tuning = exact_search_record(recall_target, truth[3])
            return self.tuning
        record = tune_on_truth(
            self._search_labels,
            spec,
            self.params,
            truth,
            recall_target=recall_target,
            warn_stacklevel=stacklevel,
        )
        self.params[record["parameter"]] = record["value"]
        self.tuning = record
        return record

    def memory_bytes(self) -> int:
        """Approximate bytes the FAISS structure holds (from its serialised size), ids and texts excluded."""
        spec = get_kind(self.kind)
        estimate = spec.bytes_per_vector(self.dimension, self.params) * self._index.ntotal
        if self.kind in ("ivf", "ivfpq"):
            estimate += 4 * self.dimension * int(self.params["nlist"])
        return math.ceil(estimate)
