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

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from textsiamese.errors import ConfigError, InputError
from textsiamese.search.kinds import faiss_metric, get_kind, resolve_params, train
from textsiamese.search.persistence import corpus_columns, read_index_directory, write_index_directory
from textsiamese.search.querying import Encoder, SearchableIndex
from textsiamese.search.rows import (
    Hit,
    add_positions,
    add_rows,
    as_matrix,
    rebuild_without_removed,
    remove_rows,
)
from textsiamese.search.tuning import (
    TUNE_QUERIES,
    hold_out,
)

__all__ = ["TUNE_QUERIES", "Encoder", "Hit", "Index"]


def _source_of(model: Any) -> str | None:
    """Where a model was loaded from (``SiameseModel.source``), recorded so the CLI can reopen it."""
    source = getattr(model, "source", None)
    return str(source) if source else None


class Index(SearchableIndex):
    """A FAISS index over embeddings with string ids, texts and metadata. Build with :meth:`build`
    (texts + a model) or :meth:`from_vectors`; reopen with :meth:`load`.

    ``len(index)`` counts live rows. ``kind`` is one of flat / hnsw / ivf / ivfpq (``auto`` is resolved at
    build time), ``metric`` one of cosine / dot / euclidean, and ``params`` the kind's parameters including
    the tuned ``nprobe`` or ``ef_search``. FAISS sees int64 labels only; :class:`~textsiamese.search.rows.RowTable`
    maps them to ids, texts and metadata.
    """

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
        index = cls.empty(kind, count, dimension, metric, params, memory_budget, fingerprint, model_source)
        spec = get_kind(index.kind)
        if metric == "cosine":
            faiss.normalize_L2(matrix)
        if spec.needs_training:
            train(index._index, index.kind, index.params, matrix, seed)
        index._add_tuned(matrix, ids, texts, metadata, recall_target, tune_k, tune_queries, seed)
        return index

    @classmethod
    def empty(
        cls,
        kind: str,
        count: int,
        dimension: int,
        metric: str = "cosine",
        params: Mapping[str, Any] | None = None,
        memory_budget: int | None = None,
        fingerprint: str | None = None,
        model_source: str | None = None,
    ) -> Index:
        """An empty, untrained index of ``kind`` (``auto`` resolved) sized for ``count`` vectors: the kind's
        defaults for that size with ``params`` over them. :meth:`from_vectors` and the shard builder
        (:mod:`textsiamese.search.sharded`) fill it."""
        faiss_metric(metric)
        spec, merged = resolve_params(kind, count, dimension, params, memory_budget)
        return cls(
            spec.create(dimension, faiss_metric(metric), merged),
            kind=spec.name,
            metric=metric,
            dimension=dimension,
            params=merged,
            fingerprint=fingerprint,
            model_source=model_source,
        )

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

    # ------------------------------------------------------------------ updates

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
