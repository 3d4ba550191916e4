"""Pair losses: ``forward(a, b, labels)`` with a and b (N, D) embeddings of the two sides of N pairs.

Binary losses take labels 1 = similar, 0 = dissimilar (the convention in the ``textsiamese.losses`` docstring)
and raise ``LabelError`` on anything else. ``cosine_similarity`` and ``cosent`` take float scores instead.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from textsiamese.errors import ConfigError
from textsiamese.losses.base import SiameseLoss, check_pair_shapes, resolve_distance
from textsiamese.losses.labels import LabelError
from textsiamese.model.distances import CosineSimilarity, Distance


class ContrastiveLoss(SiameseLoss):
    """Contrastive loss: pull similar pairs together, push dissimilar pairs beyond a margin.

    ``L = mean_i [ y_i · d_i² + (1 − y_i) · max(m − d_i, 0)² ]`` where ``d_i`` is the dissimilarity of pair i
    under ``distance`` (euclidean by default; cosine is used as ``1 − cos``, see ``Distance.dissimilarity``).
    A dissimilar pair contributes nothing once it is ``margin`` or farther apart.

    Reference: Hadsell, Chopra & LeCun, "Dimensionality Reduction by Learning an Invariant Mapping",
    CVPR 2006.

    Args:
        margin: m, the dissimilarity beyond which dissimilar pairs stop contributing.
        distance: any registered name or ``Distance`` with a dissimilarity (not ``dot``).

    Inputs: ``a``, ``b`` (N, D); ``labels`` (N,) in {0, 1}, 1 = similar.

    Example:
        >>> import torch
        >>> loss = ContrastiveLoss(margin=1.0)
        >>> a = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
        >>> b = torch.tensor([[0.3, 0.4], [0.3, 0.4]])  # both pairs at distance 0.5
        >>> round(float(loss(a, b, torch.tensor([1, 0]))), 4)  # (0.5² + (1 − 0.5)²) / 2
        0.25
    """

    family: ClassVar[str] = "pair"
    label_kind: ClassVar[str] = "binary"
    name: ClassVar[str] = "contrastive"

    def __init__(self, margin: float = 1.0, distance: str | Distance = "euclidean") -> None:
        super().__init__()
        if margin <= 0:
            raise ConfigError(f"{self.name}: margin must be > 0, got {margin}")
        self.margin = float(margin)
        self.distance = resolve_distance(distance, loss=self.name, need_dissimilarity=True)

    def forward(self, a: torch.Tensor, b: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        check_pair_shapes(a, b, labels, loss=self.name)
        y = self.labels_as(labels, a.dtype)
        d = self.distance.dissimilarity(self.distance.pairwise(a, b))
        losses = y * d.pow(2) + (1 - y) * F.relu(self.margin - d).pow(2)
        return losses.mean()

    def extra_repr(self) -> str:
        return f"margin={self.margin}, distance={self.distance.name}"


class OnlineContrastiveLoss(ContrastiveLoss):
    """Contrastive loss on the hard pairs of the batch only.

    Hard positives are similar pairs farther apart than the closest dissimilar pair; hard negatives are
    dissimilar pairs closer than the farthest similar pair. Each hard pair contributes its contrastive term
    (``d²`` or ``max(m − d, 0)²``), the others contribute 0, and the sum is divided by the batch size N, so
    the value is on the scale of ``contrastive``. A batch with no dissimilar pairs keeps every similar pair
    (and vice versa): with nothing to compare against, no pair can be called easy.

    Reference: the OnlineContrastiveLoss used for duplicate-question detection (Quora duplicates) in
    sentence-transformers; contrastive term from Hadsell, Chopra & LeCun 2006.

    Args / inputs: as ``ContrastiveLoss``.

    Example:
        >>> import torch
        >>> loss = OnlineContrastiveLoss(margin=1.0)
        >>> a = torch.zeros(3, 1)
        >>> b = torch.tensor([[0.2], [0.6], [0.4]])  # d = 0.2 (similar), 0.6 (similar), 0.4 (dissimilar)
        >>> round(float(loss(a, b, torch.tensor([1, 1, 0]))), 4)  # hard: the 0.6 positive, the 0.4 negative
        0.24
    """

    family: ClassVar[str] = "pair"
    name: ClassVar[str] = "online_contrastive"

    def forward(self, a: torch.Tensor, b: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        check_pair_shapes(a, b, labels, loss=self.name)
        y = self.labels_as(labels, a.dtype)
        d = self.distance.dissimilarity(self.distance.pairwise(a, b))
        pos = y == 1
        neg = ~pos
        dd = d.detach()
        # Computed on the device without branching on a value (a Python ``if`` would wait for the device):
        # when one side is missing, ``both`` is False and every pair of the other side is kept.
        both = pos.any() & neg.any()
        closest_neg = dd.masked_fill(pos, float("inf")).min()
        farthest_pos = dd.masked_fill(neg, float("-inf")).max()
        hard_pos = pos & ((dd > closest_neg) | ~both)
        hard_neg = neg & ((dd < farthest_pos) | ~both)
        losses = hard_pos * d.pow(2) + hard_neg * F.relu(self.margin - d).pow(2)
        return losses.sum() / d.shape[0]


class EnergyLoss(SiameseLoss):
    """The energy-based loss of the 2005 face-verification siamese network.

    With energy ``E = ‖G(x1) − G(x2)‖₂`` (any measure with a dissimilarity may replace it) and a constant Q,
    the upper bound of E:

    ``L = mean_i [ y_i · (2/Q) · E_i² + (1 − y_i) · 2Q · exp(−2.77 · E_i / Q) ]``

    The genuine-pair term grows with E, the impostor term decays with E and never reaches exactly 0, so there
    is no margin. The paper labels genuine pairs Y = 0; here, as everywhere in textsiamese, y = 1 = similar.

    Reference: Chopra, Hadsell & LeCun, "Learning a Similarity Metric Discriminatively, with Application to
    Face Verification", CVPR 2005.

    Args:
        q: the constant Q (default 5).
        distance: measure giving E (euclidean by default).

    Inputs: ``a``, ``b`` (N, D); ``labels`` (N,) in {0, 1}, 1 = similar.

    Example:
        >>> import torch
        >>> loss = EnergyLoss(q=5.0)
        >>> a, b = torch.zeros(1, 2), torch.tensor([[3.0, 4.0]])  # E = 5
        >>> round(float(loss(a, b, torch.tensor([1]))), 4)  # (2/5) · 25
        10.0
    """

    family: ClassVar[str] = "pair"
    label_kind: ClassVar[str] = "binary"
    name: ClassVar[str] = "energy"

    def __init__(self, q: float = 5.0, distance: str | Distance = "euclidean") -> None:
        super().__init__()
        if q <= 0:
            raise ConfigError(f"{self.name}: q must be > 0, got {q}")
        self.q = float(q)
        self.distance = resolve_distance(distance, loss=self.name, need_dissimilarity=True)

    def forward(self, a: torch.Tensor, b: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        check_pair_shapes(a, b, labels, loss=self.name)
        y = self.labels_as(labels, a.dtype)
        e = self.distance.dissimilarity(self.distance.pairwise(a, b))
        losses = y * (2.0 / self.q) * e.pow(2) + (1 - y) * 2.0 * self.q * torch.exp(-2.77 * e / self.q)
        return losses.mean()

    def extra_repr(self) -> str:
        return f"q={self.q}, distance={self.distance.name}"


class LogisticLoss(SiameseLoss):
    """Binary cross-entropy on a learnable logistic head over the pair's dissimilarity.

    ``p(similar) = σ(−w · d + b)`` with ``w = softplus(ρ) > 0`` and b learnable (ρ, b are parameters of this
    module: give ``loss.parameters()`` to the optimiser along with the model's), trained with
    ``L = mean_i BCE(p_i, y_i)``. d is the dissimilarity under ``distance`` (cosine as ``1 − cos``; ``dot`` as
    ``−u·v``). Because w > 0, closer pairs always get a higher probability. After training, ``calibration``
    gives the fitted ``(w, b)`` and ``probability(d)`` turns dissimilarities into calibrated probabilities.

    Reference: the classic siamese binary head (e.g. Bromley et al. 1993; Koch, Zemel & Salakhutdinov 2015).

    Args:
        distance: the measure (euclidean by default).
        w: initial w (> 0), b: initial b.

    Inputs: ``a``, ``b`` (N, D); ``labels`` (N,) in {0, 1}, 1 = similar.

    Example:
        >>> import torch
        >>> loss = LogisticLoss(w=1.0, b=0.0)
        >>> a, b = torch.zeros(1, 2), torch.zeros(1, 2)  # d = 0, p = σ(0) = 0.5
        >>> round(loss(a, b, torch.tensor([1])).item(), 4)  # −log 0.5
        0.6931
        >>> round(loss.probability(torch.tensor(0.0)).item(), 4)
        0.5
    """

    family: ClassVar[str] = "pair"
    label_kind: ClassVar[str] = "binary"
    name: ClassVar[str] = "logistic"

    def __init__(self, distance: str | Distance = "euclidean", w: float = 1.0, b: float = 0.0) -> None:
        super().__init__()
        self.distance = resolve_distance(distance, loss=self.name)
        self.raw_w = nn.Parameter(torch.tensor(_inverse_softplus(w)))
        self.b = nn.Parameter(torch.tensor(float(b)))

    @property
    def w(self) -> torch.Tensor:
        """The slope w = softplus(ρ) > 0."""
        return F.softplus(self.raw_w)

    def dissimilarity(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """The d this head reads for aligned pairs (N,)."""
        values = self.distance.pairwise(a, b)
        if self.distance.has_dissimilarity:
            return self.distance.dissimilarity(values)
        return self.distance.as_distance(values)

    def logits(self, d: torch.Tensor) -> torch.Tensor:
        """−w · d + b."""
        return -self.w.to(d.dtype) * d + self.b.to(d.dtype)

    def probability(self, d: torch.Tensor) -> torch.Tensor:
        """p(similar) = σ(−w · d + b) for dissimilarities d (any shape)."""
        return torch.sigmoid(self.logits(d))

    @property
    def calibration(self) -> tuple[float, float]:
        """The fitted (w, b), to store with a model and rebuild the head with ``LogisticLoss(w=w, b=b)``."""
        return float(self.w.detach()), float(self.b.detach())

    def set_calibration(self, w: float, b: float) -> None:
        """Load a stored (w, b)."""
        with torch.no_grad():
            self.raw_w.fill_(_inverse_softplus(w))
            self.b.fill_(float(b))

    def forward(self, a: torch.Tensor, b: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        check_pair_shapes(a, b, labels, loss=self.name)
        y = self.labels_as(labels, a.dtype)
        return F.binary_cross_entropy_with_logits(self.logits(self.dissimilarity(a, b)), y)

    def extra_repr(self) -> str:
        w, b = self.calibration
        return f"distance={self.distance.name}, w={w:.4g}, b={b:.4g}"


def _inverse_softplus(w: float) -> float:
    """ρ with softplus(ρ) = w (w > 0); stable for large w."""
    if w <= 0:
        raise ConfigError(f"logistic: w must be > 0, got {w}")
    return float(w + math.log(-math.expm1(-w)))


class CosineSimilarityLoss(SiameseLoss):
    """Regress the cosine similarity of each pair onto its gold score.

    ``L = mean_i (cos(u_i, v_i) − s_i)²`` where s_i is the gold score rescaled to [0, 1]:
    ``s_i = (score_i − lo) / (hi − lo)`` with ``score_range=(lo, hi)``. The default range (0, 1) means the
    scores are already in [0, 1]; for STS-B's 0–5 scores pass ``score_range=(0, 5)``. Scores outside the range
    raise ``LabelError`` rather than being clipped. Cosine lies in [−1, 1], so a gold 0 asks for orthogonal,
    not opposite, embeddings (as in sentence-transformers).

    Reference: Reimers & Gurevych, "Sentence-BERT", EMNLP 2019.

    Inputs: ``a``, ``b`` (N, D); ``labels`` (N,) float scores within ``score_range``.

    Example:
        >>> import torch
        >>> loss = CosineSimilarityLoss(score_range=(0.0, 5.0))
        >>> a, b = torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 1.0]])  # cos = 1/√2 ≈ 0.7071
        >>> round(float(loss(a, b, torch.tensor([5.0]))), 4)  # (0.7071 − 1)²
        0.0858
    """

    family: ClassVar[str] = "pair"
    label_kind: ClassVar[str] = "scores"
    name: ClassVar[str] = "cosine_similarity"

    def __init__(self, score_range: tuple[float, float] = (0.0, 1.0)) -> None:
        super().__init__()
        lo, hi = (float(v) for v in score_range)
        if not hi > lo:
            raise ConfigError(f"{self.name}: score_range must be (lo, hi) with hi > lo, got {score_range}")
        self.score_range = (lo, hi)
        self.distance = CosineSimilarity()

    def forward(self, a: torch.Tensor, b: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        check_pair_shapes(a, b, labels, loss=self.name)
        scores = self.labels_as(labels, a.dtype)
        lo, hi = self.score_range
        gold = (scores - lo) / (hi - lo)
        return F.mse_loss(self.distance.pairwise(a, b), gold)

    def check_labels(self, labels: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Finite scores within ``score_range``."""
        scores = super().check_labels(labels, dtype)
        lo, hi = self.score_range
        if bool(((scores < lo) | (scores > hi)).any()):
            raise LabelError(
                f"{self.name}: gold scores must lie in score_range {self.score_range}; got min "
                f"{float(scores.min())}, max {float(scores.max())}. "
                "Pass score_range=(lo, hi) for other scales"
            )
        return scores

    def extra_repr(self) -> str:
        return f"score_range={self.score_range}"


