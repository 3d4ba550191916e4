"""Distances and similarities between embeddings, each in an aligned-pairs and a matrix form.

Every measure knows its direction (``higher_is_closer``), so a loss or an evaluator written once works with a
similarity (cosine, dot) and a distance (euclidean, manhattan) alike. ``pairwise(a, b)`` takes two (N, D)
tensors and returns (N,); ``matrix(a, b)`` takes (N, D) and (M, D) and returns (N, M).

>>> import torch
>>> get_distance("euclidean").pairwise(torch.tensor([[0.0, 0.0]]), torch.tensor([[3.0, 4.0]]))
tensor([5.])
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F

from textsiamese.errors import ConfigError


class Distance:
    """A measure between embeddings. Subclasses define ``pairwise`` and ``matrix``.

    Three views of the same values serve the losses:

    * ``as_distance``: negated similarities; order-preserving, smaller is closer, may be negative.
    * ``as_similarity``: negated distances; larger is closer.
    * ``dissimilarity``: a value that is 0 for identical embeddings and grows as they move apart, so that
      margin losses (contrastive, energy) mean the same thing for every measure that has one: distances as
      they are, cosine as ``1 − cos`` (the cosine distance, in [0, 2]). ``dot`` has no such form (u·u is not
      a constant), so ``has_dissimilarity`` is False for it and those losses refuse it.
    """

    name: ClassVar[str]
    higher_is_closer: ClassVar[bool]
    has_dissimilarity: ClassVar[bool] = True

    def pairwise(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def matrix(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def as_distance(self, values: torch.Tensor) -> torch.Tensor:
        """Values turned so that smaller means closer (similarities are negated)."""
        return -values if self.higher_is_closer else values

    def as_similarity(self, values: torch.Tensor) -> torch.Tensor:
        """Values turned so that larger means closer (distances are negated)."""
        return values if self.higher_is_closer else -values

    def dissimilarity(self, values: torch.Tensor) -> torch.Tensor:
        """Values as a non-negative dissimilarity, 0 for identical embeddings (see the class docstring)."""
        return values

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class CosineSimilarity(Distance):
    """cos(u, v) = u·v / (‖u‖‖v‖), in [-1, 1]; larger is closer."""

    name = "cosine"
    higher_is_closer = True

    def pairwise(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return F.cosine_similarity(a, b, dim=-1, eps=1e-8)

    def matrix(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return F.normalize(a, dim=-1, eps=1e-8) @ F.normalize(b, dim=-1, eps=1e-8).T

    def dissimilarity(self, values: torch.Tensor) -> torch.Tensor:
        """The cosine distance 1 − cos, in [0, 2]."""
        return 1.0 - values


class DotProduct(Distance):
    """u·v; larger is closer. Equal to cosine on L2-normalised embeddings."""

    name = "dot"
    higher_is_closer = True
    has_dissimilarity = False

    def pairwise(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a * b).sum(dim=-1)

    def matrix(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a @ b.T

    def dissimilarity(self, values: torch.Tensor) -> torch.Tensor:
        raise ConfigError(
            "the dot product has no non-negative dissimilarity form (u·u is not constant); "
            "use 'cosine', or a distance such as 'euclidean'"
        )


class SquaredEuclidean(Distance):
    """‖u − v‖²; smaller is closer."""

    name = "squared_euclidean"
    higher_is_closer = False

    def pairwise(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a - b).pow(2).sum(dim=-1)

    def matrix(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        # Expanded form ‖a‖² − 2a·b + ‖b‖² (one matmul, no (N, M, D) tensor), clamped: rounding can make it
        # slightly negative. Distances do not change under translation, so both sides are first centred on
        # their common mean (a constant for autograd): the expanded form cancels catastrophically when the
        # embeddings sit far from the origin compared with their spread.
        centre = torch.cat([a, b]).mean(0, keepdim=True).detach()
        a, b = a - centre, b - centre
        sq = a.pow(2).sum(-1, keepdim=True) - 2 * a @ b.T + b.pow(2).sum(-1).unsqueeze(0)
        return sq.clamp_min(0.0)


class Euclidean(Distance):
    """‖u − v‖₂; smaller is closer. The gradient at u = v is taken as zero (not NaN)."""

    name = "euclidean"
    higher_is_closer = False

    def pairwise(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return _safe_sqrt(SquaredEuclidean().pairwise(a, b))

    def matrix(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return _safe_sqrt(SquaredEuclidean().matrix(a, b))


class Manhattan(Distance):
    """Σ|u − v|; smaller is closer."""

    name = "manhattan"
    higher_is_closer = False

    def pairwise(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a - b).abs().sum(dim=-1)

    def matrix(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.cdist(a, b, p=1)


def _safe_sqrt(x: torch.Tensor) -> torch.Tensor:
    """sqrt whose gradient is 0 at 0 instead of inf (identical embeddings are a common case)."""
    zero = x <= 0
    return torch.where(zero, torch.zeros_like(x), torch.sqrt(torch.where(zero, torch.ones_like(x), x)))


DISTANCES: dict[str, type[Distance]] = {
    cls.name: cls for cls in (CosineSimilarity, DotProduct, Euclidean, SquaredEuclidean, Manhattan)
}


def get_distance(name: str | Distance) -> Distance:
    """The distance registered under ``name`` (an instance passes through unchanged)."""
    if isinstance(name, Distance):
        return name
    try:
        return DISTANCES[name]()
    except KeyError:
        raise ConfigError(f"unknown distance {name!r}; choose one of {', '.join(DISTANCES)}") from None
