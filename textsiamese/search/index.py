"""A persistent semantic-search index on FAISS: string ids, texts, metadata, add/remove, tuning, save/load.

Why not a bare FAISS index: users need their own ids back, the text and columns of each hit, updates without
a rebuild, a file that refuses to be used with the wrong model, and an approximate index whose recall is
known. :class:`Index` keeps one metric for approximate and exact search alike (cosine = inner product on
L2-normalised vectors), records it in the manifest, and tunes ``nprobe`` / ``ef_search`` to a recall target
measured against exact search (``faiss.knn``) rather than to a latency guess.

>>> import numpy as np
>>> vectors = np.eye(3, dtype="float32")
>>> index = Index.from_vectors(vectors, ids=["a", "b", "c"], texts=["x", "y", "z"], kind="flat")
>>> [hit.id for hit in index.search(np.array([[0.0, 1.0, 0.1]], dtype="float32"), k=2)[0]]
['b', 'c']
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import faiss
import numpy as np

from textsiamese.errors import ConfigError, InputError, ModelError
from textsiamese.search.kinds import faiss_metric, get_kind, resolve_params, search_parameters, train
from textsiamese.search.persistence import corpus_columns, read_index_directory, write_index_directory
from textsiamese.search.rows import (
    Hit,
    RowTable,
    add_positions,
    add_rows,
    as_matrix,
    rebuild_without_removed,
    remove_rows,
)
from textsiamese.search.tuning import (
    TUNE_QUERIES,
    check_recall_target,
    exact_search_record,
    hold_out,
    stored_vectors,
    tune_search_parameter,
)

__all__ = ["TUNE_QUERIES", "Encoder", "Hit", "Index"]


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
    ) -> Any: ...


def _source_of(model: Any) -> str | None:
    """Where a model was loaded from (``SiameseModel.source``), recorded so the CLI can reopen it."""
    source = getattr(model, "source", None)
    return str(source) if source else None


class Index:
    """A FAISS index over embeddings with string ids, texts and metadata. Build with :meth:`build`
    (texts + a model) or :meth:`from_vectors`; reopen with :meth:`load`.

    ``len(index)`` counts live rows. ``kind`` is one of flat / hnsw / ivf / ivfpq (``auto`` is resolved at
    build time), ``metric`` one of cosine / dot / euclidean, and ``params`` the kind's parameters including
    the tuned ``nprobe`` or ``ef_search``. FAISS sees int64 labels only; :class:`~textsiamese.search.rows.RowTable`
    maps them to ids, texts and metadata.
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

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_vectors(
        cls,
        vectors: Any,
        ids: Sequence[str] | None = None,
        texts: Sequence[str | None] | None = None,
        metadata: Any = None,
        *,
        kind: str = "auto",
        metric: str = "cosine",
        params: Mapping[str, Any] | None = None,
        recall_target: float | None = 0.95,
        tune_k: int = 10,
        tune_queries: Any = None,
        fingerprint: str | None = None,
        model_source: str | None = None,
        memory_budget: int | None = None,
        seed: int = 0,
    ) -> Index:
        """Build an index from an (N, D) array; row i gets ``ids[i]`` (default ``"i"``), ``texts[i]`` and
        ``metadata`` row i.

        Approximate kinds are tuned so that recall@``tune_k`` against exact search reaches
        ``recall_target`` (``None`` keeps the default ``nprobe`` / ``ef_search``); ``tune_queries`` are the
        query vectors to tune on. By default 500 random rows (at most 10%) are held out: the index is built without them,
        tuned with them as queries against exact search over the rest, and then they are added (so
        :attr:`ids` lists those rows last).
        """
        matrix = as_matrix(vectors, None, "vectors", copy=metric == "cosine")
        count, dimension = matrix.shape
        if count == 0:
            raise ConfigError("cannot build an index from an empty corpus")
        faiss_metric(metric)
        spec, merged = resolve_params(kind, count, dimension, params, memory_budget)
        index = cls(
            spec.create(dimension, faiss_metric(metric), merged),
            kind=spec.name,
            metric=metric,
            dimension=dimension,
            params=merged,
            fingerprint=fingerprint,
            model_source=model_source,
        )
        if metric == "cosine":
            faiss.normalize_L2(matrix)
        if spec.needs_training:
            train(index._index, index.kind, index.params, matrix, seed)
        index._add_tuned(matrix, ids, texts, metadata, recall_target, tune_k, tune_queries, seed)
        return index

    @classmethod
    def build(
        cls,
        model: Encoder,
        texts: Sequence[str],
        ids: Sequence[str] | None = None,
        metadata: Any = None,
        *,
        kind: str = "auto",
        metric: str = "cosine",
        params: Mapping[str, Any] | None = None,
        recall_target: float | None = 0.95,
        batch_size: int | None = None,
        show_progress: bool = False,
        memory_budget: int | None = None,
        model_source: str | None = None,
    ) -> Index:
        """Encode ``texts`` with the model's document tower and build an index over them.

        The model's fingerprint goes into the manifest so that :meth:`load` refuses a different model.

        >>> index = Index.build(model, ["a cat sat", "stocks fell"], ids=["c1", "c2"])  # doctest: +SKIP
        >>> index.search("a kitten", k=1)[0][0].id  # doctest: +SKIP
        'c1'
        """
        texts = list(texts)
        if not texts:
            raise ConfigError("cannot build an index from an empty corpus")
        vectors = model.encode(texts, role="document", batch_size=batch_size, show_progress=show_progress)
        index = cls.from_vectors(
            vectors,
            ids=ids,
            texts=texts,
            metadata=metadata,
            kind=kind,
            metric=metric,
            params=params,
            recall_target=recall_target,
            fingerprint=model.fingerprint(),
            model_source=model_source if model_source is not None else _source_of(model),
            memory_budget=memory_budget,
        )
        index.model = model
        return index

    def _add_tuned(
        self,
        matrix: np.ndarray,
        ids: Sequence[str] | None,
        texts: Sequence[str | None] | None,
        metadata: Any,
        recall_target: float | None,
        tune_k: int,
        tune_queries: Any,
        seed: int,
    ) -> None:
        """Add a new index's prepared rows and, for an approximate kind with a ``recall_target``, tune it
        (see :meth:`from_vectors`): on ``tune_queries`` if given, else on held-out rows added last."""
        count = matrix.shape[0]
        if recall_target is None or get_kind(self.kind).tunable is None:
            add_rows(self._index, self.kind, self._rows, matrix, ids, texts, metadata)
            return
        split = hold_out(count, seed) if tune_queries is None else None
        if split is None:
            add_rows(self._index, self.kind, self._rows, matrix, ids, texts, metadata)
            labels = np.arange(count, dtype=np.int64)
            self._tune(matrix, labels, recall_target, tune_k, tune_queries, seed=seed, stacklevel=4)
            return
        # No queries given: hold a random sample of rows out of the index, tune with them as queries against
        # exact search over the rest, then add them. A row already in the index is an easy query (HNSW links
        # it to its own neighbours; it sits in its own IVF cell), so tuning on indexed rows overstates recall.
        kept, held = split
        columns = self._rows.new_columns(ids, texts, metadata, count)
        add_positions(self._index, self.kind, self._rows, matrix, columns, kept)
        labels = np.arange(len(kept), dtype=np.int64)
        self._tune(matrix[kept], labels, recall_target, tune_k, matrix[held], seed=seed, stacklevel=4)
        add_positions(self._index, self.kind, self._rows, matrix, columns, held)

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

    # ------------------------------------------------------------------ updates

    def _prepare(self, vectors: Any) -> np.ndarray:
        """Checked float32 vectors of the index's dimension, L2-normalised (a copy) for cosine."""
        matrix = as_matrix(vectors, self.dimension, "vectors", copy=self.metric == "cosine")
        if self.metric == "cosine":
            faiss.normalize_L2(matrix)
        return matrix

    def add_vectors(
        self,
        vectors: Any,
        ids: Sequence[str] | None = None,
        texts: Sequence[str | None] | None = None,
        metadata: Any = None,
    ) -> list[str]:
        """Add rows (all or nothing: a duplicate id or a wrong dimension adds none); returns their ids.

        IVF kinds put new vectors into their trained lists (no retraining), flat and HNSW simply grow.
        """
        self._check_writable()
        return add_rows(self._index, self.kind, self._rows, self._prepare(vectors), ids, texts, metadata)

    def add(
        self,
        texts: Sequence[str],
        ids: Sequence[str] | None = None,
        metadata: Any = None,
        *,
        model: Encoder | None = None,
        batch_size: int | None = None,
        show_progress: bool = False,
    ) -> list[str]:
        """Encode ``texts`` with the document tower and add them (see :meth:`add_vectors`)."""
        texts = list(texts)
        if not texts:
            return []
        if ids is not None and len(ids) != len(texts):
            raise InputError("ids", f"{len(ids)} ids for {len(texts)} texts")
        encoder = self._encoder(model)
        vectors = encoder.encode(texts, role="document", batch_size=batch_size, show_progress=show_progress)
        return self.add_vectors(vectors, ids=ids, texts=texts, metadata=metadata)

    def remove(self, ids: Iterable[str]) -> int:
        """Remove rows by id, all or nothing (an unknown id removes none); returns how many were removed.

        Flat and IVF drop the vectors in place. HNSW cannot unlink graph nodes, so removed rows are masked at
        search time; once more than half the graph is masked it is rebuilt (:meth:`compact`).
        """
        self._check_writable()
        removed = remove_rows(self._index, self.kind, self._rows, ids)
        if self.kind == "hnsw" and len(self._rows.deleted) > self._index.ntotal // 2:
            self.compact()
        return removed

    def _check_writable(self) -> None:
        if self.read_only:
            raise ConfigError(
                "this index was opened with mmap=True (read-only); load it without mmap to update it"
            )

    def compact(self) -> None:
        """Rebuild an HNSW graph without its removed rows (a no-op for the other kinds)."""
        if self.kind != "hnsw" or not self._rows.deleted:
            return
        empty = get_kind("hnsw").create(self.dimension, faiss_metric(self.metric), self.params)
        self._rows = rebuild_without_removed(self._index, self._rows, empty)
        self._index = empty

    # ------------------------------------------------------------------ search

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
    ) -> list[list[Hit]]:
        """Top-k hits for each query: text queries go through the query tower, arrays are used as they are.
        A ``k`` above the index size returns every row, with a warning.

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
            matrix = self._prepare(encoder.encode(texts, role="query", batch_size=batch_size))
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

    # ------------------------------------------------------------------ persistence

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the index directory atomically (new data files first, the manifest last) and return it."""
        description = {
            "model_fingerprint": self.fingerprint,
            "model_source": self.model_source,
            "dimension": self.dimension,
            "metric": self.metric,
            "kind": self.kind,
            "params": self.params,
            "tuning": self.tuning,
            "count": len(self),
            "next_label": self._rows.next_label,
            "corpus_columns": self.corpus_columns,
        }
        return write_index_directory(path, self._index, self._rows, description)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        model: Encoder | None = None,
        *,
        mmap: bool = False,
        verify: bool = True,
    ) -> Index:
        """Open an index directory, checking sizes and checksums first and then the model (if given).

        A truncated or corrupted file, or a model with another fingerprint or dimension, is refused with a
        one-line :class:`~textsiamese.errors.TextSiameseError`. ``mmap=True`` maps IVF lists from disk instead
        of reading them into memory; ``verify=False`` skips the checksum (sizes are still checked).
        """
        stored = read_index_directory(path, mmap=mmap, verify=verify)
        manifest = stored.manifest
        index = cls(
            stored.faiss_index,
            kind=str(manifest["kind"]),
            metric=str(manifest["metric"]),
            dimension=int(manifest["dimension"]),
            params=dict(manifest["params"]),
            fingerprint=manifest.get("model_fingerprint"),
            model_source=manifest.get("model_source"),
            tuning=manifest.get("tuning"),
        )
        index._rows = stored.rows
        index.corpus_columns = corpus_columns(manifest)
        index.read_only = mmap
        if model is not None:
            index.attach_model(model)
        return index

    def memory_bytes(self) -> int:
        """Approximate bytes the FAISS structure holds (from its serialised size), ids and texts excluded."""
        spec = get_kind(self.kind)
        estimate = spec.bytes_per_vector(self.dimension, self.params) * self._index.ntotal
        if self.kind in ("ivf", "ivfpq"):
            estimate += 4 * self.dimension * int(self.params["nlist"])
        return math.ceil(estimate)
