"""Ranking losses with in-batch negatives: ``forward(queries, documents)``.

``queries`` is (N, D). ``documents`` is (N·(1+h), D): rows 0..N−1 are the positives (document i belongs to
query i), then h blocks of N hard negatives, block k holding one hard negative per query in query order
(row N·k + i is the k-th hard negative of query i). Every document of the batch is a candidate for every
query.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F

from textsiamese.errors import ConfigError
from textsiamese.losses.base import SiameseLoss, resolve_distance
from textsiamese.model.distances import Distance


class MultipleNegativesRankingLoss(SiameseLoss):
    """Cross-entropy of each query over all documents of the batch, its own positive being the target.

    With s(q, d) the similarity (cosine by default; distances are negated) and scale τ⁻¹ = ``scale``:

    ``L = mean_i −log( exp(scale·s(q_i, d_i)) / Σ_j exp(scale·s(q_i, d_j)) )``

    where j runs over all N·(1+h) documents: the other queries' positives are in-batch negatives and the hard
    negatives are extra candidates. ``symmetric=True`` adds the document → query direction (each positive
    document must pick its query among the N queries; hard negatives have no query and are not used there)
    and averages the two directions. Batches must not hold two queries whose positives are interchangeable,
    since each other's positive would be counted as a negative.

    Reference: Henderson et al., "Efficient Natural Language Response Suggestion for Smart Reply", 2017;
    van den Oord et al., "Representation Learning with Contrastive Predictive Coding" (InfoNCE), 2018.

    Args:
        scale: multiplies the similarities before the softmax (default 20, i.e. temperature 0.05).
        symmetric: also rank queries for each positive document.
        distance: the measure (default cosine); any registered name.

    Inputs: ``queries`` (N, D); ``documents`` (N·(1+h), D), positives first, then hard negatives.

    Example:
        >>> import torch
        >>> loss = MultipleNegativesRankingLoss(scale=1.0)
        >>> q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        >>> d = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # cos: 1 with its own, 0 with the other
        >>> round(float(loss(q, d)), 4)  # −log(e / (e + 1))
        0.3133
    """

    family: ClassVar[str] = "ranking"
    name: ClassVar[str] = "multiple_negatives_ranking"

    def __init__(
        self, scale: float = 20.0, symmetric: bool = False, distance: str | Distance = "cosine"
    ) -> None:
        super().__init__()
        if scale <= 0:
            raise ConfigError(f"{self.name}: scale must be > 0, got {scale}")
        self.scale = float(scale)
        self.symmetric = bool(symmetric)
        self.distance = resolve_distance(distance, loss=self.name)

    def scores(self, queries: torch.Tensor, documents: torch.Tensor) -> torch.Tensor:
        """(N, M) scaled similarities, larger = closer."""
        return self.scale * self.distance.as_similarity(self.distance.matrix(queries, documents))

    def forward(self, queries: torch.Tensor, documents: torch.Tensor) -> torch.Tensor:
        n = queries.shape[0]
        if queries.dim() != 2 or documents.dim() != 2 or documents.shape[1] != queries.shape[1]:
            raise ValueError(
                f"{self.name}: queries (N, D) and documents (N·(1+h), D) expected, got "
                f"{tuple(queries.shape)} and {tuple(documents.shape)}"
            )
        if n == 0 or documents.shape[0] < n or documents.shape[0] % n != 0:
            raise ValueError(
                f"{self.name}: documents must have N·(1+h) rows for N = {n} queries (positives first, then h "
                f"blocks of hard negatives), got {documents.shape[0]}"
            )
        target = torch.arange(n, device=queries.device)
        loss = F.cross_entropy(self.scores(queries, documents), target)
        if self.symmetric:
            backward = F.cross_entropy(self.scores(documents[:n], queries), target)
            loss = (loss + backward) / 2
        return loss

    def extra_repr(self) -> str:
        return f"scale={self.scale}, symmetric={self.symmetric}, distance={self.distance.name}"