def order_loss(predicted: torch.Tensor, gold: torch.Tensor) -> torch.Tensor:
    """``log(1 + Σ_{(i, j): gold_i > gold_j} exp(predicted_j − predicted_i))``: the ranking objective CoSENT
    and AnglE share, over already scaled predictions (N,) and gold scores (N,)."""
    diff = predicted[None, :] - predicted[:, None]  # [i, j] = predicted_j − predicted_i
    mask = gold[:, None] > gold[None, :]  # gold_i > gold_j
    # Masked terms become −inf (exp = 0) rather than being selected: a boolean selection has a
    # data-dependent size, which makes the host wait for the device.
    terms = torch.cat([diff.new_zeros(1), diff.masked_fill(~mask, float("-inf")).flatten()])
    return torch.logsumexp(terms, dim=0)


class CoSENTLoss(SiameseLoss):
    """CoSENT: rank the pairs of the batch by cosine in the order of their gold scores.

    ``L = log(1 + Σ_{(i, j): s_i > s_j} exp(λ · (cos_j − cos_i)))`` over all ordered pairs of batch rows,
    λ = ``scale`` (default 20). One value for the whole batch (not a mean); 0 when all scores are equal.
    Only the order of the scores matters, so any float scale works (no rescaling needed).

    Reference: Su Jianlin, "CoSENT: a more efficient sentence vector scheme than Sentence-BERT", 2022.

    Inputs: ``a``, ``b`` (N, D); ``labels`` (N,) float scores, higher = more similar.

    Example:
        >>> import torch
        >>> loss = CoSENTLoss(scale=1.0)
        >>> a = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
        >>> b = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # cos = 1, 0
        >>> round(float(loss(a, b, torch.tensor([0.0, 1.0]))), 4)  # log(1 + e^(1 − 0)): wrong order
        1.3133
    """

    family: ClassVar[str] = "pair"
    label_kind: ClassVar[str] = "scores"
    name: ClassVar[str] = "cosent"

    def __init__(self, scale: float = 20.0) -> None:
        super().__init__()
        if scale <= 0:
            raise ConfigError(f"{self.name}: scale must be > 0, got {scale}")
        self.scale = float(scale)
        self.distance = CosineSimilarity()

    def forward(self, a: torch.Tensor, b: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        check_pair_shapes(a, b, labels, loss=self.name)
        scores = self.labels_as(labels, a.dtype)
        return order_loss(self.distance.pairwise(a, b) * self.scale, scores)

    def extra_repr(self) -> str:
        return f"scale={self.scale}"


class CircleLoss(SiameseLoss):
    """Circle loss with pair-wise labels, on cosine similarity.

    With s_p the cosines of the similar pairs and s_n those of the dissimilar pairs in the batch, margin m and
    scale γ: optima O_p = 1 + m, O_n = −m; decision margins Δ_p = 1 − m, Δ_n = m; self-paced weights
    α_p = max(O_p − s_p, 0), α_n = max(s_n − O_n, 0) (treated as constants, as in the paper), and

    ``L = log(1 + Σ_n exp(γ α_n (s_n − Δ_n)) · Σ_p exp(−γ α_p (s_p − Δ_p)))``

    One value for the whole batch (not a mean); 0 when the batch lacks similar or dissimilar pairs.

    Reference: Sun et al., "Circle Loss: A Unified Perspective of Pair Similarity Optimization", CVPR 2020.
    Defaults m = 0.4, γ = 80 are the paper's pair-wise-label setting (fine-grained retrieval).

    Inputs: ``a``, ``b`` (N, D); ``labels`` (N,) in {0, 1}, 1 = similar.

    Example:
        >>> import torch
        >>> loss = CircleLoss(margin=0.25, gamma=1.0)
        >>> a = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
        >>> b = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # s_p = 1, s_n = 0
        >>> round(float(loss(a, b, torch.tensor([1, 0]))), 4)  # log(1 + e^(0.25·(−0.25)) · e^(−0.25·0.25))
        0.6326
    """

    family: ClassVar[str] = "pair"
    label_kind: ClassVar[str] = "binary"
    name: ClassVar[str] = "circle"

    def __init__(self, margin: float = 0.4, gamma: float = 80.0) -> None:
        super().__init__()
        if not 0 <= margin < 1:
            raise ConfigError(f"{self.name}: margin must be in [0, 1), got {margin}")
        if gamma <= 0:
            raise ConfigError(f"{self.name}: gamma must be > 0, got {gamma}")
        self.margin = float(margin)
        self.gamma = float(gamma)
        self.distance = CosineSimilarity()

    def forward(self, a: torch.Tensor, b: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        check_pair_shapes(a, b, labels, loss=self.name)
        y = self.labels_as(labels, a.dtype)
        s = self.distance.pairwise(a, b)
        pos, neg = y == 1, y == 0
        if not (bool(pos.any()) and bool(neg.any())):
            return (s * 0).sum()
        m, g = self.margin, self.gamma
        sp, sn = s[pos], s[neg]
        alpha_p = F.relu(1 + m - sp.detach())
        alpha_n = F.relu(sn.detach() + m)
        logit_p = -g * alpha_p * (sp - (1 - m))
        logit_n = g * alpha_n * (sn - m)
        return F.softplus(torch.logsumexp(logit_n, dim=0) + torch.logsumexp(logit_p, dim=0))

    def extra_repr(self) -> str:
        return f"margin={self.margin}, gamma={self.gamma}"
