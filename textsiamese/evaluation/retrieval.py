"""Retrieval: for each query, does the right document come first?

Input is labelled pairs: ``sentence1`` is a query, ``sentence2`` a document, label 1 = relevant. The corpus
is every distinct ``sentence2`` in the file; each distinct query is ranked against all of it. Queries with no
relevant document are skipped (counted in ``queries_without_relevant``). Queries are encoded with the model's
``query`` tower and documents with its ``document`` tower, so a pseudo-siamese model is evaluated as it is
used. Ties in score keep corpus order (first occurrence in the file).

Measures, averaged over queries (R = the query's relevant documents, rank 1 = first):

- ``recall@k``: |R ∩ top k| / |R|
- ``mrr@10``: 1 / rank of the first relevant document, 0 if it is below 10
- ``ndcg@10``: binary gains, ``sum_{relevant at rank r <= 10} 1/log2(r+1)`` over its ideal value
- ``map``: mean over R of the precision at each relevant document's rank (whole ranking)

Re-ranking (``evaluate_reranking``, WikiQA-style answer selection) ranks each query's *own* candidates, the
rows of the file that share its ``sentence1``, instead of the whole corpus. Only queries with at least one
relevant and one irrelevant candidate count (the usual WikiQA filter: with one class alone every order scores
the same); besides the measures above it reports ``mrr``, the reciprocal rank of the first relevant candidate
with no cut-off.
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from textsiamese.errors import InputError
from textsiamese.model.distances import get_distance

if TYPE_CHECKING:
    from textsiamese.data import PairData
    from textsiamese.model import SiameseModel

Result = dict[str, float | int | str]
KS = (1, 5, 10)


def query_metrics(ranking: np.ndarray, relevant: Collection[int], ks: Sequence[int] = KS) -> dict[str, float]:
    """The measures for one query, from its full ``ranking`` (document indices, best first)."""
    wanted = np.fromiter(relevant, dtype=np.int64)
    if wanted.size == 0:
        raise ValueError("a query needs at least one relevant document")
    positions = np.flatnonzero(np.isin(ranking, wanted))  # 0-based ranks, ascending
    total = wanted.size
    result = {f"recall@{k}": float((positions < k).sum()) / total for k in ks}
    result["mrr@10"] = 1.0 / (positions[0] + 1) if positions.size and positions[0] < 10 else 0.0
    gains = 1.0 / np.log2(positions[positions < 10] + 2)
    ideal = 1.0 / np.log2(np.arange(min(total, 10)) + 2)
    result["ndcg@10"] = float(gains.sum() / ideal.sum())
    result["map"] = float((np.arange(1, positions.size + 1) / (positions + 1)).sum() / total)
    return result


def retrieval_metrics(
    similarities: np.ndarray, relevant: Sequence[Collection[int]], ks: Sequence[int] = KS
) -> dict[str, float]:
    """Mean measures over queries from a (queries, documents) matrix where larger means closer."""
    if similarities.shape[0] != len(relevant):
        raise ValueError(f"{similarities.shape[0]} score rows for {len(relevant)} queries")
    rankings = np.argsort(-similarities, axis=1, kind="stable")
    per_query = [query_metrics(rankings[i], relevant[i], ks) for i in range(len(relevant))]
    return {key: float(np.mean([q[key] for q in per_query])) for key in per_query[0]}


@dataclass
class RetrievalSet:
    """Distinct queries, the corpus, and each query's relevant document indices."""

    queries: list[str]
    corpus: list[str]
    relevant: list[set[int]]
    without_relevant: int


def build_retrieval_set(pairs: PairData) -> RetrievalSet:
    """Group labelled pairs into queries, a corpus of distinct documents and relevance sets."""
    if pairs.labels is None:
        raise InputError(pairs.source, "retrieval needs a 0/1 'label' column (1 = relevant)")
    corpus_index: dict[str, int] = {}
    query_index: dict[str, int] = {}
    relevant: list[set[int]] = []
    for query, document, label in zip(pairs.sentence1, pairs.sentence2, pairs.labels, strict=True):
        d = corpus_index.setdefault(document, len(corpus_index))
        q = query_index.setdefault(query, len(query_index))
        if q == len(relevant):
            relevant.append(set())
        if label == 1:
            relevant[q].add(d)
    kept = [q for q in query_index if relevant[query_index[q]]]
    return RetrievalSet(
        queries=kept,
        corpus=list(corpus_index),
        relevant=[relevant[query_index[q]] for q in kept],
        without_relevant=len(query_index) - len(kept),
    )


