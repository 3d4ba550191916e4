"""The rows behind an index's int64 labels: string ids, texts, metadata, and HNSW's masked removals.

FAISS knows a vector only by an int64 label. :class:`RowTable` maps each label to the user's string id,
its text and its metadata row, and each live id back to its label. Labels are handed out in insertion order
and never reused, so a removed row leaves a ``None`` hole (kept so that labels stay positions). HNSW cannot
unlink graph nodes, so its removed labels are also recorded in :attr:`RowTable.deleted` and excluded from
every search by an id selector (:meth:`RowTable.exclusion_selector`) until the graph is rebuilt.

>>> rows = RowTable()
>>> rows.append(*rows.new_columns(["a", "b"], None, None, 2))
>>> rows.label_of["b"], rows.live_ids()
(1, ['a', 'b'])
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import faiss
import numpy as np

from textsiamese.errors import InputError, TextSiameseError

Columns = tuple[list[str], list[str | None], list[dict[str, Any]]]
"""One batch of new rows: ids, texts and metadata, all of the same length."""


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


def as_matrix(vectors: Any, dimension: int | None, what: str, *, copy: bool = False) -> np.ndarray:
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


def metadata_rows(metadata: Any, count: int) -> list[dict[str, Any]]:
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


class RowTable:
    """Label-indexed ids, texts and metadata of one index, with the reverse map from id to label.

    ``ids[label]`` is ``None`` for a removed row; ``len(table)`` counts live rows and :attr:`next_label`
    is the label the next added row gets.
    """

    def __init__(self) -> None:
        self.ids: list[str | None] = []
        self.texts: list[str | None] = []
        self.meta: list[dict[str, Any] | None] = []
        self.label_of: dict[str, int] = {}
        self.deleted: set[int] = set()
        self._selector: tuple[Any, Any] | None = None

    @classmethod
    def with_holes(cls, next_label: int) -> RowTable:
        """A table of ``next_label`` empty labels, for :meth:`put` to fill (reading a saved index)."""
        table = cls()
        table.ids = [None] * next_label
        table.texts = [None] * next_label
        table.meta = [None] * next_label
        return table

    def __len__(self) -> int:
        return len(self.label_of)

    @property
    def next_label(self) -> int:
        """The label the next added row gets: labels are positions and are never reused."""
        return len(self.ids)

    def live_ids(self) -> list[str]:
        """Ids of the rows not removed, in insertion order."""
        return [i for i in self.ids if i is not None]

    def live_labels(self) -> np.ndarray:
        """Labels of the rows not removed, ascending."""
        return np.array([label for label, i in enumerate(self.ids) if i is not None], dtype=np.int64)

    def hit(self, label: int, score: float) -> Hit:
        """The row under ``label`` as a :class:`Hit` (metadata copied, so callers may change it)."""
        return Hit(str(self.ids[label]), score, self.texts[label], dict(self.meta[label] or {}))

    # ------------------------------------------------------------------ additions

    def new_columns(
        self, ids: Sequence[str] | None, texts: Sequence[str | None] | None, metadata: Any, count: int
    ) -> Columns:
        """Check ``count`` new rows before anything is added: one id, text and metadata row each (ids
        default to their labels), and no id repeated or already in the table."""
        start = self.next_label
        new_ids = [str(start + i) for i in range(count)] if ids is None else [str(i) for i in ids]
        if len(new_ids) != count:
            raise InputError("ids", f"{len(new_ids)} ids for {count} vectors")
        text_rows: list[str | None] = [None] * count if texts is None else list(texts)
        if len(text_rows) != count:
            raise InputError("texts", f"{len(text_rows)} texts for {count} vectors")
        meta_rows = metadata_rows(metadata, count)
        seen: set[str] = set()
        for new_id in new_ids:
            if new_id in seen or new_id in self.label_of:
                raise InputError("ids", f"duplicate id {new_id!r}; ids must be unique in the index")
            seen.add(new_id)
        return new_ids, text_rows, meta_rows

    def append(self, ids: list[str], texts: list[str | None], meta: list[dict[str, Any]]) -> None:
        """Give checked rows (:meth:`new_columns`) the next labels, in order."""
        start = self.next_label
        self.ids.extend(ids)
        self.texts.extend(texts)
        self.meta.extend(meta)
        for offset, new_id in enumerate(ids):
            self.label_of[new_id] = start + offset

    def put(self, label: int, row_id: str, text: str | None, meta: dict[str, Any]) -> None:
        """Fill one label of a :meth:`with_holes` table; a label out of range or an id seen before is a
        ValueError (the saved rows are corrupted)."""
        if not 0 <= label < self.next_label or row_id in self.label_of:
            raise ValueError("label out of range or id repeated")
        self.ids[label] = row_id
        self.texts[label] = text
        self.meta[label] = meta
        self.label_of[row_id] = label

    def labels_of(self, ids: Sequence[str] | None, count: int) -> np.ndarray:
        """Labels of ``count`` ids, one per vector passed to ``tune(vectors=...)``; an InputError otherwise."""
        if ids is None or len(ids) != count:
            raise InputError("ids", "tune(vectors=...) needs one id per vector")
        try:
            return np.array([self.label_of[str(i)] for i in ids], dtype=np.int64)
        except KeyError as error:
            raise InputError("ids", f"id {error.args[0]!r} is not in the index") from None

    # ------------------------------------------------------------------ removals

    def labels_to_remove(self, ids: Sequence[str]) -> np.ndarray:
        """Labels of ``ids``, or an InputError naming the unknown ones (so that none is removed)."""
        missing = [i for i in ids if i not in self.label_of]
        if missing:
            shown = ", ".join(repr(i) for i in missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise InputError("ids", f"{len(missing)} id(s) not in the index: {shown}; nothing was removed")
        return np.array([self.label_of[i] for i in ids], dtype=np.int64)

    def drop(self, labels: np.ndarray, ids: Sequence[str]) -> None:
        """Forget the rows of ``labels`` (whose ids are ``ids``), leaving holes under their labels."""
        for label, old_id in zip(labels.tolist(), ids, strict=True):
            del self.label_of[old_id]
            self.ids[label] = None
            self.texts[label] = None
            self.meta[label] = None

    def mask(self, labels: Any) -> None:
        """Exclude ``labels`` from searches (HNSW keeps their vectors until it is rebuilt)."""
        self.deleted.update(int(label) for label in labels)
        self._selector = None

    def mask_holes(self) -> None:
        """Mask every removed label (an HNSW index read back from disk still holds their vectors)."""
        self.mask(label for label, i in enumerate(self.ids) if i is None)

    def exclusion_selector(self) -> Any:
        """A FAISS selector that passes every label but the masked ones (built once per change of the
        mask), or None when nothing is masked."""
        if not self.deleted:
            return None
        if self._selector is None:
            batch = faiss.IDSelectorBatch(np.fromiter(self.deleted, dtype=np.int64))
            self._selector = (batch, faiss.IDSelectorNot(batch))  # the Not refers to the batch: keep both
        return self._selector[1]

    # ------------------------------------------------------------------ search results

    def hits(self, scores: np.ndarray, labels: np.ndarray) -> list[list[Hit]]:
        """FAISS results as hits per query, skipping empty slots (-1) and removed rows."""
        results: list[list[Hit]] = []
        for score_row, label_row in zip(scores.tolist(), labels.tolist(), strict=True):
            hits = []
            for score, label in zip(score_row, label_row, strict=True):
                if label < 0 or self.ids[label] is None:
                    continue
                hits.append(self.hit(label, float(score)))
            results.append(hits)
        return results

    def found_ids(self, scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, list[list[str]]]:
        """FAISS results as (a float32 copy of the scores, NaN where a slot found no row; ids per query)."""
        ids: list[list[str]] = []
        scores = scores.astype(np.float32, copy=True)
        for row, label_row in enumerate(labels):
            found = []
            for col, label in enumerate(label_row.tolist()):
                hit_id = self.ids[label] if label >= 0 else None
                if hit_id is None:
                    scores[row, col] = np.nan
                else:
                    found.append(hit_id)
            ids.append(found)
        return scores, ids


# ---------------------------------------------------------------------- rows and their FAISS vectors


def add_rows(
    faiss_index: Any,
    kind: str,
    rows: RowTable,
    matrix: np.ndarray,
    ids: Sequence[str] | None,
    texts: Sequence[str | None] | None,
    metadata: Any,
) -> list[str]:
    """Add prepared vectors to ``faiss_index`` under the next labels of ``rows``, all rows checked before
    FAISS sees any (so a bad id or text count adds nothing); returns the new ids."""
    new_ids, text_rows, meta_rows = rows.new_columns(ids, texts, metadata, matrix.shape[0])
    start = rows.next_label
    # Everything is validated: from here on the addition cannot fail half-way for a user's reason.
    if kind == "hnsw":
        faiss_index.add(matrix)  # HNSW numbers its vectors itself, from ntotal up: the same labels
    else:
        faiss_index.add_with_ids(matrix, np.arange(start, start + len(new_ids), dtype=np.int64))
    rows.append(new_ids, text_rows, meta_rows)
    return new_ids


def add_positions(
    faiss_index: Any, kind: str, rows: RowTable, matrix: np.ndarray, columns: Columns, positions: np.ndarray
) -> None:
    """Add the rows at ``positions`` of a prepared matrix and its checked columns (:meth:`RowTable.new_columns`):
    a build that holds rows out for tuning adds the rest first and the held-out rows after."""
    ids, texts, meta = columns
    add_rows(
        faiss_index,
        kind,
        rows,
        np.ascontiguousarray(matrix[positions]),
        [ids[i] for i in positions],
        [texts[i] for i in positions],
        [meta[i] for i in positions],
    )


def remove_rows(faiss_index: Any, kind: str, rows: RowTable, ids: Iterable[str]) -> int:
    """Remove rows by id, all or nothing (an unknown id removes none); returns how many were removed.

    Flat and IVF drop the vectors in place; HNSW keeps them and masks their labels (see
    :func:`rebuild_without_removed`)."""
    wanted = list(dict.fromkeys(str(i) for i in ids))
    labels = rows.labels_to_remove(wanted)
    if not wanted:
        return 0
    if kind == "hnsw":
        rows.mask(labels)
    else:
        removed = faiss_index.remove_ids(faiss.IDSelectorBatch(labels))
        if removed != len(labels):
            raise TextSiameseError(f"FAISS removed {removed} of {len(labels)} vectors; index is inconsistent")
    rows.drop(labels, wanted)
    return len(wanted)


def rebuild_without_removed(faiss_index: Any, rows: RowTable, empty: Any) -> RowTable:
    """Fill ``empty`` (a new HNSW index of the same parameters) with the live vectors of ``faiss_index``,
    relabelled from 0, and return the rows under their new labels: HNSW cannot unlink graph nodes."""
    live = rows.live_labels()
    fresh = RowTable()
    if len(live):
        vectors = faiss_index.storage.reconstruct_n(0, faiss_index.ntotal)[live]
        add_rows(
            empty,
            "hnsw",
            fresh,
            np.ascontiguousarray(vectors),
            [rows.ids[label] for label in live],
            [rows.texts[label] for label in live],
            [rows.meta[label] for label in live],
        )
    return fresh
