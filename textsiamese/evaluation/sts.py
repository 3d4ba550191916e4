"""Semantic textual similarity: rank (Spearman) and linear (Pearson) correlation with gold scores."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from scipy.stats import pearsonr, spearmanr

from textsiamese.data import PairData
from textsiamese.errors import InputError
from textsiamese.model.distances import get_distance

if TYPE_CHECKING:
    from textsiamese.model import SiameseModel


def sts_correlations(
    predicted: Sequence[float] | np.ndarray, gold: Sequence[float] | np.ndarray
) -> dict[str, float]:
    """Spearman and Pearson correlation of ``predicted`` against ``gold`` (NaN-free inputs of equal length)."""
    if len(predicted) != len(gold):
        raise ValueError(f"{len(predicted)} predictions for {len(gold)} gold scores")
    if len(gold) < 2:
        raise ValueError("correlation needs at least two pairs")
    return {
        "spearman": float(spearmanr(predicted, gold).statistic),
        "pearson": float(pearsonr(predicted, gold).statistic),
    }


def evaluate_sts(
    model: SiameseModel,
    pairs: PairData,
    metrics: Sequence[str] = ("cosine",),
    batch_size: int | None = None,
    show_progress: bool = False,
) -> dict[str, float | int | str]:
    """Correlate the model's similarity with the gold ``scores`` of ``pairs``.

    With one metric the result is ``{"task": "sts", "spearman", "pearson", "n"}``; further metrics (e.g.
    ``euclidean``, ``manhattan``, ``dot``) add ``spearman_<metric>`` and ``pearson_<metric>``. Distances are
    negated first so that every correlation is positive when the model is right. Gold scores that are the
    model's own similarities (a ``textsiamese score`` output's ``score`` column read as gold) are refused
    with an :class:`InputError` naming the column, rather than reported as a correlation of 1.0.
    """
    if pairs.scores is None:
        raise InputError(pairs.source, "STS evaluation needs a 'score' column")
    a, b = model.encode_pairs(
        pairs.sentence1, pairs.sentence2, batch_size=batch_size, show_progress=show_progress
    )
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    result: dict[str, float | int | str] = {"task": "sts"}
    for position, name in enumerate(metrics):
        distance = get_distance(name)
        similarity = distance.pairwise(ta, tb)
        _refuse_own_predictions(pairs, similarity.numpy(), distance.name)
        closeness = -distance.as_distance(similarity).numpy()
        scores = sts_correlations(closeness, pairs.scores)
        suffix = "" if position == 0 else f"_{distance.name}"
        result.update({f"{key}{suffix}": value for key, value in scores.items()})
    if len(metrics) > 1:
        result["metric"] = get_distance(metrics[0]).name
    result["n"] = len(pairs)
    return result


def _refuse_own_predictions(pairs: PairData, predicted: np.ndarray, metric: str) -> None:
    """Refuse gold scores that are this model's own similarities, as ``textsiamese score`` writes them.

    A scored file keeps its real gold under its own name and gains a ``score`` column, which the STS reader
    then takes as gold: the correlation comes out as 1.0 and looks like a perfect model. Gold equal to the
    prediction on every pair (within bf16 noise and the 6 decimals score writes) is that mistake, never a
    real judgement, so it is an error naming the column instead of a number.
    """
    assert pairs.scores is not None
    gold = np.asarray(pairs.scores, dtype=np.float64)
    if not np.allclose(gold, predicted, rtol=5e-3, atol=5e-3):
        return
    others = f" (its other columns: {', '.join(pairs.extra)})" if pairs.extra else ""
    raise InputError(
        pairs.source,
        f"these gold scores are this model's own {metric} similarities, as 'textsiamese score' writes them, "
        f"so the correlation would be 1.0; name the real gold column with --columns score=COLUMN{others}",
        column=pairs.names.get("score", "score"),
    )
