"""Triplets: is the anchor closer to its positive than to its negative?

``accuracy`` is the fraction of (anchor, positive, negative) rows with d(a, p) < d(a, n) under the chosen
metric (a tie counts as a miss). Anchors are encoded with the ``query`` tower, positives and negatives with
the ``document`` tower. ``mean_margin`` is the mean of d(a, n) - d(a, p) (in distance units; for a
similarity, d = -similarity). Further hard-negative columns (``negative_2`` …) are not used.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from textsiamese.model.distances import get_distance

if TYPE_CHECKING:
    from textsiamese.data import TripletData
    from textsiamese.model import SiameseModel

Result = dict[str, float | int | str]


def triplet_accuracy(
    d_positive: Sequence[float] | np.ndarray, d_negative: Sequence[float] | np.ndarray
) -> float:
    """Fraction of rows with ``d_positive < d_negative`` (distances: smaller is closer)."""
    p, n = np.asarray(d_positive, dtype=np.float64), np.asarray(d_negative, dtype=np.float64)
    if p.shape != n.shape or p.size == 0:
        raise ValueError("need equally many, and at least one, positive and negative distances")
    return float((p < n).mean())


def triplet_distances(
    model: SiameseModel,
    triplets: TripletData,
    metric: str | None = None,
    batch_size: int | None = None,
    show_progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """d(anchor, positive) and d(anchor, negative) per row, as distances (similarities negated)."""
    distance = get_distance(metric or model.similarity_metric)
    anchors = model.encode(triplets.anchor, role="query", batch_size=batch_size, show_progress=show_progress)
    if model.is_shared:
        both = model.encode(
            [*triplets.positive, *triplets.negative], batch_size=batch_size, show_progress=show_progress
        )
        positives, negatives = both[: len(triplets)], both[len(triplets) :]
    else:
        positives = model.encode(triplets.positive, role="document", batch_size=batch_size)
        negatives = model.encode(triplets.negative, role="document", batch_size=batch_size)
    ta = torch.from_numpy(anchors)
    d_p = distance.as_distance(distance.pairwise(ta, torch.from_numpy(positives))).double().numpy()
    d_n = distance.as_distance(distance.pairwise(ta, torch.from_numpy(negatives))).double().numpy()
    return d_p, d_n


def evaluate_triplets(
    model: SiameseModel,
    triplets: TripletData,
    metric: str | None = None,
    batch_size: int | None = None,
    show_progress: bool = False,
) -> Result:
    """``{"task": "triplet", "accuracy", "mean_margin", "metric", "n"}``.

    >>> evaluate_triplets(model, read_triplets("nli.jsonl", format="snli"))   # doctest: +SKIP
    """
    d_p, d_n = triplet_distances(model, triplets, metric, batch_size, show_progress)
    return triplet_result(d_p, d_n, get_distance(metric or model.similarity_metric).name)


def triplet_result(d_positive: np.ndarray, d_negative: np.ndarray, metric: str) -> Result:
    """The result dict from per-row distances."""
    return {
        "task": "triplet",
        "metric": metric,
        "accuracy": triplet_accuracy(d_positive, d_negative),
        "mean_margin": float((np.asarray(d_negative) - np.asarray(d_positive)).mean()),
        "n": len(d_positive),
    }
