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

import json
import math
import os
import secrets
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import faiss
import numpy as np

from textsiamese.errors import ConfigError, InputError, ModelError, TextSiameseError
from textsiamese.search import storage
from textsiamese.search.kinds import INDEX_KINDS, METRICS, choose_kind, faiss_metric, get_kind

TUNE_QUERIES = 500
"""Queries the recall tuner uses when none are given (held-out corpus rows at build time, at most 10%)."""


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


@dataclass(frozen=True)
class Hit:
    """One search result: the row's id, its score under the index metric, its text and metadata.

    ``score`` is a similarity (larger is closer) for cosine and dot, a distance (smaller is closer) for
    euclidean.
    """

    id: str
    score: float
    text: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """``{"id", "score", "text", **metadata}``; metadata columns named like those keys nest instead."""
        out: dict[str, Any] = {"id": self.id, "score": round(self.score, 6), "text": self.text}
        clashes = {key for key in self.metadata if key in out or key == "metadata"}
        if clashes:
            out["metadata"] = dict(self.metadata)
        else:
            out.update(self.metadata)
        return out


def _library_version() -> str:
    from textsiamese import __version__

    return __version__


def _source_of(model: Any) -> str | None:
    """Where a model was loaded from (``SiameseModel.source``), recorded so the CLI can reopen it."""
    source = getattr(model, "source", None)
    return str(source) if source else None


def _as_matrix(vectors: Any, dimension: int | None, what: str, *, copy: bool = False) -> np.ndarray:
    """A C-contiguous float32 (N, D) view of ``vectors`` (a copy if ``copy``), checked for shape and
    finiteness. Copy before normalising in place, so a caller's array is never changed."""
    array = np.array(vectors, dtype=np.float32, copy=True) if copy else np.asarray(vectors, dtype=np.float32)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2:
        raise InputError(what, f"expected a (N, D) matrix, got shape {array.shape}")
    if dimension is not None and array.shape[1] != dimension:
        raise InputError(what, f"vectors have dimension {array.shape[1]}, the index has {dimension}")
    if array.size and not np.isfinite(array).all():
        raise InputError(what, "vectors contain NaN or infinity")
    return np.ascontiguousarray(array)


def _metadata_rows(metadata: Any, count: int) -> list[dict[str, Any]]:
    """Metadata as one dict per row, from a list of dicts or a dict of columns (``Corpus.metadata``)."""
    if metadata is None:
        return [{} for _ in range(count)]
    if isinstance(metadata, Mapping):
        columns = {str(name): list(values) for name, values in metadata.items()}
        for name, values in columns.items():
            if len(values) != count:
                raise InputError("metadata", f"column {name!r} has {len(values)} values for {count} rows")
        return [{name: values[i] for name, values in columns.items()} for i in range(count)]
    rows = [dict(row) if row else {} for row in metadata]
    if len(rows) != count:
        raise InputError("metadata", f"{len(rows)} metadata rows for {count} vectors")
    return rows


