"""Dev-split evaluators the trainer calls: STS correlation, pair classification, retrieval, re-ranking.

Each returns a flat dict of floats (fractions) plus ``n``. STS uses ``textsiamese.evaluation.evaluate_sts``;
the others are small and kept here so that the recipes can report their dev figures (the evaluation package
may grow its own versions; these compute the standard definitions):

* ``pair_classification``: cosine similarity of each pair, the threshold that maximises accuracy on the
  given pairs, and accuracy, precision, recall and F1 at that threshold (plus the best F1 over thresholds).
* ``retrieval``: each query's relevant document is its own pair partner; the corpus is all distinct
  documents of the split. recall@1, recall@10, MRR@10.
* ``reranking``: candidates grouped by query (WikiQA); MAP and MRR over queries with at least one relevant
  and one irrelevant candidate (the usual WikiQA filter).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from textsiamese.data import PairData
from textsiamese.distances import get_distance
from textsiamese.errors import ConfigError, InputError
from textsiamese.evaluation import evaluate_sts
from textsiamese.model import SiameseModel

TASKS = ("sts", "pair_classification", "retrieval", "reranking")
DEFAULT_METRIC = {
    "sts": "spearman",
    "pair_classification": "accuracy",
    "retrieval": "mrr@10",
    "reranking": "map",
}


def make_evaluator(
    task: str, pairs: PairData, batch_size: int = 64
) -> Callable[[SiameseModel], dict[str, Any]]:
    """The evaluator for ``task`` on the dev ``pairs``."""
    if task == "sts":
        return lambda model: evaluate_sts(model, pairs, batch_size=batch_size)
    if task == "pair_classification":
        return lambda model: pair_classification(model, pairs, batch_size)
    if task == "retrieval":
        return lambda model: retrieval(model, pairs, batch_size)
    if task == "reranking":
        return lambda model: reranking(model, pairs, batch_size)
    raise ConfigError(f"unknown eval task {task!r}; choose one of {', '.join(TASKS)}")


def _similarities(model: SiameseModel, pairs: PairData, batch_size: int) -> np.ndarray:
    a, b = model.encode_pairs(pairs.sentence1, pairs.sentence2, batch_size=batch_size)
    closeness = get_distance(model.similarity_metric)
    values = closeness.as_similarity(closeness.pairwise(torch.from_numpy(a), torch.from_numpy(b)))
    return values.numpy().astype(np.float64)


def best_threshold(scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Accuracy-maximising threshold (predict similar when score ≥ threshold) and the figures there."""
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order]
    positives = y.sum()
    n = len(y)
    tp = np.cumsum(y)  # predicting the first k+1 as similar
    fp = np.cumsum(1 - y)
    # Only cut between distinct scores.
    last_of_run = np.r_[s[1:] != s[:-1], True]
    correct = tp + (n - positives - fp)
    accuracy = np.where(last_of_run, correct / n, -1)
    k = int(np.argmax(accuracy))
    all_negative = (n - positives) / n
    precision_all = np.divide(tp, tp + fp)
    recall_all = tp / max(positives, 1)
    f1_all = np.where(
        last_of_run & (tp > 0),
        2 * precision_all * recall_all / np.maximum(precision_all + recall_all, 1e-12),
        0,
    )
    if all_negative > accuracy[k]:
        threshold, acc, p, r, f1 = float(s[0]) + 1e-6, float(all_negative), 0.0, 0.0, 0.0
    else:
        threshold = float((s[k] + s[k + 1]) / 2) if k + 1 < n else float(s[k]) - 1e-6
        acc, p, r = float(accuracy[k]), float(precision_all[k]), float(recall_all[k])
        f1 = float(f1_all[k])
    return {
        "accuracy": acc,
        "f1": f1,
        "precision": p,
        "recall": r,
        "threshold": threshold,
        "best_f1": float(f1_all.max()),
    }


def pair_classification(model: SiameseModel, pairs: PairData, batch_size: int = 64) -> dict[str, Any]:
    if pairs.labels is None:
        raise InputError(pairs.source, "pair classification needs 0/1 labels")
    scores = _similarities(model, pairs, batch_size)
    result: dict[str, Any] = {"task": "pair_classification"}
    result.update(best_threshold(scores, np.asarray(pairs.labels, dtype=np.float64)))
    result["n"] = len(pairs)
    return result


def retrieval(model: SiameseModel, pairs: PairData, batch_size: int = 64) -> dict[str, Any]:
    documents = sorted(set(pairs.sentence2))
    position = {text: i for i, text in enumerate(documents)}
    queries = model.encode(pairs.sentence1, role="query", batch_size=batch_size)
    corpus = model.encode(documents, role="document", batch_size=batch_size)
    distance = get_distance(model.similarity_metric)
    sim = distance.as_similarity(distance.matrix(torch.from_numpy(queries), torch.from_numpy(corpus)))
    target = torch.tensor([position[t] for t in pairs.sentence2])
    own = sim[torch.arange(len(target)), target]
    rank = (sim > own[:, None]).sum(dim=1) + 1  # ties count in the query's favour
    rank_np = rank.numpy()
    return {
        "task": "retrieval",
        "recall@1": float((rank_np <= 1).mean()),
        "recall@10": float((rank_np <= 10).mean()),
        "mrr@10": float(np.where(rank_np <= 10, 1.0 / rank_np, 0.0).mean()),
        "n": len(pairs),
        "corpus": len(documents),
    }


def reranking(model: SiameseModel, pairs: PairData, batch_size: int = 64) -> dict[str, Any]:
    if pairs.labels is None:
        raise InputError(pairs.source, "re-ranking needs 0/1 labels")
    scores = _similarities(model, pairs, batch_size)
    groups: dict[str, list[int]] = {}
    for i, question in enumerate(pairs.sentence1):
        groups.setdefault(question, []).append(i)
    aps, rrs = [], []
    for rows in groups.values():
        labels = np.array([pairs.labels[i] for i in rows])
        if labels.sum() == 0 or labels.sum() == len(labels):
            continue
        order = np.argsort(-scores[rows], kind="stable")
        ranked = labels[order]
        hits = np.cumsum(ranked)
        precision = hits / np.arange(1, len(ranked) + 1)
        aps.append(float((precision * ranked).sum() / ranked.sum()))
        rrs.append(1.0 / (int(np.argmax(ranked)) + 1))
    if not aps:
        raise InputError(pairs.source, "no query has both relevant and irrelevant candidates")
    return {"task": "reranking", "map": float(np.mean(aps)), "mrr": float(np.mean(rrs)), "n": len(aps)}