def evaluate_retrieval(
    model: SiameseModel,
    pairs: PairData,
    metric: str | None = None,
    ks: Sequence[int] = KS,
    batch_size: int | None = None,
    chunk_size: int = 256,
    show_progress: bool = False,
) -> Result:
    """Rank the file's corpus for each query and average recall@k, MRR@10, nDCG@10 and MAP.

    The score matrix is computed ``chunk_size`` queries at a time, so memory stays at chunk × corpus.

    >>> evaluate_retrieval(model, read_pairs("../shared/data/wikiqa/WikiQA-train.txt", "wikiqa"))
    ... # doctest: +SKIP
    {'task': 'retrieval', 'recall@1': ..., 'mrr@10': ..., 'n': 873, ...}
    """
    data = build_retrieval_set(pairs)
    if not data.queries:
        raise InputError(pairs.source, "no query has a relevant document (label 1)")
    distance = get_distance(metric or model.similarity_metric)
    queries = model.encode(data.queries, role="query", batch_size=batch_size, show_progress=show_progress)
    documents = torch.from_numpy(
        model.encode(data.corpus, role="document", batch_size=batch_size, show_progress=show_progress)
    )
    sums: dict[str, float] = {}
    for start in range(0, len(data.queries), chunk_size):
        block = torch.from_numpy(queries[start : start + chunk_size])
        closeness = -distance.as_distance(distance.matrix(block, documents)).numpy()
        rankings = np.argsort(-closeness, axis=1, kind="stable")
        for row, relevant in zip(rankings, data.relevant[start : start + chunk_size], strict=True):
            for key, value in query_metrics(row, relevant, ks).items():
                sums[key] = sums.get(key, 0.0) + value
    result: Result = {"task": "retrieval", "metric": distance.name}
    result.update({key: value / len(data.queries) for key, value in sums.items()})
    result["corpus"] = len(data.corpus)
    result["queries_without_relevant"] = data.without_relevant
    result["n"] = len(data.queries)
    return result


def reranking_metrics(
    scores: Sequence[float] | np.ndarray,
    labels: Sequence[int] | np.ndarray,
    groups: Sequence[Hashable],
    ks: Sequence[int] = KS,
) -> dict[str, float | int]:
    """Mean measures over groups, each group's candidates ranked by ``scores`` (larger = closer).

    ``groups[i]`` names the query of candidate ``i``; ``labels[i]`` is 1 when it is relevant. Ties keep file
    order. Groups without both a relevant and an irrelevant candidate are left out and counted in
    ``queries_skipped``; ``n`` is the number of groups averaged.
    """
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels).astype(np.int64)
    if not s.shape == y.shape == (len(groups),):
        raise ValueError(f"{s.size} scores, {y.size} labels and {len(groups)} group names must agree")
    rows: dict[Hashable, list[int]] = {}
    for i, group in enumerate(groups):
        rows.setdefault(group, []).append(i)
    per_query = []
    for members in rows.values():
        group_labels = y[members]
        if group_labels.all() or not group_labels.any():
            continue
        ranking = np.argsort(-s[members], kind="stable")
        relevant = np.flatnonzero(group_labels)
        measures = query_metrics(ranking, relevant, ks)
        measures["mrr"] = 1.0 / (int(np.flatnonzero(np.isin(ranking, relevant))[0]) + 1)
        per_query.append(measures)
    result: dict[str, float | int] = {}
    if per_query:
        result.update({key: float(np.mean([q[key] for q in per_query])) for key in per_query[0]})
    result["queries_skipped"] = len(rows) - len(per_query)
    result["n"] = len(per_query)
    return result


def evaluate_reranking(
    model: SiameseModel,
    pairs: PairData,
    metric: str | None = None,
    ks: Sequence[int] = KS,
    batch_size: int | None = None,
    show_progress: bool = False,
) -> Result:
    """Re-rank each query's own candidates (rows sharing ``sentence1``) and average MAP, MRR, MRR@10,
    nDCG@10 and recall@k over the queries that have both relevant and irrelevant candidates.

    Questions are encoded once each with the ``query`` tower, candidates with the ``document`` tower.

    >>> evaluate_reranking(model, read_pairs("../shared/data/wikiqa/WikiQA-train.txt", "wikiqa"))
    ... # doctest: +SKIP
    {'task': 'reranking', 'metric': 'cosine', 'map': ..., 'mrr': ..., 'n': 857, ...}
    """
    if pairs.labels is None:
        raise InputError(pairs.source, "re-ranking needs a 0/1 'label' column (1 = relevant)")
    distance = get_distance(metric or model.similarity_metric)
    questions = list(dict.fromkeys(pairs.sentence1))
    position = {question: i for i, question in enumerate(questions)}
    query_vectors = model.encode(questions, role="query", batch_size=batch_size, show_progress=show_progress)
    candidates = model.encode(
        pairs.sentence2, role="document", batch_size=batch_size, show_progress=show_progress
    )
    rows = torch.from_numpy(query_vectors[[position[q] for q in pairs.sentence1]])
    closeness = -distance.as_distance(distance.pairwise(rows, torch.from_numpy(candidates))).numpy()
    measures = reranking_metrics(closeness, pairs.labels, pairs.sentence1, ks)
    if not measures["n"]:
        raise InputError(pairs.source, "no query has both relevant and irrelevant candidates")
    result: Result = {"task": "reranking", "metric": distance.name}
    result.update(measures)
    return result