class Index:
    """A FAISS index over embeddings with string ids, texts and metadata. Build with :meth:`build`
    (texts + a model) or :meth:`from_vectors`; reopen with :meth:`load`.

    ``len(index)`` counts live rows. ``kind`` is one of flat / hnsw / ivf / ivfpq (``auto`` is resolved at
    build time), ``metric`` one of cosine / dot / euclidean, and ``params`` the kind's parameters including
    the tuned ``nprobe`` or ``ef_search``.
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
        self.model: Encoder | None = None
        self._ids: list[str | None] = []
        self._texts: list[str | None] = []
        self._meta: list[dict[str, Any] | None] = []
        self._label_of: dict[str, int] = {}
        self._deleted: set[int] = set()
        self._selector: tuple[Any, Any] | None = None
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
        matrix = _as_matrix(vectors, None, "vectors", copy=metric == "cosine")
        count, dimension = matrix.shape
        if count == 0:
            raise ConfigError("cannot build an index from an empty corpus")
        faiss_metric(metric)
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
        index = cls(
            spec.create(dimension, faiss_metric(metric), merged),
            kind=kind,
            metric=metric,
            dimension=dimension,
            params=merged,
            fingerprint=fingerprint,
            model_source=model_source,
        )
        if metric == "cosine":
            faiss.normalize_L2(matrix)
        if spec.needs_training:
            index._train(matrix, seed)
        tune = recall_target is not None and spec.tunable is not None
        held_out = min(TUNE_QUERIES, count // 10)
        if not tune or tune_queries is not None or held_out < 50:
            index._add_prepared(matrix, ids, texts, metadata)
            if tune:
                labels = np.arange(count, dtype=np.int64)
                index._tune(matrix, labels, recall_target, tune_k, tune_queries, seed=seed)  # type: ignore[arg-type]
            return index
        # No queries given: hold a random sample of rows out of the index, tune with them as queries against
        # exact search over the rest, then add them. A row already in the index is an easy query (HNSW links
        # it to its own neighbours; it sits in its own IVF cell), so tuning on indexed rows overstates recall.
        full_ids = [str(i) for i in range(count)] if ids is None else [str(i) for i in ids]
        full_texts = [None] * count if texts is None else list(texts)
        full_meta = _metadata_rows(metadata, count)
        for name, column in (("ids", full_ids), ("texts", full_texts)):
            if len(column) != count:
                raise InputError(name, f"{len(column)} {name} for {count} vectors")
        held = np.zeros(count, dtype=bool)
        held[np.random.default_rng(seed).choice(count, size=held_out, replace=False)] = True
        order = np.concatenate([np.flatnonzero(~held), np.flatnonzero(held)])
        rest = count - held_out
        index._add_prepared(
            np.ascontiguousarray(matrix[order[:rest]]),
            [full_ids[i] for i in order[:rest]],
            [full_texts[i] for i in order[:rest]],
            [full_meta[i] for i in order[:rest]],
        )
        index._tune(
            matrix[order[:rest]],
            np.arange(rest, dtype=np.int64),
            recall_target,  # type: ignore[arg-type]
            tune_k,
            matrix[order[rest:]],
            seed=seed,
        )
        index._add_prepared(
            np.ascontiguousarray(matrix[order[rest:]]),
            [full_ids[i] for i in order[rest:]],
            [full_texts[i] for i in order[rest:]],
            [full_meta[i] for i in order[rest:]],
        )
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

    def _train(self, matrix: np.ndarray, seed: int) -> None:
        """Train IVF centroids (and PQ codebooks) on a sample of 40 points a list (FAISS asks for 39):
        k-means cost grows with the sample, and more points barely move the centroids."""
        nlist = int(self.params["nlist"])
        wanted = max(nlist * 40, (1 << int(self.params.get("nbits", 0))) * 64 if self.kind == "ivfpq" else 0)
        if matrix.shape[0] > wanted:
            rows = np.random.default_rng(seed).choice(matrix.shape[0], size=wanted, replace=False)
            sample = matrix[np.sort(rows)]
        else:
            sample = matrix
        self._index.cp.seed = seed + 1234
        self._index.train(sample)

    # ------------------------------------------------------------------ basic facts

    def __len__(self) -> int:
        return len(self._label_of)

    def __contains__(self, item: object) -> bool:
        return item in self._label_of

    def __repr__(self) -> str:
        return (
            f"Index(kind={self.kind!r}, metric={self.metric!r}, dimension={self.dimension}, "
            f"count={len(self)}, params={self.params})"
        )

    @property
    def ids(self) -> list[str]:
        """Live ids in insertion order (a tuned build adds its held-out tuning rows last)."""
        return [i for i in self._ids if i is not None]

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
        label = self._label_of.get(id)
        if label is None:
            raise ConfigError(f"id {id!r} is not in the index")
        return Hit(id, 0.0, self._texts[label], dict(self._meta[label] or {}))

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
        matrix = _as_matrix(vectors, self.dimension, "vectors", copy=self.metric == "cosine")
        if self.metric == "cosine":
            faiss.normalize_L2(matrix)
        return matrix

    def _add_prepared(
        self,
        matrix: np.ndarray,
        ids: Sequence[str] | None,
        texts: Sequence[str | None] | None,
        metadata: Any,
    ) -> list[str]:
        count = matrix.shape[0]
        start = len(self._ids)
        new_ids = [str(start + i) for i in range(count)] if ids is None else [str(i) for i in ids]
        if len(new_ids) != count:
            raise InputError("ids", f"{len(new_ids)} ids for {count} vectors")
        text_rows = [None] * count if texts is None else list(texts)
        if len(text_rows) != count:
            raise InputError("texts", f"{len(text_rows)} texts for {count} vectors")
        meta_rows = _metadata_rows(metadata, count)
        seen: set[str] = set()
        for new_id in new_ids:
            if new_id in seen or new_id in self._label_of:
                raise InputError("ids", f"duplicate id {new_id!r}; ids must be unique in the index")
            seen.add(new_id)
        labels = np.arange(start, start + count, dtype=np.int64)
        # Everything is validated: from here on the addition cannot fail half-way for a user's reason.
        if self.kind == "hnsw":
            self._index.add(matrix)
        else:
            self._index.add_with_ids(matrix, labels)
        self._ids.extend(new_ids)
        self._texts.extend(text_rows)
        self._meta.extend(meta_rows)
        for offset, new_id in enumerate(new_ids):
            self._label_of[new_id] = start + offset
        return new_ids

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
        return self._add_prepared(self._prepare(vectors), ids, texts, metadata)

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
        wanted = list(dict.fromkeys(str(i) for i in ids))
        missing = [i for i in wanted if i not in self._label_of]
        if missing:
            shown = ", ".join(repr(i) for i in missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise InputError("ids", f"{len(missing)} id(s) not in the index: {shown}; nothing was removed")
        if not wanted:
            return 0
        labels = np.array([self._label_of[i] for i in wanted], dtype=np.int64)
        if self.kind == "hnsw":
            self._deleted.update(int(label) for label in labels)
            self._selector = None
        else:
            removed = self._index.remove_ids(faiss.IDSelectorBatch(labels))
            if removed != len(labels):
                raise TextSiameseError(
                    f"FAISS removed {removed} of {len(labels)} vectors; index is inconsistent"
                )
        for label, old_id in zip(labels.tolist(), wanted, strict=True):
            del self._label_of[old_id]
            self._ids[label] = None
            self._texts[label] = None
            self._meta[label] = None
        if self.kind == "hnsw" and len(self._deleted) > self._index.ntotal // 2:
            self.compact()
        return len(wanted)

    def _check_writable(self) -> None:
        if self.read_only:
            raise ConfigError(
                "this index was opened with mmap=True (read-only); load it without mmap to update it"
            )

    def compact(self) -> None:
        """Rebuild an HNSW graph without its removed rows (a no-op for the other kinds)."""
        if self.kind != "hnsw" or not self._deleted:
            return
        live = np.array([label for label, i in enumerate(self._ids) if i is not None], dtype=np.int64)
        vectors = self._index.storage.reconstruct_n(0, self._index.ntotal)[live] if len(live) else None
        ids = [self._ids[label] for label in live]
        texts = [self._texts[label] for label in live]
        meta = [self._meta[label] for label in live]
        self._index = get_kind("hnsw").create(self.dimension, faiss_metric(self.metric), self.params)
        self._ids, self._texts, self._meta, self._label_of = [], [], [], {}
        self._deleted, self._selector = set(), None
        if vectors is not None:
            self._add_prepared(np.ascontiguousarray(vectors), ids, texts, meta)

    # ------------------------------------------------------------------ search

    def _search_params(self, k: int, value: int | None = None) -> Any:
        if self.kind == "hnsw":
            ef = int(value if value is not None else self.params["ef_search"])
            sel = None
            if self._deleted:
                if self._selector is None:
                    batch = faiss.IDSelectorBatch(np.fromiter(self._deleted, dtype=np.int64))
                    self._selector = (batch, faiss.IDSelectorNot(batch))
                sel = self._selector[1]
            params = faiss.SearchParametersHNSW(  # type: ignore[attr-defined]
                efSearch=max(ef, k)
            )
            if sel is not None:
                params.sel = sel
            return params
        if self.kind in ("ivf", "ivfpq"):
            nprobe = int(value if value is not None else self.params["nprobe"])
            return faiss.SearchParametersIVF(  # type: ignore[call-arg]
                nprobe=min(max(nprobe, 1), int(self.params["nlist"]))
            )
        return None

    def _check_k(self, k: int) -> None:
        if len(self) == 0:
            raise ConfigError("the index is empty: add rows before searching")
        if k < 1:
            raise ConfigError(f"k must be at least 1, got {k}")
        if k > len(self):
            raise ConfigError(f"k={k} is larger than the index ({len(self)} rows); use k <= {len(self)}")

    def _search_labels(
        self, matrix: np.ndarray, k: int, value: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        params = self._search_params(k, value)
        if params is None:
            scores, labels = self._index.search(matrix, k)
        else:
            scores, labels = self._index.search(matrix, k, params=params)
        if self.metric == "euclidean":
            scores = np.sqrt(np.maximum(scores, 0.0))
        return scores, labels

    def search_vectors(self, vectors: Any, k: int = 10) -> tuple[np.ndarray, list[list[str]]]:
        """Top-k for query vectors: scores (Q, k) float32 and ids per query (fewer than k where an
        approximate index found fewer; their scores are NaN)."""
        self._check_k(k)
        scores, labels = self._search_labels(self._prepare(vectors), k)
        ids: list[list[str]] = []
        scores = scores.astype(np.float32, copy=True)
        for row, label_row in enumerate(labels):
            found = []
            for col, label in enumerate(label_row.tolist()):
                hit_id = self._ids[label] if label >= 0 else None
                if hit_id is None:
                    scores[row, col] = np.nan
                else:
                    found.append(hit_id)
            ids.append(found)
        return scores, ids

    def search(
        self,
        queries: str | Sequence[str] | np.ndarray,
        k: int = 10,
        *,
        model: Encoder | None = None,
        batch_size: int | None = None,
    ) -> list[list[Hit]]:
        """Top-k hits for each query: text queries go through the query tower, arrays are used as they are.

        >>> index.search(["who won the match?"], k=3)[0][0].text  # doctest: +SKIP
        """
        self._check_k(k)
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
        results: list[list[Hit]] = []
        for score_row, label_row in zip(scores.tolist(), labels.tolist(), strict=True):
            hits = []
            for score, label in zip(score_row, label_row, strict=True):
                if label < 0 or self._ids[label] is None:
                    continue
                hits.append(
                    Hit(
                        str(self._ids[label]), float(score), self._texts[label], dict(self._meta[label] or {})
                    )
                )
            results.append(hits)
        return results

    # ------------------------------------------------------------------ tuning

    def stored_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """(labels, vectors) of the live rows as stored (normalised for cosine); not possible for ivfpq,
        whose codes are lossy."""
        if self.kind == "ivfpq":
            raise ConfigError("ivfpq keeps compressed codes only: pass the corpus vectors to tune()")
        if self.kind == "flat":
            labels = faiss.vector_to_array(self._index.id_map).astype(np.int64)
            vectors = self._index.index.reconstruct_n(0, self._index.ntotal)
        elif self.kind == "hnsw":
            labels = np.arange(self._index.ntotal, dtype=np.int64)
            vectors = self._index.storage.reconstruct_n(0, self._index.ntotal)
        else:
            invlists = self._index.invlists
            parts_l, parts_v = [], []
            for list_no in range(invlists.nlist):
                size = invlists.list_size(list_no)
                if size == 0:
                    continue
                ids_ptr = invlists.get_ids(list_no)
                codes_ptr = invlists.get_codes(list_no)
                parts_l.append(faiss.rev_swig_ptr(ids_ptr, size).copy())
                raw = faiss.rev_swig_ptr(codes_ptr, size * invlists.code_size).copy()
                parts_v.append(raw.view(np.float32).reshape(size, self.dimension))
                invlists.release_ids(list_no, ids_ptr)
                invlists.release_codes(list_no, codes_ptr)
            if not parts_l:
                return np.zeros(0, np.int64), np.zeros((0, self.dimension), np.float32)
            labels, vectors = np.concatenate(parts_l), np.concatenate(parts_v)
        keep = np.array([self._ids[int(label)] is not None for label in labels], dtype=bool)
        return labels[keep], np.ascontiguousarray(vectors[keep])

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
        spec = get_kind(self.kind)
        if spec.tunable is None:
            self.tuning = {
                "recall_target": recall_target,
                "k": k,
                "parameter": None,
                "recall": 1.0,
                "reached": True,
            }
            return self.tuning
        if vectors is None:
            labels, matrix = self.stored_vectors()
        else:
            matrix = self._prepare(vectors)
            if ids is None or len(ids) != matrix.shape[0]:
                raise InputError("ids", "tune(vectors=...) needs one id per vector")
            try:
                labels = np.array([self._label_of[str(i)] for i in ids], dtype=np.int64)
            except KeyError as error:
                raise InputError("ids", f"id {error.args[0]!r} is not in the index") from None
        return self._tune(matrix, labels, recall_target, k, queries, n_queries=n_queries, seed=seed)

    def _recall(
        self, queries: np.ndarray, truth: list[list[int]], k: int, self_labels: np.ndarray | None, value: int
    ) -> float:
        extra = 0 if self_labels is None else 1
        _, found = self._search_labels(queries, k + extra, value)
        total = 0.0
        for row, true_row in enumerate(truth):
            got = [int(x) for x in found[row] if x >= 0 and (self_labels is None or x != self_labels[row])][
                :k
            ]
            total += len(set(got) & set(true_row)) / max(len(true_row), 1)
        return total / max(len(truth), 1)

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
    ) -> dict[str, Any]:
        spec = get_kind(self.kind)
        assert spec.tunable is not None
        started = time.perf_counter()
        if not 0.0 < recall_target <= 1.0:
            raise ConfigError(f"recall target must be in (0, 1], got {recall_target}")
        count = matrix.shape[0]
        metric = faiss_metric(self.metric)
        self_labels: np.ndarray | None
        if queries is not None:
            query_matrix = self._prepare(queries)
            k = min(k, count)
            _, positions = faiss.knn(query_matrix, matrix, k, metric=metric)
            truth = [[int(labels[p]) for p in row if p >= 0] for row in positions]
            self_labels = None
        else:
            k = min(k, count - 1)
            if k < 1:
                self.tuning = {
                    "recall_target": recall_target,
                    "k": k,
                    "parameter": spec.tunable,
                    "value": self.params[spec.tunable],
                    "recall": 1.0,
                    "reached": True,
                }
                return self.tuning
            rng = np.random.default_rng(seed)
            rows = rng.choice(count, size=min(n_queries, count), replace=False)
            query_matrix = np.ascontiguousarray(matrix[rows])
            self_labels = labels[rows]
            _, positions = faiss.knn(query_matrix, matrix, k + 1, metric=metric)
            truth = []
            for row, position_row in enumerate(positions):
                row_labels = [int(labels[p]) for p in position_row if p >= 0]
                row_labels = [x for x in row_labels if x != self_labels[row]][:k]
                truth.append(row_labels)

        def measure(value: int) -> float:
            return self._recall(query_matrix, truth, k, self_labels, value)

        candidates = [v for v in spec.tunable_range(self.params) if v >= (k if self.kind == "hnsw" else 1)]
        best: tuple[int, float] | None = None
        below: tuple[int, float] | None = None
        for value in candidates:
            recall = measure(value)
            if recall >= recall_target:
                best = (value, recall)
                break
            if below is not None and recall - below[1] < 0.002 and value >= 8:
                break  # a plateau (e.g. PQ's quantisation error): searching more lists buys nothing
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
        reached = best is not None
        if best is None:
            best = below if below is not None else (int(self.params[spec.tunable]), 0.0)
            warnings.warn(
                f"{self.kind}: recall@{k} {best[1]:.3f} at {spec.tunable}={best[0]} is below the target "
                f"{recall_target}; use a more exact kind or parameters (e.g. ivf instead of ivfpq, or flat)",
                stacklevel=3,
            )
        self.params[spec.tunable] = int(best[0])
        self.tuning = {
            "recall_target": recall_target,
            "k": k,
            "queries": len(truth),
            "parameter": spec.tunable,
            "value": int(best[0]),
            "recall": round(float(best[1]), 4),
            "reached": reached,
            "queries_from": "given" if self_labels is None else "corpus rows",
            "seconds": round(time.perf_counter() - started, 2),
        }
        return self.tuning

    # ------------------------------------------------------------------ persistence

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the index directory atomically (new data files first, the manifest last) and return it."""
        directory = Path(path)
        directory.mkdir(parents=True, exist_ok=True)
        generation = datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(4)
        index_path = directory / f"index-{generation}.faiss"
        rows_path = directory / f"rows-{generation}.jsonl"
        try:
            try:
                faiss.write_index(self._index, str(index_path))
            except RuntimeError as error:  # FAISS reports a failed write (e.g. a full disk) this way
                reason = str(error).strip().splitlines()[-1] if str(error).strip() else "write failed"
                raise TextSiameseError(
                    f"{index_path}: cannot write the FAISS index ({reason[:200]})"
                ) from None
            with open(rows_path, "w", encoding="utf-8") as handle:
                for label, row_id in enumerate(self._ids):
                    if row_id is None:
                        continue
                    row: dict[str, Any] = {"label": label, "id": row_id, "text": self._texts[label]}
                    if self._meta[label]:
                        row["metadata"] = self._meta[label]
                    handle.write(json.dumps(row, ensure_ascii=False) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            storage.fsync_path(index_path)
            manifest = {
                "format": storage.FORMAT,
                "format_version": storage.FORMAT_VERSION,
                "library_version": _library_version(),
                "faiss_version": faiss.__version__,
                "created": datetime.now(UTC).isoformat(timespec="seconds"),
                "model_fingerprint": self.fingerprint,
                "model_source": self.model_source,
                "dimension": self.dimension,
                "metric": self.metric,
                "kind": self.kind,
                "params": self.params,
                "tuning": self.tuning,
                "count": len(self),
                "next_label": len(self._ids),
                "files": {"index": storage.file_entry(index_path), "rows": storage.file_entry(rows_path)},
            }
            storage.write_json_atomic(directory / storage.MANIFEST, manifest)
        except BaseException:
            for leftover in (index_path, rows_path):
                leftover.unlink(missing_ok=True)
            raise
        storage.remove_stale(directory, {index_path.name, rows_path.name})
        return directory

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
        directory = Path(path)
        manifest = storage.read_manifest(directory)
        manifest_path = directory / storage.MANIFEST
        kind, metric = str(manifest["kind"]), str(manifest["metric"])
        if kind not in INDEX_KINDS or metric not in METRICS:
            raise InputError(manifest_path, f"unknown kind {kind!r} or metric {metric!r}")
        files = manifest["files"]
        index_path = storage.verify_file(directory, files.get("index", {}), checksum=verify)
        rows_path = storage.verify_file(directory, files.get("rows", {}), checksum=verify)
        flags = faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY if mmap else 0
        try:
            faiss_index = faiss.read_index(str(index_path), flags)
        except RuntimeError as error:
            message = str(error).strip().splitlines()[-1] if str(error).strip() else "unreadable"
            raise InputError(index_path, f"FAISS cannot read the index ({message})") from None
        dimension = int(manifest["dimension"])
        if faiss_index.d != dimension:
            raise InputError(index_path, f"dimension {faiss_index.d} differs from the manifest's {dimension}")
        index = cls(
            faiss_index,
            kind=kind,
            metric=metric,
            dimension=dimension,
            params=dict(manifest["params"]),
            fingerprint=manifest.get("model_fingerprint"),
            model_source=manifest.get("model_source"),
            tuning=manifest.get("tuning"),
        )
        next_label = int(manifest["next_label"])
        index._ids = [None] * next_label
        index._texts = [None] * next_label
        index._meta = [None] * next_label
        with open(rows_path, encoding="utf-8") as handle:
            for line_no, line in enumerate(handle, start=1):
                try:
                    row = json.loads(line)
                    label = int(row["label"])
                    row_id = str(row["id"])
                    if not 0 <= label < next_label or row_id in index._label_of:
                        raise ValueError("label out of range or id repeated")
                except (ValueError, KeyError, TypeError) as error:
                    raise InputError(rows_path, f"corrupted row ({error})", line=line_no) from None
                index._ids[label] = row_id
                index._texts[label] = row.get("text")
                index._meta[label] = row.get("metadata") or {}
                index._label_of[row_id] = label
        count = int(manifest["count"])
        if len(index) != count:
            raise InputError(rows_path, f"{len(index)} rows, the manifest records {count}")
        if kind == "hnsw":
            if faiss_index.ntotal != next_label:
                raise InputError(
                    index_path, f"{faiss_index.ntotal} vectors, the manifest records {next_label}"
                )
            index._deleted = {label for label, i in enumerate(index._ids) if i is None}
        elif faiss_index.ntotal != count:
            raise InputError(index_path, f"{faiss_index.ntotal} vectors, the manifest records {count}")
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
