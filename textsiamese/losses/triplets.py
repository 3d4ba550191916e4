"""Triplet losses: explicit triplets ``forward(anchor, positive, negative)`` and triplets mined inside a
labelled batch ``forward(embeddings, labels)``.

Every triplet loss reads ``d = distance.as_distance(distance.pairwise(...))``: distances as they are and
similarities negated, so ``d(a, p) − d(a, n)`` is the same for cosine whether written with ``−cos`` or
``1 − cos``, and any registered measure (cosine, dot, euclidean, squared_euclidean, manhattan) can be swapped
in by name with no other change.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F

from textsiamese.errors import ConfigError
from textsiamese.losses.base import SiameseLoss, resolve_distance
from textsiamese.losses.labels import LabelError
from textsiamese.losses.miners import AllTripletsMiner, BatchHardMiner, SemiHardMiner, TripletIndices
from textsiamese.model.distances import Distance


def _check_margin(margin: float, loss: str) -> float:
    if margin < 0:
        raise ConfigError(f"{loss}: margin must be >= 0, got {margin}")
    return float(margin)


class TripletLoss(SiameseLoss):
    """Triplet loss on explicit (anchor, positive, negative) triplets.

    ``L = mean_i max(d(a_i, p_i) − d(a_i, n_i) + α, 0)``: the negative must be at least α farther from the
    anchor than the positive. d is ``distance`` (euclidean by default), see the module docstring.

    Reference: Schroff, Kalenichenko & Philbin, "FaceNet", CVPR 2015.

    Args:
        margin: α (default 1.0; on unit-normalised embeddings with euclidean, FaceNet used 0.2).
        distance: any registered name or ``Distance``.

    Inputs: ``anchor``, ``positive``, ``negative``, each (N, D).

    Example:
        >>> import torch
        >>> loss = TripletLoss(margin=1.0)
        >>> a, p, n = torch.zeros(1, 2), torch.tensor([[0.0, 1.0]]), torch.tensor([[1.5, 0.0]])
        >>> round(float(loss(a, p, n)), 4)  # max(1 − 1.5 + 1, 0)
        0.5
    """

    family: ClassVar[str] = "triplet"
    name: ClassVar[str] = "triplet"

    def __init__(self, margin: float = 1.0, distance: str | Distance = "euclidean") -> None:
        super().__init__()
        self.margin = _check_margin(margin, self.name)
        self.distance = resolve_distance(distance, loss=self.name)

    def per_triplet(
        self, anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor
    ) -> torch.Tensor:
        """The (N,) unreduced losses."""
        dist = self.distance
        d_ap = dist.as_distance(dist.pairwise(anchor, positive))
        d_an = dist.as_distance(dist.pairwise(anchor, negative))
        return F.relu(d_ap - d_an + self.margin)

    def forward(self, anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
        if anchor.dim() != 2 or anchor.shape != positive.shape or anchor.shape != negative.shape:
            raise ValueError(
                f"{self.name}: anchor, positive and negative must be (N, D) of one shape, got "
                f"{tuple(anchor.shape)}, {tuple(positive.shape)}, {tuple(negative.shape)}"
            )
        if anchor.shape[0] == 0:
            raise ValueError(f"{self.name}: empty batch")
        return self.per_triplet(anchor, positive, negative).mean()

    def extra_repr(self) -> str:
        return f"margin={self.margin}, distance={self.distance.name}"


class _MinedTripletLoss(SiameseLoss):
    """Shared body: mine triplet indices without gradients, then score the gathered triplets exactly."""

    family: ClassVar[str] = "labelled"
    label_kind: ClassVar[str] = "classes"

    def __init__(self, margin: float, distance: str | Distance) -> None:
        super().__init__()
        self.margin = _check_margin(margin, self.name)
        self.distance = resolve_distance(distance, loss=self.name)

    def mine(self, embeddings: torch.Tensor, labels: torch.Tensor) -> TripletIndices:
        raise NotImplementedError

    def _triplet_gaps(self, embeddings: torch.Tensor, t: TripletIndices) -> torch.Tensor:
        """d(a, p) − d(a, n) per mined triplet, with gradients."""
        a, p, n = t.gather(embeddings)
        dist = self.distance
        return dist.as_distance(dist.pairwise(a, p)) - dist.as_distance(dist.pairwise(a, n))

    def _validate(self, embeddings: torch.Tensor, labels: torch.Tensor) -> None:
        if embeddings.dim() != 2 or embeddings.shape[0] == 0:
            raise ValueError(
                f"{self.name}: embeddings must be a non-empty (N, D), got {tuple(embeddings.shape)}"
            )
        if labels.shape != (embeddings.shape[0],):
            raise LabelError(
                f"{self.name}: labels must have shape ({embeddings.shape[0]},), got {tuple(labels.shape)}"
            )
        if self.validate_labels:
            self.check_labels(labels)

    def extra_repr(self) -> str:
        return f"margin={self.margin}, distance={self.distance.name}"


class BatchAllTripletLoss(_MinedTripletLoss):
    """Triplet loss over every valid triplet of a labelled batch.

    For all (a, p, n) with label(a) = label(p), a ≠ p, label(n) ≠ label(a):
    ``ℓ = max(d(a, p) − d(a, n) + α, 0)``. ``average="nonzero"`` (default) averages over the triplets with
    ℓ > 0, Hermans et al.'s "batch all ≠ 0" (easy triplets would otherwise dilute the mean towards 0 as
    training goes on); ``average="all"`` averages over all valid triplets. 0 when none is valid or active.

    Reference: Hermans, Beyer & Leibe, "In Defense of the Triplet Loss for Person Re-Identification", 2017.

    Inputs: ``embeddings`` (N, D); ``labels`` (N,) class ids (ideally P classes × K items per batch).

    Example:
        >>> import torch
        >>> loss = BatchAllTripletLoss(margin=1.0)
        >>> e = torch.tensor([[0.0], [1.0], [1.5]])
        >>> labels = torch.tensor([0, 0, 1])
        >>> # triplets (0,1,2): 1 − 1.5 + 1 = 0.5; (1,0,2): 1 − 0.5 + 1 = 1.5; both > 0
        >>> round(float(loss(e, labels)), 4)
        1.0
    """

    name: ClassVar[str] = "batch_all_triplet"

    def __init__(
        self, margin: float = 1.0, distance: str | Distance = "euclidean", average: str = "nonzero"
    ) -> None:
        super().__init__(margin, distance)
        if average not in ("nonzero", "all"):
            raise ConfigError(f"{self.name}: average must be 'nonzero' or 'all', got {average!r}")
        self.average = average
        self._miner = AllTripletsMiner(self.distance)

    def mine(self, embeddings: torch.Tensor, labels: torch.Tensor) -> TripletIndices:
        """All valid triplets."""
        return self._miner(embeddings, labels)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        self._validate(embeddings, labels)
        losses = F.relu(self._triplet_gaps(embeddings, self.mine(embeddings, labels)) + self.margin)
        if self.average == "all":
            count = losses.new_tensor(float(losses.numel()))
        else:
            count = (losses.detach() > 0).sum().to(losses.dtype)
        return losses.sum() / count.clamp_min(1.0) + (embeddings * 0).sum()

    def extra_repr(self) -> str:
        return super().extra_repr() + f", average={self.average!r}"


class BatchHardTripletLoss(_MinedTripletLoss):
    """Triplet loss on the hardest positive and the hardest negative of each anchor in a labelled batch.

    ``L = mean_a max(max_p d(a, p) − min_n d(a, n) + α, 0)`` over the anchors that have both a positive and a
    negative in the batch. ``soft=True`` replaces the hinge by ``softplus(max_p d(a, p) − min_n d(a, n))``
    (Hermans et al.'s soft margin; α is then unused).

    Reference: Hermans, Beyer & Leibe, "In Defense of the Triplet Loss for Person Re-Identification", 2017.

    Inputs: ``embeddings`` (N, D); ``labels`` (N,) class ids.

    Example:
        >>> import torch
        >>> loss = BatchHardTripletLoss(margin=1.0)
        >>> e = torch.tensor([[0.0], [1.0], [1.5]])
        >>> labels = torch.tensor([0, 0, 1])
        >>> # anchor 0: max(1 − 1.5 + 1, 0) = 0.5; anchor 1: max(1 − 0.5 + 1, 0) = 1.5; anchor 2: no positive
        >>> round(float(loss(e, labels)), 4)
        1.0
    """

    name: ClassVar[str] = "batch_hard_triplet"

    def __init__(
        self, margin: float = 1.0, distance: str | Distance = "euclidean", soft: bool = False
    ) -> None:
        super().__init__(margin, distance)
        self.soft = bool(soft)
        self._miner = BatchHardMiner(self.distance)

    def mine(self, embeddings: torch.Tensor, labels: torch.Tensor) -> TripletIndices:
        """One (anchor, hardest positive, hardest negative) per anchor that has both."""
        return self._miner(embeddings, labels)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        self._validate(embeddings, labels)
        triplets = self.mine(embeddings, labels)
        if len(triplets) == 0:
            return (embeddings * 0).sum()
        gaps = self._triplet_gaps(embeddings, triplets)
        losses = F.softplus(gaps) if self.soft else F.relu(gaps + self.margin)
        return losses.mean()

    def extra_repr(self) -> str:
        return super().extra_repr() + f", soft={self.soft}"


class BatchSemiHardTripletLoss(_MinedTripletLoss):
    """Triplet loss with a semi-hard negative for every positive pair of a labelled batch.

    For each (a, p) of the same label, n is the closest negative with d(a, n) > d(a, p); when the anchor has
    none, its farthest negative (the TensorFlow ``triplet_semihard_loss`` rule, see ``SemiHardMiner``).
    ``L = mean_(a,p) max(d(a, p) − d(a, n) + α, 0)`` over the positive pairs whose anchor has a negative.

    Reference: Schroff, Kalenichenko & Philbin, "FaceNet", CVPR 2015.

    Inputs: ``embeddings`` (N, D); ``labels`` (N,) class ids.

    Example:
        >>> import torch
        >>> loss = BatchSemiHardTripletLoss(margin=1.0)
        >>> e = torch.tensor([[0.0], [1.0], [1.5], [3.0]])
        >>> labels = torch.tensor([0, 0, 1, 1])
        >>> # (0,1): n=2 (1.5 > 1) → 0.5; (1,0): d_ap = 1, n=2 is 0.5 (not > 1), n=3 is 2 → 0;
        >>> # (2,3): d_ap = 1.5, n=0 (1.5, not > 1.5), n=1 (0.5): none farther, farthest n=0 → 1;
        >>> # (3,2): d_ap = 1.5, n=1 at 2 → 0.5.   mean = (0.5 + 0 + 1 + 0.5) / 4
        >>> round(float(loss(e, labels)), 4)
        0.5
    """

    name: ClassVar[str] = "batch_semi_hard_triplet"

    def __init__(self, margin: float = 1.0, distance: str | Distance = "euclidean") -> None:
        super().__init__(margin, distance)
        self._miner = SemiHardMiner(distance=self.distance)

    def mine(self, embeddings: torch.Tensor, labels: torch.Tensor) -> TripletIndices:
        """One semi-hard triplet per positive pair whose anchor has a negative."""
        return self._miner(embeddings, labels)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        self._validate(embeddings, labels)
        triplets = self.mine(embeddings, labels)
        if len(triplets) == 0:
            return (embeddings * 0).sum()
        return F.relu(self._triplet_gaps(embeddings, triplets) + self.margin).mean()
