"""Mining from an index: hard negatives for (query, positive) pairs, and paraphrase pairs inside a corpus.

Hard negatives are corpus texts that score high for a query but are not its answer. Two failure modes of the
peers shape this module: several positives of one query becoming each other's negatives (so every known
positive of a query is excluded, not just the pair's own), and near-duplicates of the positive slipping in as
"negatives" (so anything scoring within ``margin`` of the positive, or above it, is dropped as a likely false
negative). Work is streamed in batches of queries: memory is O(batch x candidates), never O(queries x corpus).

Paraphrase mining finds every pair above a threshold with FAISS range search over chunks of the corpus, so
the N x N similarity matrix is never materialised.

>>> import numpy as np
>>> from textsiamese.search import Index
>>> corpus = Index.from_vectors(np.eye(4, dtype="float32"), texts=["a", "b", "c", "d"], kind="flat")
>>> rows = mine_hard_negatives(corpus, ["q"], ["a"], num_negatives=1, margin=0.0,
...     anchor_vectors=np.array([[1.0, 0.5, 0.2, 0.0]], dtype="float32"),
...     positive_vectors=np.array([[1.0, 0, 0, 0]], dtype="float32"))
>>> [(r.anchor, r.positive, r.negatives) for r in rows]
[('q', 'a', ['b'])]
"""

from __future__ import annotations

import csv
import json
import os
import sys
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import faiss
import numpy as np

from textsiamese.errors import ConfigError, InputError
from textsiamese.search.index import Encoder, Index


@dataclass(frozen=True)
class MinedRow:
    """One training row: the anchor, its positive and ``num_negatives`` hard negatives (hardest first)."""

    anchor: str
    positive: str
    negatives: list[str]
    positive_score: float
    negative_scores: list[float]


@dataclass
class MiningStats:
    """Counts from a mining run: rows written and pairs skipped for lack of negatives below the margin."""

    pairs: int = 0
    rows: int = 0
    skipped: int = 0


def _key(text: str) -> str:
    """Texts compare equal when they differ only in case and spacing: such a candidate is the positive."""
    return " ".join(text.split()).casefold()


