"""AnglE: CoSENT's ranking objective over an angle score instead of the cosine.

The cosine's gradient vanishes near ±1, where many STS pairs sit, so ranking by cosine learns little from
them. AnglE (Li & Li, "AnglE-optimized Text Embeddings", 2023) reads each L2-normalised embedding of even
dimension 2k as k complex numbers, ``z = x[:k] + i·x[k:]``, and scores a pair by the real plus the
imaginary part of ``Σ z · conj(w)`` (the cosine plus a "sine" term); the authors' reference code takes its
absolute value. Odd dimensions are padded with one zero. The loss ranks pairs by that score as CoSENT ranks
them by cosine (``pairs.order_loss``), by default summed with CoSENT's own term (see ``AnglELoss``).
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F

from textsiamese.errors import ConfigError
from textsiamese.losses.base import SiameseLoss, check_pair_shapes
from textsiamese.losses.pairs import order_loss


def angle_similarity(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per row ``|cos(a, b) + Σ_j (â_{k+j} b̂_j − â_j b̂_{k+j})|`` of the L2-normalised rows â, b̂ (N, 2k)."""
    if a.shape[1] % 2:
        a, b = F.pad(a, (0, 1)), F.pad(b, (0, 1))
    a, b = F.normalize(a, dim=1), F.normalize(b, dim=1)
    half = a.shape[1] // 2
    real = (a * b).sum(dim=1)
    imaginary = (a[:, half:] * b[:, :half] - a[:, :half] * b[:, half:]).sum(dim=1)
    return (real + imaginary).abs()


class AnglELoss(SiameseLoss):
    """AnglE: ``L = w_c · CoSENT + w_a · log(1 + Σ_{(i, j): s_i > s_j} exp(λ · (angle_j − angle_i)))``, with
    ``angle`` from ``angle_similarity``, λ = ``scale`` (default 20), ``w_c`` = ``cosent_weight`` and ``w_a`` =
    ``angle_weight`` (both 1 by default); as CoSENT, only the order of the gold scores counts.

    The cosine term is on by default because inference scores pairs by cosine: the angle score alone (as
    sentence-transformers' ``AnglELoss``: ``cosent_weight=0``) calls orthogonal rows alike (``|0 − 1| = 1``)
    and, trained alone, separated held-out classes by cosine far worse (AUC 0.64 in tests/test_losses.py's
    learning check, against > 0.95 with the sum). The paper likewise trains it beside a cosine objective.

    Inputs: ``a``, ``b`` (N, D); ``labels`` (N,) float scores, higher = more similar.

    Example:
        >>> import torch
        >>> loss = AnglELoss(scale=1.0, cosent_weight=0.0)
        >>> a = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
        >>> b = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # angle scores |1 + 0| = 1 and |0 − 1| = 1: a tie
        >>> round(float(loss(a, b, torch.tensor([0.0, 1.0]))), 4)  # log(1 + e^0)
        0.6931
    """

    family: ClassVar[str] = "pair"
    label_kind: ClassVar[str] = "scores"
    name: ClassVar[str] = "angle"

    def __init__(self, scale: float = 20.0, angle_weight: float = 1.0, cosent_weight: float = 1.0) -> None:
        super().__init__()
        if scale <= 0:
            raise ConfigError(f"{self.name}: scale must be > 0, got {scale}")
        if angle_weight < 0 or cosent_weight < 0 or angle_weight + cosent_weight == 0:
            raise ConfigError(
                f"{self.name}: weights must be >= 0 and not both 0, got angle_weight={angle_weight}, "
                f"cosent_weight={cosent_weight}"
            )
        self.scale = float(scale)
        self.angle_weight = float(angle_weight)
        self.cosent_weight = float(cosent_weight)

    def forward(self, a: torch.Tensor, b: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        check_pair_shapes(a, b, labels, loss=self.name)
        gold = self.labels_as(labels, a.dtype)
        loss = self.angle_weight * order_loss(angle_similarity(a, b) * self.scale, gold)
        if self.cosent_weight:
            cosine = F.cosine_similarity(a, b, dim=1)
            loss = loss + self.cosent_weight * order_loss(cosine * self.scale, gold)
        return loss

    def extra_repr(self) -> str:
        return f"scale={self.scale}, angle_weight={self.angle_weight}, cosent_weight={self.cosent_weight}"
