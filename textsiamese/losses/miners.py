"""In-batch miners: pick the informative pairs or triplets of a labelled batch, as index tuples.

A miner looks at a batch of embeddings (N, D) and their class labels (N,) under ``torch.no_grad`` and returns
indices only; the loss then gathers the rows and computes its value with gradients. This is the
"loss(embeddings, labels, indices)" split of pytorch-metric-learning, kept to plain tensors::

    triplets = BatchHardMiner()(embeddings, labels)
    loss = TripletLoss()(*triplets.gather(embeddings))        # explicit-triplet loss on mined triplets
    pairs = HardPairMiner()(embeddings, labels)
    loss = ContrastiveLoss()(*pairs.gather(embeddings))       # pair loss on mined pairs

Two rows form a positive pair when they share a label (a row is never paired with itself), a negative pair
when their labels differ. Only the order of the distances matters to a miner, so every measure works,
similarities included (through ``Distance.as_distance``). Ties go to the lowest index.

Registry: ``MINERS`` maps name → class; ``get_miner(name, **kwargs)`` builds one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

import torch

from textsiamese.errors import ConfigError
from textsiamese.losses.labels import class_labels
from textsiamese.losses.registry import build
from textsiamese.model.distances import Distance, get_distance


@dataclass(frozen=True)
class TripletIndices:
    """Row indices of mined (anchor, positive, negative) triplets, each (T,) int64."""

    anchor: torch.Tensor
    positive: torch.Tensor
    negative: torch.Tensor

    def __len__(self) -> int:
        return int(self.anchor.shape[0])

    def gather(self, embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The (T, D) anchor, positive and negative embeddings, ready for an explicit-triplet loss."""
        return embeddings[self.anchor], embeddings[self.positive], embeddings[self.negative]