def mine_hard_negatives(
    index: Index,
    anchors: Sequence[str],
    positives: Sequence[str],
    *,
    model: Encoder | None = None,
    num_negatives: int = 5,
    margin: float = 0.05,
    batch_size: int = 1024,
    encode_batch_size: int | None = None,
    anchor_vectors: Any = None,
    positive_vectors: Any = None,
    stats: MiningStats | None = None,
) -> Iterator[MinedRow]:
    """Yield one :class:`MinedRow` per (anchor, positive) pair, streaming ``batch_size`` pairs at a time
    (encoded ``encode_batch_size`` texts a forward pass: large CPU batches are slower, not faster).

    Candidates come from ``index`` (which must hold texts). A candidate is dropped when its text is any known
    positive of the same anchor (all pairs sharing the anchor), the anchor itself, or scores within ``margin``
    of the positive or above it (``score >= positive_score - margin`` for similarities; for euclidean
    distance the mirror). Anchors are encoded with the query tower, positives with the document tower (or
    pass ``anchor_vectors`` / ``positive_vectors``). A pair for which fewer than ``num_negatives`` candidates
    survive, even after widening the search to the whole index, is skipped and counted in ``stats``.

    (One generator on purpose: each chunk's vectors, its exclusion sets and its search results live only
    while the chunk is mined, which keeps memory bounded; splitting it would pass all three around.)
    """
    if len(anchors) != len(positives):
        raise InputError("pairs", f"{len(anchors)} anchors for {len(positives)} positives")
    if num_negatives < 1:
        raise ConfigError(f"num_negatives must be at least 1, got {num_negatives}")
    if len(index) == 0:
        raise ConfigError("the corpus index is empty")
    stats = stats if stats is not None else MiningStats()
    known: dict[str, set[str]] = {}
    for anchor, positive in zip(anchors, positives, strict=True):
        known.setdefault(anchor, set()).add(_key(positive))
    encoder = None if anchor_vectors is not None and positive_vectors is not None else index._encoder(model)
    similarity = index.higher_is_closer

    # Batches of pairs; each batch searches its distinct anchors once.
    for start in range(0, len(anchors), batch_size):
        batch_anchors = list(anchors[start : start + batch_size])
        batch_positives = list(positives[start : start + batch_size])
        if anchor_vectors is not None:
            a_vecs = np.asarray(anchor_vectors[start : start + batch_size], dtype=np.float32)
        else:
            assert encoder is not None
            a_vecs = encoder.encode(batch_anchors, role="query", batch_size=encode_batch_size)
        if positive_vectors is not None:
            p_vecs = np.asarray(positive_vectors[start : start + batch_size], dtype=np.float32)
        else:
            assert encoder is not None
            p_vecs = encoder.encode(batch_positives, role="document", batch_size=encode_batch_size)
        a_vecs, p_vecs = index._prepare(a_vecs), index._prepare(p_vecs)
        if index.metric == "euclidean":
            positive_scores = np.linalg.norm(a_vecs - p_vecs, axis=1)
        else:
            positive_scores = (a_vecs * p_vecs).sum(axis=1)

        most_known = max(len(known[a]) for a in batch_anchors)
        k = min(len(index), 2 * num_negatives + most_known + 10)
        scores, ids = index.search_vectors(a_vecs, k)
        for row, (anchor, positive) in enumerate(zip(batch_anchors, batch_positives, strict=True)):
            stats.pairs += 1
            limit = (
                float(positive_scores[row]) - margin if similarity else float(positive_scores[row]) + margin
            )
            row_k, row_scores, row_ids = k, scores[row], ids[row]
            while True:
                picked = _pick(
                    index, anchor, known[anchor], row_scores, row_ids, limit, similarity, num_negatives
                )
                if len(picked) == num_negatives or row_k >= len(index):
                    break
                row_k = min(len(index), row_k * 4)
                more_scores, more_ids = index.search_vectors(a_vecs[row : row + 1], row_k)
                row_scores, row_ids = more_scores[0], more_ids[0]
            if len(picked) < num_negatives:
                stats.skipped += 1
                continue
            stats.rows += 1
            yield MinedRow(
                anchor=anchor,
                positive=positive,
                negatives=[text for text, _ in picked],
                positive_score=float(positive_scores[row]),
                negative_scores=[score for _, score in picked],
            )
    if stats.skipped:
        warnings.warn(
            f"{stats.skipped} of {stats.pairs} pairs skipped: fewer than {num_negatives} candidates scored "
            f"outside the margin {margin} of their positive",
            stacklevel=2,
        )


def _pick(
    index: Index,
    anchor: str,
    known: set[str],
    scores: np.ndarray,
    ids: list[str],
    limit: float,
    similarity: bool,
    wanted: int,
) -> list[tuple[str, float]]:
    """The first ``wanted`` candidates (best first): not a positive, not the anchor, outside the margin."""
    picked: list[tuple[str, float]] = []
    seen: set[str] = set()
    anchor_key = _key(anchor)
    for score, hit_id in zip(scores.tolist(), ids, strict=False):
        if (score >= limit) if similarity else (score <= limit):
            continue
        text = index.get(hit_id).text
        if text is None:
            raise ConfigError("mining needs an index that stores texts (built with Index.build or texts=)")
        key = _key(text)
        if key in known or key == anchor_key or key in seen:
            continue
        seen.add(key)
        picked.append((text, float(score)))
        if len(picked) == wanted:
            break
    return picked


def write_mined(
    rows: Iterable[MinedRow],
    path: str | os.PathLike[str] | None,
    num_negatives: int,
    *,
    with_scores: bool = False,
) -> int:
    """Write rows as ``anchor, positive, negative_1..N`` to CSV, TSV (by suffix) or JSON lines (``.jsonl``).

    ``None`` or ``-`` writes CSV to stdout. A file appears atomically once complete (temp name, then
    ``os.replace``), so an interrupted run never leaves half a training set. Returns the row count.
    """
    columns = ["anchor", "positive", *[f"negative_{i}" for i in range(1, num_negatives + 1)]]
    if with_scores:
        columns += ["positive_score", *[f"negative_{i}_score" for i in range(1, num_negatives + 1)]]
    target = None if path is None or str(path) == "-" else Path(path)
    if target is None:
        return _write_rows(rows, sys.stdout, columns, "csv", with_scores)
    style = {".jsonl": "jsonl", ".tsv": "tsv"}.get(target.suffix, "csv")
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as handle:
            count = _write_rows(rows, handle, columns, style, with_scores)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return count


