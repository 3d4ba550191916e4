"""Losses: pure functions of embeddings, one registry shared by the Python API, recipes and the CLI.

This room holds what turns a batch of embeddings into a training signal: the losses (``pairs``,
``triplets``, ``ranking`` on ``base``), the in-batch ``miners`` that pick their informative pairs and
triplets, the ``labels`` checks that enforce the convention below, and ``registry``, the name-to-class
builder losses and miners share.

A loss is an ``nn.Module`` whose forward takes embeddings (never the model) and returns a scalar. Its class
attribute ``family`` tells the trainer which batch shape it takes:

========== ======================================= =====================================================
family     forward                                 losses
========== ======================================= =====================================================
pair       ``(a, b, labels)``                      contrastive, online_contrastive, energy, logistic,
                                                   cosine_similarity, cosent, angle, circle
triplet    ``(anchor, positive, negative)``        triplet
labelled   ``(embeddings, labels)``                batch_all_triplet, batch_hard_triplet,
                                                   batch_semi_hard_triplet
ranking    ``(queries, documents)``                multiple_negatives_ranking
========== ======================================= =====================================================

Label convention (the one place it is written down)
---------------------------------------------------
* **Binary pair labels: 1 = similar (same, duplicate, positive), 0 = dissimilar.** Accepted as int, float or
  bool tensors; any other value (2, 0.5, −1, NaN) raises ``textsiamese.losses.labels.LabelError`` (a
  ``ConfigError``) instead of being used as a weight. Used by contrastive, online_contrastive, energy,
  logistic and circle.
* **Data that uses 0 = same** (the 2005 face-verification paper of Chopra, Hadsell & LeCun, and datasets
  built after it) is flipped once, at the edge, when it is read: ``y = 1 − y``. The file readers take
  ``label_convention="0=similar"``; tensors already in memory go through
  ``textsiamese.losses.labels.binary_labels(labels, convention="0=similar")``. Nothing inside the library
  sees the other convention.
* **Similarity scores** are floats, higher = more similar. ``cosine_similarity`` expects them in [0, 1]
  (``score_range=(lo, hi)`` rescales, e.g. (0, 5) for STS-B); ``cosent`` uses only their order.
* **Class labels** (labelled family, miners) are whole-number class ids; equal ids = same class.
* **Ranking** needs no labels: document i is the positive of query i.

Distances: losses with a ``distance=`` option accept any name of ``textsiamese.model.distances.DISTANCES`` (or a
``Distance``). Margin losses read the non-negative dissimilarity (cosine as ``1 − cos``) and refuse ``dot``.

>>> import torch
>>> loss = get_loss("contrastive", margin=0.5, distance="cosine")
>>> loss.family
'pair'
>>> a, b = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])  # cosine distance 1 ≥ margin
>>> float(loss(a, b, torch.tensor([0])))
0.0
"""

from __future__ import annotations

from typing import Any

from textsiamese.errors import ConfigError
from textsiamese.losses.angle import AnglELoss
from textsiamese.losses.base import FAMILIES, SiameseLoss
from textsiamese.losses.labels import CONVENTIONS, LabelError, binary_labels, class_labels, float_scores
from textsiamese.losses.miners import (
    MINERS,
    AllTripletsMiner,
    BatchHardMiner,
    HardPairMiner,
    Miner,
    PairIndices,
    SemiHardMiner,
    TripletIndices,
    get_miner,
)
from textsiamese.losses.pairs import (
    CircleLoss,
    ContrastiveLoss,
    CoSENTLoss,
    CosineSimilarityLoss,
    EnergyLoss,
    LogisticLoss,
    OnlineContrastiveLoss,
)
from textsiamese.losses.ranking import MultipleNegativesRankingLoss
from textsiamese.losses.registry import build
from textsiamese.losses.triplets import (
    BatchAllTripletLoss,
    BatchHardTripletLoss,
    BatchSemiHardTripletLoss,
    TripletLoss,
)

LOSSES: dict[str, type[SiameseLoss]] = {
    cls.name: cls
    for cls in (
        ContrastiveLoss,
        OnlineContrastiveLoss,
        EnergyLoss,
        LogisticLoss,
        CosineSimilarityLoss,
        CoSENTLoss,
        AnglELoss,
        CircleLoss,
        TripletLoss,
        BatchAllTripletLoss,
        BatchHardTripletLoss,
        BatchSemiHardTripletLoss,
        MultipleNegativesRankingLoss,
    )
}


def get_loss(name: str, **kwargs: Any) -> SiameseLoss:
    """Build the loss registered under ``name`` with ``kwargs``; unknown names or options raise ConfigError.

    >>> get_loss("triplet", margin=0.2, distance="cosine")
    TripletLoss(margin=0.2, distance=cosine)
    """
    return build("loss", LOSSES, name, **kwargs)


__all__ = [
    "CONVENTIONS",
    "FAMILIES",
    "LOSSES",
    "MINERS",
    "AllTripletsMiner",
    "AnglELoss",
    "BatchAllTripletLoss",
    "BatchHardMiner",
    "BatchHardTripletLoss",
    "BatchSemiHardTripletLoss",
    "CircleLoss",
    "CoSENTLoss",
    "ConfigError",
    "ContrastiveLoss",
    "CosineSimilarityLoss",
    "EnergyLoss",
    "HardPairMiner",
    "LabelError",
    "LogisticLoss",
    "Miner",
    "MultipleNegativesRankingLoss",
    "OnlineContrastiveLoss",
    "PairIndices",
    "SemiHardMiner",
    "SiameseLoss",
    "TripletIndices",
    "TripletLoss",
    "binary_labels",
    "class_labels",
    "float_scores",
    "get_loss",
    "get_miner",
]