@dataclass(frozen=True)
class PairIndices:
    """Row indices of mined pairs (P,) and their labels (P,) float, 1 = same class."""

    left: torch.Tensor
    right: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.left.shape[0])

    def gather(self, embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The (P, D) left and right embeddings and the labels, ready for a pair loss."""
        return embeddings[self.left], embeddings[self.right], self.labels


def label_masks(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, N) boolean masks ``positive[i, j]`` (same label, i ≠ j) and ``negative[i, j]`` (labels differ)."""
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(labels.shape[0], dtype=torch.bool, device=labels.device)
    return same & ~eye, ~same


Mined = TypeVar("Mined", TripletIndices, PairIndices)


class Miner(Generic[Mined]):
    """Base class: ``miner(embeddings, labels)`` returns index tuples, computed without gradients."""

    name: ClassVar[str]

    def __init__(self, distance: str | Distance = "euclidean") -> None:
        self.distance = get_distance(distance)

    def _labels(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if embeddings.dim() != 2 or embeddings.shape[0] == 0:
            raise ValueError(
                f"{self.name}: embeddings must be a non-empty (N, D), got {tuple(embeddings.shape)}"
            )
        return class_labels(labels, embeddings.shape[0], loss=self.name).to(embeddings.device)

    def _distances(self, embeddings: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self._labels(embeddings, labels)
        d = self.distance.as_distance(self.distance.matrix(embeddings, embeddings))
        return d, y

    def __call__(self, embeddings: torch.Tensor, labels: torch.Tensor) -> Mined:
        with torch.no_grad():
            return self.mine(embeddings.detach(), labels)

    def mine(self, embeddings: torch.Tensor, labels: torch.Tensor) -> Mined:
        """The indices for ``embeddings`` (already detached); call the miner itself rather than this."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(distance={self.distance.name!r})"


class AllTripletsMiner(Miner[TripletIndices]):
    """Every valid triplet: a ≠ p with the same label, n with a different label (O(N³) indices)."""

    name = "all_triplets"

    def mine(self, embeddings: torch.Tensor, labels: torch.Tensor) -> TripletIndices:
        pos, neg = label_masks(self._labels(embeddings, labels))
        a, p, n = torch.nonzero(pos[:, :, None] & neg[:, None, :], as_tuple=True)
        return TripletIndices(a, p, n)


class BatchHardMiner(Miner[TripletIndices]):
    """Per anchor, its hardest positive (farthest) and hardest negative (closest): one triplet per anchor.

    Anchors without a positive or without a negative in the batch are skipped (Hermans et al. 2017).
    """

    name = "batch_hard"

    def mine(self, embeddings: torch.Tensor, labels: torch.Tensor) -> TripletIndices:
        d, y = self._distances(embeddings, labels)
        pos, neg = label_masks(y)
        valid = pos.any(1) & neg.any(1)
        hardest_p = d.masked_fill(~pos, -torch.inf).argmax(1)
        hardest_n = d.masked_fill(~neg, torch.inf).argmin(1)
        anchors = torch.nonzero(valid, as_tuple=True)[0]
        return TripletIndices(anchors, hardest_p[anchors], hardest_n[anchors])


class SemiHardMiner(Miner[TripletIndices]):
    """Per positive pair (a, p), a semi-hard negative: the closest negative still farther than p.

    Without ``margin`` (the FaceNet rule as implemented in TensorFlow's ``triplet_semihard_loss``): the
    negative with the smallest d(a, n) > d(a, p); when there is none, the farthest negative of a instead, so
    every positive pair with a negative yields one triplet. With ``margin``: only the strict semi-hard
    triplets, d(a, p) < d(a, n) < d(a, p) + margin, those that still give a loss (Schroff et al. 2015).
    """

    name = "semi_hard"

    def __init__(self, margin: float | None = None, distance: str | Distance = "euclidean") -> None:
        super().__init__(distance)
        if margin is not None and margin <= 0:
            raise ConfigError(f"{self.name}: margin must be > 0, got {margin}")
        self.margin = margin

    def mine(self, embeddings: torch.Tensor, labels: torch.Tensor) -> TripletIndices:
        d, y = self._distances(embeddings, labels)
        pos, neg = label_masks(y)
        a, p = torch.nonzero(pos & neg.any(1, keepdim=True), as_tuple=True)
        d_ap = d[a, p][:, None]  # (P, 1)
        d_an = d[a]  # (P, N)
        neg_a = neg[a]
        outside = neg_a & (d_an > d_ap)
        closest_outside = d_an.masked_fill(~outside, torch.inf).argmin(1)
        if self.margin is None:
            farthest = d_an.masked_fill(~neg_a, -torch.inf).argmax(1)
            n = torch.where(outside.any(1), closest_outside, farthest)
            return TripletIndices(a, p, n)
        keep = outside.any(1)
        chosen = d_an.gather(1, closest_outside[:, None])
        keep &= (chosen < d_ap + self.margin).squeeze(1)
        return TripletIndices(a[keep], p[keep], closest_outside[keep])

    def __repr__(self) -> str:
        return f"SemiHardMiner(margin={self.margin}, distance={self.distance.name!r})"


class HardPairMiner(Miner[PairIndices]):
    """Hard pairs among all in-batch pairs (i < j): positives farther than the closest negative pair,
    negatives closer than the farthest positive pair (the online-contrastive rule). With no negative pairs
    in the batch every positive pair is kept, and vice versa.
    """

    name = "hard_pairs"

    def mine(self, embeddings: torch.Tensor, labels: torch.Tensor) -> PairIndices:
        d, y = self._distances(embeddings, labels)
        pos, neg = label_masks(y)
        upper = torch.ones_like(pos).triu(1)
        pos, neg = pos & upper, neg & upper
        if bool(pos.any()) and bool(neg.any()):
            hard_pos = pos & (d > d[neg].min())
            hard_neg = neg & (d < d[pos].max())
        else:
            hard_pos, hard_neg = pos, neg
        i, j = torch.nonzero(hard_pos | hard_neg, as_tuple=True)
        return PairIndices(i, j, hard_pos[i, j].to(embeddings.dtype))


MINERS: dict[str, type[Miner[Any]]] = {
    cls.name: cls for cls in (AllTripletsMiner, BatchHardMiner, SemiHardMiner, HardPairMiner)
}


def get_miner(name: str, **kwargs: Any) -> Miner[Any]:
    """The miner registered under ``name``, built with ``kwargs``; unknown names/options raise ConfigError."""
    return build("miner", MINERS, name, **kwargs)