def _write_rows(
    rows: Iterable[MinedRow], handle: TextIO, columns: list[str], style: str, with_scores: bool
) -> int:
    writer = None if style == "jsonl" else csv.writer(handle, delimiter="\t" if style == "tsv" else ",")
    if writer is not None:
        writer.writerow(columns)
    count = 0
    for row in rows:
        values: list[Any] = [row.anchor, row.positive, *row.negatives]
        if with_scores:
            values += [round(row.positive_score, 6), *[round(s, 6) for s in row.negative_scores]]
        if writer is None:
            handle.write(json.dumps(dict(zip(columns, values, strict=True)), ensure_ascii=False) + "\n")
        else:
            writer.writerow(values)
        count += 1
    return count


# ---------------------------------------------------------------------------------------------- paraphrases


def paraphrase_pairs(
    vectors: Any,
    threshold: float = 0.8,
    *,
    metric: str = "cosine",
    chunk_size: int = 4096,
    kind: str = "flat",
    max_neighbors: int = 100,
) -> list[tuple[int, int, float]]:
    """All pairs (i, j), i < j, of rows scoring at least ``threshold``, best first, as (i, j, score).

    ``kind="flat"`` is exact: FAISS range search of each chunk of ``chunk_size`` rows against the corpus, so
    memory is the corpus plus one chunk's matches, never N x N (time is still O(N²·D)). Another kind
    (``hnsw``, ``ivf``) is approximate and scales further: each row's ``max_neighbors`` nearest neighbours
    from an index tuned to recall 0.95, kept where they reach the threshold.
    """
    if metric not in ("cosine", "dot"):
        raise ConfigError("paraphrase mining needs a similarity metric: cosine or dot")
    matrix = np.array(vectors, dtype=np.float32, copy=True)
    if matrix.ndim != 2:
        raise InputError("vectors", f"expected a (N, D) matrix, got shape {matrix.shape}")
    count = matrix.shape[0]
    if count < 2:
        return []
    if metric == "cosine":
        faiss.normalize_L2(matrix)
    found: dict[tuple[int, int], float] = {}
    if kind == "flat":
        flat = faiss.IndexFlatIP(matrix.shape[1])
        flat.add(matrix)
        # FAISS keeps scores strictly above the radius: search a hair lower, then apply >= exactly.
        radius = float(np.nextafter(np.float32(threshold), np.float32(-np.inf)))
        for start in range(0, count, chunk_size):
            chunk = matrix[start : start + chunk_size]
            limits, scores, labels = flat.range_search(chunk, radius)
            for row in range(chunk.shape[0]):
                i = start + row
                for score, j in zip(
                    scores[limits[row] : limits[row + 1]], labels[limits[row] : limits[row + 1]], strict=True
                ):
                    if j > i and score >= threshold:
                        found[(i, int(j))] = float(score)
    else:
        index = Index.from_vectors(matrix, kind=kind, metric=metric, recall_target=0.95)
        k = min(count, max_neighbors + 1)
        for start in range(0, count, chunk_size):
            scores, ids = index.search_vectors(matrix[start : start + chunk_size], k)
            for row, row_ids in enumerate(ids):
                i = start + row
                for score, hit in zip(scores[row].tolist(), row_ids, strict=False):
                    j = int(hit)
                    if j != i and score >= threshold:
                        found[(min(i, j), max(i, j))] = float(score)
    return sorted(((i, j, s) for (i, j), s in found.items()), key=lambda t: (-t[2], t[0], t[1]))


def mine_paraphrases(
    model: Encoder,
    texts: Sequence[str],
    ids: Sequence[str] | None = None,
    threshold: float = 0.8,
    *,
    batch_size: int | None = None,
    show_progress: bool = False,
    **kwargs: Any,
) -> list[tuple[str, str, float]]:
    """Encode ``texts`` (document tower) and return (id_1, id_2, score) pairs at or above ``threshold``."""
    texts = list(texts)
    ids = [str(i) for i in range(len(texts))] if ids is None else [str(i) for i in ids]
    vectors = model.encode(texts, role="document", batch_size=batch_size, show_progress=show_progress)
    return [(ids[i], ids[j], score) for i, j, score in paraphrase_pairs(vectors, threshold, **kwargs)]
