"""Losses: values computed by hand from tiny 2-D embeddings, independent numpy references, gradchecks, the
label checks, the registry, and one learning test per loss on a small synthetic set.

Expected numbers come from the formulas (math / numpy / scipy), never from the code under test.
"""

from __future__ import annotations

import doctest
import inspect
import itertools
import math
from collections.abc import Callable, Iterator

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist
from scipy.special import logsumexp
from torch import nn

import textsiamese.losses
import textsiamese.losses.angle
import textsiamese.losses.labels
import textsiamese.losses.miners
import textsiamese.losses.pairs
import textsiamese.losses.ranking
import textsiamese.losses.triplets
import textsiamese.model.distances
from textsiamese.errors import ConfigError
from textsiamese.losses import (
    FAMILIES,
    LOSSES,
    AnglELoss,
    BatchAllTripletLoss,
    BatchHardTripletLoss,
    BatchSemiHardTripletLoss,
    CircleLoss,
    ContrastiveLoss,
    CoSENTLoss,
    CosineSimilarityLoss,
    EnergyLoss,
    LogisticLoss,
    MultipleNegativesRankingLoss,
    OnlineContrastiveLoss,
    TripletLoss,
    get_loss,
)
from textsiamese.losses.angle import angle_similarity
from textsiamese.losses.labels import LabelError, binary_labels
from textsiamese.model.distances import get_distance

F64 = torch.float64


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """Tiny tensors gain nothing from intra-op threads, and on a shared 2-core machine spinning OpenMP workers
    slow every test down many times over; run this module single-threaded and restore the setting after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def t(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=F64)


def y(values: list[float]) -> torch.Tensor:
    return torch.tensor(values, dtype=F64)


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


ORIGIN = [0.0, 0.0]
# Points at euclidean distance 0.9, 1.0 and 1.1 from the origin (3-4-5 triangles scaled).
AT_09, AT_10, AT_11 = [0.54, 0.72], [0.6, 0.8], [0.66, 0.88]


# ----------------------------------------------------------------------------------------------------------
# Registry and families
# ----------------------------------------------------------------------------------------------------------

FORWARD_ARGS = {
    "pair": ["a", "b", "labels"],
    "triplet": ["anchor", "positive", "negative"],
    "labelled": ["embeddings", "labels"],
    "ranking": ["queries", "documents"],
}


def test_registry_names_and_families() -> None:
    assert set(LOSSES) == {
        "contrastive",
        "online_contrastive",
        "energy",
        "logistic",
        "cosine_similarity",
        "cosent",
        "angle",
        "circle",
        "triplet",
        "batch_all_triplet",
        "batch_hard_triplet",
        "batch_semi_hard_triplet",
        "multiple_negatives_ranking",
    }
    for name, cls in LOSSES.items():
        assert cls.name == name
        assert cls.family in FAMILIES
        loss = get_loss(name)
        assert isinstance(loss, nn.Module)
        assert list(inspect.signature(loss.forward).parameters) == FORWARD_ARGS[cls.family]


def test_get_loss_rejects_unknown_names_and_options() -> None:
    with pytest.raises(ConfigError, match="unknown loss 'hinge'"):
        get_loss("hinge")
    with pytest.raises(ConfigError, match="accepts: margin, distance"):
        get_loss("contrastive", marginn=1.0)
    with pytest.raises(ConfigError, match="unknown distance"):
        get_loss("triplet", distance="hamming")
    with pytest.raises(ConfigError, match="margin"):
        get_loss("contrastive", margin=0.0)


@pytest.mark.parametrize("name", ["contrastive", "online_contrastive", "energy"])
def test_margin_losses_refuse_dot(name: str) -> None:
    with pytest.raises(ConfigError, match="dissimilarity"):
        get_loss(name, distance="dot")


def test_losses_hold_no_model() -> None:
    """Only the logistic head has parameters of its own (w, b); no loss holds a sub-module."""
    for name in LOSSES:
        loss = get_loss(name)
        assert list(loss.children()) == []
        expected = {"raw_w", "b"} if name == "logistic" else set()
        assert {n for n, _ in loss.named_parameters()} == expected


@pytest.mark.parametrize(
    "module",
    [
        textsiamese.losses,
        textsiamese.losses.pairs,
        textsiamese.losses.angle,
        textsiamese.losses.triplets,
        textsiamese.losses.ranking,
        textsiamese.losses.miners,
        textsiamese.model.distances,
        textsiamese.losses.labels,
    ],
)
def test_docstring_examples_run(module: object) -> None:
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)  # type: ignore[arg-type]
    assert result.failed == 0


# ----------------------------------------------------------------------------------------------------------
# Label checks (the convention is written down in textsiamese.losses' docstring)
# ----------------------------------------------------------------------------------------------------------

BINARY = ["contrastive", "online_contrastive", "energy", "logistic", "circle"]


@pytest.mark.parametrize("name", BINARY)
@pytest.mark.parametrize("bad", [[1.0, 2.0], [0.5, 1.0], [-1.0, 1.0], [math.nan, 1.0]])
def test_binary_losses_reject_non_binary_labels(name: str, bad: list[float]) -> None:
    a, b = t([AT_10, ORIGIN]), t([ORIGIN, AT_10])
    with pytest.raises(LabelError, match=r"binary|NaN") as info:
        get_loss(name)(a, b, y(bad))
    assert isinstance(info.value, ConfigError)


@pytest.mark.parametrize("name", BINARY)
def test_binary_losses_accept_int_float_and_bool_labels_alike(name: str) -> None:
    a, b = t([AT_09, ORIGIN, AT_11]), t([ORIGIN, AT_10, [0.1, 0.2]])
    loss = get_loss(name).double()
    values = [
        float(loss(a, b, labels).detach())
        for labels in (torch.tensor([1, 0, 1]), y([1.0, 0.0, 1.0]), torch.tensor([True, False, True]))
    ]
    assert values[0] == pytest.approx(values[1]) == pytest.approx(values[2])


@pytest.mark.parametrize("name", list(LOSSES))
def test_pair_losses_check_label_shape(name: str) -> None:
    if LOSSES[name].family != "pair":
        return
    with pytest.raises(LabelError, match="shape"):
        get_loss(name)(t([AT_10, ORIGIN]), t([ORIGIN, AT_10]), y([1.0, 0.0, 1.0]))


def test_zero_means_same_data_is_flipped_at_the_edge() -> None:
    """Data with 0 = same (Chopra et al. 2005) becomes 1 = same; the loss then sees the one convention."""
    raw = torch.tensor([0, 1, 1, 0])
    assert binary_labels(raw, convention="0=similar").tolist() == [1.0, 0.0, 0.0, 1.0]
    assert binary_labels(raw).tolist() == [0.0, 1.0, 1.0, 0.0]
    with pytest.raises(ConfigError, match="convention"):
        binary_labels(raw, convention="0=same")
    a, b = t([ORIGIN, ORIGIN]), t([AT_09, AT_11])
    loss = ContrastiveLoss(margin=1.0)
    flipped = loss(
        a, b, binary_labels(torch.tensor([0, 1]), convention="0=similar")
    )  # pair 0 similar, pair 1 dissimilar
    assert float(flipped) == pytest.approx((0.9**2 + 0.0) / 2)


def test_class_labels_must_be_whole_numbers() -> None:
    e = t([ORIGIN, AT_10, AT_11])
    with pytest.raises(LabelError, match="whole numbers"):
        BatchHardTripletLoss()(e, y([0.0, 0.5, 1.0]))
    with pytest.raises(LabelError, match="shape"):
        BatchHardTripletLoss()(e, torch.tensor([0, 1]))
    assert float(BatchHardTripletLoss()(e, y([0.0, 0.0, 1.0]))) >= 0.0


def test_score_losses_check_scores() -> None:
    a, b = t([[1.0, 0.0]]), t([[0.6, 0.8]])
    with pytest.raises(LabelError, match="score_range"):
        CosineSimilarityLoss()(a, b, y([4.0]))
    with pytest.raises(LabelError, match="finite"):
        CoSENTLoss()(a, b, y([math.inf]))
    with pytest.raises(ConfigError):
        CosineSimilarityLoss(score_range=(5.0, 0.0))


@pytest.mark.parametrize("name", [n for n in LOSSES if LOSSES[n].label_kind])
def test_label_value_check_can_be_switched_off_for_prechecked_labels(name: str) -> None:
    """``validate_labels`` is on by default; a caller that checked all labels once (the trainer) turns the
    per-call value check off, and the loss then gives the same value without it. Shapes are still checked."""
    loss = get_loss(name)
    assert loss.validate_labels
    e = t([ORIGIN, AT_10, AT_11, [0.1, 0.2]])
    kind = LOSSES[name].label_kind
    good = y([0.0, 1.0, 0.0, 0.0]) if kind != "scores" else y([0.2, 0.4, 0.6, 0.8])
    bad = y([0.5, 1.0, 0.0, 0.0]) if kind != "scores" else y([math.nan, 0.4, 0.6, 0.8])

    def call(labels: torch.Tensor) -> torch.Tensor:
        return loss(e, labels) if loss.family == "labelled" else loss(e[:2], e[2:], labels[:2])

    checked = call(good)
    with pytest.raises(LabelError):
        call(bad)
    with pytest.raises(LabelError):
        loss.check_labels(bad)  # a whole label set, any length
    loss.validate_labels = False
    assert torch.equal(call(good), checked)
    if loss.family == "pair":  # labelled losses: the miner checks class ids itself (its mining syncs anyway)
        call(bad)  # not checked: the caller promised
    with pytest.raises(LabelError, match="shape"):
        call(good[:1])


# ----------------------------------------------------------------------------------------------------------
# Hand-computed values: pair losses
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("point", "label", "expected"),
    [
        (AT_09, 1, 0.9**2),  # similar: d²
        (AT_11, 1, 1.1**2),
        (AT_09, 0, (1.0 - 0.9) ** 2),  # dissimilar, just inside the margin: (m − d)²
        (AT_10, 0, 0.0),  # on the margin
        (AT_11, 0, 0.0),  # just beyond the margin
    ],
)
def test_contrastive_margin_edge(point: list[float], label: int, expected: float) -> None:
    loss = ContrastiveLoss(margin=1.0)
    assert float(loss(t([ORIGIN]), t([point]), torch.tensor([label]))) == pytest.approx(expected)


def test_contrastive_batch_is_the_mean() -> None:
    loss = ContrastiveLoss(margin=1.0)
    a, b = t([ORIGIN, ORIGIN, ORIGIN]), t([AT_09, AT_09, AT_11])
    assert float(loss(a, b, torch.tensor([1, 0, 0]))) == pytest.approx((0.81 + 0.01 + 0.0) / 3)


@pytest.mark.parametrize(
    ("distance", "a", "b", "d"),
    [
        ("euclidean", [0.0, 0.0], [0.3, 0.4], 0.5),
        ("squared_euclidean", [0.0, 0.0], [0.3, 0.4], 0.25),
        ("manhattan", [0.0, 0.0], [0.3, 0.4], 0.7),
        ("cosine", [1.0, 0.0], [0.6, 0.8], 1.0 - 0.6),  # cosine distance 1 − cos
        ("cosine", [2.0, 0.0], [0.0, -3.0], 1.0),  # orthogonal: 1 − 0
    ],
)
def test_contrastive_swaps_the_distance_by_name(
    distance: str, a: list[float], b: list[float], d: float
) -> None:
    m = 0.8
    loss = ContrastiveLoss(margin=m, distance=distance)
    assert float(loss(t([a]), t([b]), torch.tensor([1]))) == pytest.approx(d**2)
    assert float(loss(t([a]), t([b]), torch.tensor([0]))) == pytest.approx(max(m - d, 0.0) ** 2)


def test_online_contrastive_keeps_only_hard_pairs() -> None:
    # 1-D distances from the origin: positives at 0.2 and 0.6, negatives at 0.4 and 1.5 (margin 1).
    a = t([ORIGIN] * 4)
    b = t([[0.2, 0.0], [0.6, 0.0], [0.4, 0.0], [1.5, 0.0]])
    labels = torch.tensor([1, 1, 0, 0])
    # Closest negative 0.4: hard positive 0.6 only. Farthest positive 0.6: hard negative 0.4 only.
    expected = (0.6**2 + (1.0 - 0.4) ** 2) / 4
    assert float(OnlineContrastiveLoss(margin=1.0)(a, b, labels)) == pytest.approx(expected)


def test_online_contrastive_margin_edge_and_one_sided_batches() -> None:
    loss = OnlineContrastiveLoss(margin=1.0)
    a = t([ORIGIN] * 3)
    # A positive at 1.2 makes both negatives hard; the one at 0.9 is inside the margin, the one at 1.1 not.
    b = t([[1.2, 0.0], AT_09, AT_11])
    assert float(loss(a, b, torch.tensor([1, 0, 0]))) == pytest.approx((1.44 + 0.01 + 0.0) / 3)
    # Only negatives: each keeps its plain contrastive term.
    assert float(loss(a[:2], b[1:], torch.tensor([0, 0]))) == pytest.approx((0.01 + 0.0) / 2)
    # Only positives: each keeps d².
    assert float(loss(a[:2], b[1:], torch.tensor([1, 1]))) == pytest.approx((0.81 + 1.21) / 2)


@pytest.mark.parametrize(("point", "e"), [(AT_09, 0.9), (AT_10, 1.0), ([3.0, 4.0], 5.0)])
def test_energy_both_labels(point: list[float], e: float) -> None:
    q = 5.0
    loss = EnergyLoss(q=q)
    assert float(loss(t([ORIGIN]), t([point]), torch.tensor([1]))) == pytest.approx(2 / q * e**2)
    assert float(loss(t([ORIGIN]), t([point]), torch.tensor([0]))) == pytest.approx(
        2 * q * math.exp(-2.77 * e / q)
    )


def test_energy_batch_mean_with_other_q() -> None:
    loss = EnergyLoss(q=2.0)
    a, b = t([ORIGIN, ORIGIN]), t([AT_10, [3.0, 4.0]])
    expected = (2 / 2.0 * 1.0 + 2 * 2.0 * math.exp(-2.77 * 5.0 / 2.0)) / 2
    assert float(loss(a, b, torch.tensor([1, 0]))) == pytest.approx(expected)


@pytest.mark.parametrize(("point", "d"), [([0.3, 0.4], 0.5), (AT_10, 1.0), ([0.0, 0.0], 0.0)])
def test_logistic_both_labels(point: list[float], d: float) -> None:
    w, bias = 2.0, 1.0
    loss = LogisticLoss(w=w, b=bias).double()
    p = sigmoid(-w * d + bias)
    assert loss(t([ORIGIN]), t([point]), torch.tensor([1])).item() == pytest.approx(-math.log(p))
    assert loss(t([ORIGIN]), t([point]), torch.tensor([0])).item() == pytest.approx(-math.log(1 - p))
    assert loss.probability(torch.tensor(d, dtype=F64)).item() == pytest.approx(p)


def test_logistic_calibration_round_trip_and_positive_slope() -> None:
    loss = LogisticLoss(w=0.3, b=-2.0)
    assert loss.calibration == pytest.approx((0.3, -2.0))
    loss.set_calibration(7.5, 0.25)
    assert loss.calibration == pytest.approx((7.5, 0.25))
    with torch.no_grad():
        loss.raw_w.fill_(-50.0)  # an optimiser can push ρ anywhere; w = softplus(ρ) stays > 0
    assert loss.w.item() > 0
    with pytest.raises(ConfigError):
        LogisticLoss(w=0.0)
    # closer pairs get higher probability
    probs = loss.probability(torch.tensor([0.0, 0.5, 2.0]))
    assert probs[0] >= probs[1] >= probs[2]


def test_logistic_with_cosine_reads_one_minus_cos() -> None:
    loss = LogisticLoss(distance="cosine", w=1.0, b=0.0).double()
    a, b = t([[1.0, 0.0]]), t([[0.6, 0.8]])
    p = sigmoid(-(1 - 0.6))
    assert loss(a, b, torch.tensor([1])).item() == pytest.approx(-math.log(p))


@pytest.mark.parametrize(
    ("score", "score_range", "gold"),
    [(0.5, (0.0, 1.0), 0.5), (4.0, (0.0, 5.0), 0.8), (0.0, (-1.0, 1.0), 0.5), (1.0, (0.0, 1.0), 1.0)],
)
def test_cosine_similarity_rescales_gold(score: float, score_range: tuple[float, float], gold: float) -> None:
    a, b = t([[1.0, 0.0]]), t([[0.6, 0.8]])  # cos = 0.6
    loss = CosineSimilarityLoss(score_range=score_range)
    assert float(loss(a, b, y([score]))) == pytest.approx((0.6 - gold) ** 2)


def test_cosine_similarity_batch_mean() -> None:
    a, b = t([[1.0, 0.0], [1.0, 0.0]]), t([[0.6, 0.8], [0.0, 2.0]])  # cos 0.6 and 0
    loss = CosineSimilarityLoss(score_range=(0.0, 5.0))
    assert float(loss(a, b, y([5.0, 1.0]))) == pytest.approx(((0.6 - 1.0) ** 2 + (0.0 - 0.2) ** 2) / 2)


def test_cosent_two_pairs_right_and_wrong_order() -> None:
    a, b = t([[1.0, 0.0], [1.0, 0.0]]), t([[0.6, 0.8], [0.8, 0.6]])  # cos 0.6 and 0.8
    loss = CoSENTLoss(scale=20.0)
    # gold says pair 0 > pair 1, cosines say the opposite: log(1 + e^(20·(0.8 − 0.6)))
    assert float(loss(a, b, y([1.0, 0.5]))) == pytest.approx(math.log1p(math.exp(4.0)))
    assert float(loss(a, b, y([0.5, 1.0]))) == pytest.approx(math.log1p(math.exp(-4.0)))
    assert float(loss(a, b, y([0.7, 0.7]))) == pytest.approx(0.0)


def test_cosent_three_pairs() -> None:
    a = t([[1.0, 0.0]] * 3)
    b = t([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])  # cos 1, 0.6, 0
    got = float(CoSENTLoss(scale=1.0)(a, b, y([2.0, 1.0, 0.0])))
    expected = math.log(1 + math.exp(0.6 - 1) + math.exp(0 - 1) + math.exp(0 - 0.6))
    assert got == pytest.approx(expected)


def test_angle_similarity_hand_values_and_sentence_transformers() -> None:
    # Rows as complex numbers z = x[:k] + i·x[k:]: score = |Re + Im| of Σ ẑ·conj(ŵ) after normalising.
    a = t([[1.0, 0.0], [3.0, 4.0], [1.0, 1.0]])
    b = t([[0.0, 1.0], [3.0, 4.0], [2.0, 0.0]])
    # 1 and i: Re 0, Im 0·0 − 1·1 = −1 → 1; equal rows: Re 1, Im 0 → 1; (1+i)/√2 and 1: Re Im both 1/√2 → √2
    expected = [1.0, 1.0, math.sqrt(2.0)]
    assert angle_similarity(a, b).tolist() == pytest.approx(expected)
    from sentence_transformers.util import pairwise_angle_sim

    x, z = _rand(7, 6, seed=3), _rand(7, 6, seed=4)
    torch.testing.assert_close(angle_similarity(x, z), pairwise_angle_sim(x, z))
    odd_x, odd_z = _rand(5, 5, seed=5), _rand(5, 5, seed=6)  # odd dimension: padded with a zero
    torch.testing.assert_close(angle_similarity(odd_x, odd_z), pairwise_angle_sim(odd_x, odd_z))


def test_angle_loss_ranks_like_cosent_over_the_angle_score() -> None:
    a = t([[1.0, 0.0]] * 3)
    b = t([[1.0, 0.0], [1.0, -1.0], [0.6, 0.8]])  # angle scores 1, √2, |0.6 − 0.8| = 0.2
    s = [1.0, math.sqrt(2.0), 0.2]
    got = float(AnglELoss(scale=2.0, cosent_weight=0.0)(a, b, y([2.0, 1.0, 0.0])))
    # gold order 0 > 1 > 2: terms exp(2·(s_j − s_i)) for (0,1), (0,2), (1,2)
    expected = math.log(
        1 + math.exp(2 * (s[1] - s[0])) + math.exp(2 * (s[2] - s[0])) + math.exp(2 * (s[2] - s[1]))
    )
    assert got == pytest.approx(expected, rel=1e-6)
    assert float(AnglELoss()(a, b, y([0.5, 0.5, 0.5]))) == pytest.approx(0.0)
    # The default adds CoSENT's own term on the cosines (1, 1/√2, 0.6), weighted 1 each
    summed = float(AnglELoss(scale=2.0, angle_weight=0.5)(a, b, y([2.0, 1.0, 0.0])))
    cosent = float(CoSENTLoss(scale=2.0)(a, b, y([2.0, 1.0, 0.0])))
    assert summed == pytest.approx(0.5 * expected + cosent, rel=1e-6)
    with pytest.raises(ConfigError, match="not both 0"):
        AnglELoss(angle_weight=0, cosent_weight=0)
    with pytest.raises(ConfigError, match="scale must be > 0"):
        AnglELoss(scale=0)


def _circle_reference(sp: list[float], sn: list[float], m: float, g: float) -> float:
    lp = [-g * max(1 + m - s, 0) * (s - (1 - m)) for s in sp]
    ln = [g * max(s + m, 0) * (s - m) for s in sn]
    return math.log1p(sum(math.exp(v) for v in ln) * sum(math.exp(v) for v in lp))


def test_circle_hand_value() -> None:
    a, b = t([[1.0, 0.0], [1.0, 0.0]]), t([[0.6, 0.8], [0.8, 0.6]])  # s_p = 0.6, s_n = 0.8
    m, g = 0.25, 2.0
    # α_p = 1.25 − 0.6 = 0.65, logit_p = −2·0.65·(0.6 − 0.75) = 0.195
    # α_n = 0.8 + 0.25 = 1.05, logit_n = 2·1.05·(0.8 − 0.25) = 1.155
    expected = math.log1p(math.exp(0.195 + 1.155))
    assert float(CircleLoss(margin=m, gamma=g)(a, b, torch.tensor([1, 0]))) == pytest.approx(expected)


@pytest.mark.parametrize("s_n", [-0.3, -0.2])  # α_n = 0 just below −m, small just above
def test_circle_negative_weight_edge(s_n: float) -> None:
    m, g = 0.25, 4.0
    a = t([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    b = t([[0.6, 0.8], [1.0, 0.0], [s_n, math.sqrt(1 - s_n**2)]])
    got = float(CircleLoss(margin=m, gamma=g)(a, b, torch.tensor([1, 1, 0])))
    assert got == pytest.approx(_circle_reference([0.6, 1.0], [s_n], m, g))


def test_circle_one_sided_batch_is_zero_with_a_gradient_path() -> None:
    a = t([[1.0, 0.0], [0.0, 1.0]]).requires_grad_()
    out = CircleLoss()(a, t([[0.6, 0.8], [0.8, 0.6]]), torch.tensor([1, 1]))
    assert out.item() == 0.0
    out.backward()
    assert a.grad is not None


# ----------------------------------------------------------------------------------------------------------
# Hand-computed values: triplet losses
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("n_x", "expected"), [(1.9, 0.1), (2.0, 0.0), (2.1, 0.0), (0.5, 1.5)])
def test_triplet_margin_edge(n_x: float, expected: float) -> None:
    # d(a, p) = 1; the negative at n_x on the x axis: loss max(1 − n_x + 1, 0)
    loss = TripletLoss(margin=1.0)
    got = float(loss(t([ORIGIN]), t([[0.0, 1.0]]), t([[n_x, 0.0]])))
    assert got == pytest.approx(expected)


SWAP_A = [[0.1, 0.2], [1.0, 0.5], [0.2, -1.0]]
SWAP_P = [[0.5, 0.5], [1.0, 1.0], [0.0, -1.0]]
SWAP_N = [[1.0, 0.5], [-1.0, 0.0], [0.3, -0.6]]


def _ref_distance(name: str, u: list[float], v: list[float]) -> float:
    """Independent reference: scipy, with similarities negated (cosine as 1 − cos, same differences)."""
    metric = {"euclidean": "euclidean", "manhattan": "cityblock", "cosine": "cosine"}[name]
    return float(cdist([u], [v], metric)[0, 0])


@pytest.mark.parametrize("distance", ["cosine", "euclidean", "manhattan"])
def test_triplet_swaps_the_distance_by_name(distance: str) -> None:
    margin = 0.3
    expected = np.mean(
        [
            max(_ref_distance(distance, a, p) - _ref_distance(distance, a, n) + margin, 0.0)
            for a, p, n in zip(SWAP_A, SWAP_P, SWAP_N, strict=True)
        ]
    )
    loss = TripletLoss(margin=margin, distance=distance)
    assert float(loss(t(SWAP_A), t(SWAP_P), t(SWAP_N))) == pytest.approx(expected)


def test_triplet_hand_values_per_distance() -> None:
    a, p, n = t([ORIGIN]), t([[0.5, 0.5]]), t([[1.0, 0.5]])
    # manhattan: d_ap = 1, d_an = 1.5 → 1 − 1.5 + 1 = 0.5
    assert float(TripletLoss(1.0, "manhattan")(a, p, n)) == pytest.approx(0.5)
    # euclidean: d_ap = √0.5, d_an = √1.25
    assert float(TripletLoss(1.0, "euclidean")(a, p, n)) == pytest.approx(
        math.sqrt(0.5) - math.sqrt(1.25) + 1
    )
    # cosine: a = (1, 0), p at cos 0.6, n at cos 0 → (1 − 0.6) − (1 − 0) + 1 = 0.4
    a2, p2, n2 = t([[1.0, 0.0]]), t([[0.6, 0.8]]), t([[0.0, 1.0]])
    assert float(TripletLoss(1.0, "cosine")(a2, p2, n2)) == pytest.approx(0.4)


# Four points on the x axis, classes [0, 0, 1, 1]; x2 = 1.9 or 2.1 moves the hardest negative across
# the margin.
def _line(x2: float) -> torch.Tensor:
    return t([[0.0, 0.0], [1.0, 0.0], [x2, 0.0], [3.0, 0.0]])


LINE_LABELS = torch.tensor([0, 0, 1, 1])


@pytest.mark.parametrize(
    ("x2", "expected"),
    [
        # x2 = 1.9: anchor 0: 1 − 1.9 + 1 = 0.1; 1: 1 − 0.9 + 1 = 1.1;
        #           2: 1.1 − 0.9 + 1 = 1.2; 3: 1.1 − 2 + 1 = 0.1
        (1.9, (0.1 + 1.1 + 1.2 + 0.1) / 4),
        # x2 = 2.1: anchor 0: 1 − 2.1 + 1 < 0; 1: 1 − 1.1 + 1 = 0.9;
        #           2: 0.9 − 1.1 + 1 = 0.8; 3: 0.9 − 2 + 1 < 0
        (2.1, (0.0 + 0.9 + 0.8 + 0.0) / 4),
    ],
)
def test_batch_hard_triplet_hand_values(x2: float, expected: float) -> None:
    assert float(BatchHardTripletLoss(margin=1.0)(_line(x2), LINE_LABELS)) == pytest.approx(expected)


def test_batch_hard_soft_margin() -> None:
    gaps = [1 - 1.9, 1 - 0.9, 1.1 - 0.9, 1.1 - 2.0]
    expected = np.mean([math.log1p(math.exp(g)) for g in gaps])
    got = float(BatchHardTripletLoss(soft=True)(_line(1.9), LINE_LABELS))
    assert got == pytest.approx(expected)


def test_batch_all_triplet_hand_values() -> None:
    # x2 = 1.9, the 8 valid triplets: (0,1,2) 0.1, (0,1,3) 0, (1,0,2) 1.1, (1,0,3) 0,
    # (2,3,0) 1.1 − 1.9 + 1 = 0.2, (2,3,1) 1.2, (3,2,0) 0, (3,2,1) 1.1 − 2 + 1 = 0.1
    active = [0.1, 1.1, 0.2, 1.2, 0.1]
    e = _line(1.9)
    assert float(BatchAllTripletLoss(margin=1.0)(e, LINE_LABELS)) == pytest.approx(sum(active) / 5)
    assert float(BatchAllTripletLoss(margin=1.0, average="all")(e, LINE_LABELS)) == pytest.approx(
        sum(active) / 8
    )
    # Margin 0.05: only (1,0,2) 1 − 0.9 + 0.05, (2,3,1) 1.1 − 0.9 + 0.05 stay active
    got = float(BatchAllTripletLoss(margin=0.05)(e, LINE_LABELS))
    assert got == pytest.approx((0.15 + 0.25) / 2)


def test_batch_semi_hard_triplet_hand_values() -> None:
    # x2 = 1.9, positive pairs: (0,1) d_ap 1, closest negative farther than 1 is x=1.9 → 0.1;
    # (1,0) d_ap 1, candidates 0.9 (not farther), 2 → 1 − 2 + 1 = 0; (2,3) d_ap 1.1, candidates 1.9 → 0.2;
    # (3,2) d_ap 1.1, candidates 3, 2 → closest 2 → 0.1
    assert float(BatchSemiHardTripletLoss(margin=1.0)(_line(1.9), LINE_LABELS)) == pytest.approx(0.4 / 4)


def test_batch_semi_hard_falls_back_to_the_farthest_negative() -> None:
    e = t([[0.0, 0.0], [2.0, 0.0], [0.8, 0.0], [5.0, 0.0]])
    # (0,1): d_ap 2, farther negatives 5 → 0; (1,0): d_ap 2, negatives 1.2, 3 → 3 → 0;
    # (2,3): d_ap 4.2, negatives 0.8, 1.2: none farther → farthest 1.2 → 4.2 − 1.2 + 1 = 4;
    # (3,2): d_ap 4.2, negatives 5, 3 → 5 → 0.2
    assert float(BatchSemiHardTripletLoss(margin=1.0)(e, LINE_LABELS)) == pytest.approx((4.0 + 0.2) / 4)


def test_labelled_losses_without_valid_triplets_give_zero() -> None:
    e = t([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]).requires_grad_()
    for loss in (BatchAllTripletLoss(), BatchHardTripletLoss(), BatchSemiHardTripletLoss()):
        out = loss(e, torch.tensor([0, 1, 2]))  # no positives at all
        assert out.item() == 0.0
        out.backward()


# Independent brute-force references on random data (numpy + scipy, loops over triplets).


def _np_dist(e: np.ndarray, name: str) -> np.ndarray:
    metric = {"euclidean": "euclidean", "manhattan": "cityblock", "cosine": "cosine"}[name]
    return cdist(e, e, metric)


def _ref_batch_all(e: np.ndarray, labels: np.ndarray, m: float, name: str) -> float:
    d = _np_dist(e, name)
    losses = [
        max(d[a, p] - d[a, n] + m, 0.0)
        for a, p, n in itertools.product(range(len(e)), repeat=3)
        if a != p and labels[a] == labels[p] and labels[n] != labels[a]
    ]
    active = [v for v in losses if v > 0]
    return sum(active) / max(len(active), 1)


def _ref_batch_hard(e: np.ndarray, labels: np.ndarray, m: float, name: str) -> float:
    d = _np_dist(e, name)
    out = []
    for a in range(len(e)):
        pos = [d[a, p] for p in range(len(e)) if p != a and labels[p] == labels[a]]
        neg = [d[a, n] for n in range(len(e)) if labels[n] != labels[a]]
        if pos and neg:
            out.append(max(max(pos) - min(neg) + m, 0.0))
    return float(np.mean(out))


def _ref_semi_hard(e: np.ndarray, labels: np.ndarray, m: float, name: str) -> float:
    d = _np_dist(e, name)
    out = []
    for a, p in itertools.permutations(range(len(e)), 2):
        if labels[a] != labels[p]:
            continue
        negs = [d[a, n] for n in range(len(e)) if labels[n] != labels[a]]
        if not negs:
            continue
        farther = [v for v in negs if v > d[a, p]]
        dn = min(farther) if farther else max(negs)
        out.append(max(d[a, p] - dn + m, 0.0))
    return float(np.mean(out))


@pytest.mark.parametrize("distance", ["euclidean", "manhattan", "cosine"])
@pytest.mark.parametrize(
    ("cls", "ref"),
    [
        (BatchAllTripletLoss, _ref_batch_all),
        (BatchHardTripletLoss, _ref_batch_hard),
        (BatchSemiHardTripletLoss, _ref_semi_hard),
    ],
)
def test_mined_losses_match_brute_force(cls: type, ref: Callable[..., float], distance: str) -> None:
    rng = np.random.default_rng(5)
    e = rng.normal(size=(9, 3))
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2, 3])
    margin = 0.5 if distance == "cosine" else 1.0
    got = float(cls(margin=margin, distance=distance)(torch.from_numpy(e), torch.from_numpy(labels)))
    assert got == pytest.approx(ref(e, labels, margin, distance), rel=1e-9, abs=1e-12)


# ----------------------------------------------------------------------------------------------------------
# Hand-computed values: ranking
# ----------------------------------------------------------------------------------------------------------


def test_mnrl_in_batch_negatives() -> None:
    q = t([[1.0, 0.0], [0.0, 1.0]])
    d = t([[1.0, 0.0], [0.0, 1.0]])  # cos with own positive 1, with the other 0
    assert float(MultipleNegativesRankingLoss(scale=1.0)(q, d)) == pytest.approx(math.log1p(math.exp(-1.0)))
    # scale 20: −log(e^20 / (e^20 + 1))
    assert float(MultipleNegativesRankingLoss()(q, d)) == pytest.approx(math.log1p(math.exp(-20.0)))


def test_mnrl_hard_negatives_and_symmetric() -> None:
    q = t([[1.0, 0.0], [0.0, 1.0]])
    docs = t([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [0.8, 0.6]])  # positives, then one hard negative each
    # query 0 scores [1, 0, 0.6, 0.8]; query 1 scores [0, 1, 0.8, 0.6]: the same loss by symmetry
    forward = -1.0 + math.log(math.exp(1) + math.exp(0) + math.exp(0.6) + math.exp(0.8))
    assert float(MultipleNegativesRankingLoss(scale=1.0)(q, docs)) == pytest.approx(forward)
    # document → query over the positives only: −log(e / (e + 1))
    backward = math.log1p(math.exp(-1.0))
    sym = MultipleNegativesRankingLoss(scale=1.0, symmetric=True)(q, docs)
    assert float(sym) == pytest.approx((forward + backward) / 2)


@pytest.mark.parametrize("distance", ["cosine", "dot", "euclidean"])
@pytest.mark.parametrize("symmetric", [False, True])
def test_mnrl_matches_numpy_reference(distance: str, symmetric: bool) -> None:
    rng = np.random.default_rng(7)
    q, docs = rng.normal(size=(4, 3)), rng.normal(size=(12, 3))  # 2 hard negatives per query
    scale = 3.0

    def sims(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        if distance == "cosine":
            return 1.0 - cdist(u, v, "cosine")
        if distance == "dot":
            return u @ v.T
        return -cdist(u, v, "euclidean")

    def ce(s: np.ndarray) -> float:
        s = scale * s
        return float(np.mean([logsumexp(s[i]) - s[i, i] for i in range(len(s))]))

    expected = ce(sims(q, docs))
    if symmetric:
        expected = (expected + ce(sims(docs[:4], q))) / 2
    loss = MultipleNegativesRankingLoss(scale=scale, symmetric=symmetric, distance=distance)
    assert float(loss(torch.from_numpy(q), torch.from_numpy(docs))) == pytest.approx(expected)


def test_mnrl_checks_document_rows() -> None:
    loss = MultipleNegativesRankingLoss()
    with pytest.raises(ValueError, match=r"N·\(1\+h\)"):
        loss(torch.randn(3, 2), torch.randn(4, 2))
    with pytest.raises(ValueError, match=r"N·\(1\+h\)"):
        loss(torch.randn(3, 2), torch.randn(2, 2))


# ----------------------------------------------------------------------------------------------------------
# gradcheck in float64, inputs away from hinges and ties
# ----------------------------------------------------------------------------------------------------------


def _rand(*shape: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=F64).requires_grad_()


PAIR_CASES = [
    ("contrastive", {"margin": 2.0}, [1, 0, 1, 0, 0]),
    ("contrastive", {"margin": 0.8, "distance": "cosine"}, [1, 0, 1, 0, 0]),
    ("contrastive", {"margin": 3.0, "distance": "manhattan"}, [1, 0, 1, 0, 0]),
    ("online_contrastive", {"margin": 2.5}, [1, 0, 1, 0, 0]),
    ("energy", {}, [1, 0, 1, 0, 0]),
    ("logistic", {}, [1, 0, 1, 0, 0]),
    ("cosine_similarity", {}, [0.9, 0.1, 0.5, 0.3, 0.0]),
    ("cosent", {}, [0.9, 0.1, 0.5, 0.3, 0.0]),
    ("angle", {}, [0.9, 0.1, 0.5, 0.3, 0.0]),
]


@pytest.mark.parametrize(("name", "kwargs", "labels"), PAIR_CASES)
def test_gradcheck_pair_losses(name: str, kwargs: dict[str, object], labels: list[float]) -> None:
    loss = get_loss(name, **kwargs).double()
    a, b = _rand(5, 3, seed=11), _rand(5, 3, seed=12)
    lab = y(labels)
    assert torch.autograd.gradcheck(lambda u, v: loss(u, v, lab), (a, b))


def test_circle_gradient_treats_the_weights_as_constants() -> None:
    """Circle loss stops the gradient through α_p, α_n (Sun et al. 2020), so plain gradcheck, which
    differentiates through them, does not apply; compare with finite differences of the same formula with
    α frozen at the evaluation point instead."""
    m, g = 0.25, 4.0
    a, b = _rand(5, 3, seed=11), _rand(5, 3, seed=12)
    lab = torch.tensor([1, 0, 1, 0, 0])
    analytic = torch.autograd.grad(CircleLoss(margin=m, gamma=g)(a, b, lab), (a, b))

    with torch.no_grad():
        s0 = torch.nn.functional.cosine_similarity(a, b, dim=-1)
        alpha_p = (1 + m - s0[lab == 1]).clamp_min(0)
        alpha_n = (s0[lab == 0] + m).clamp_min(0)

    def frozen(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        s = torch.nn.functional.cosine_similarity(u, v, dim=-1)
        lp = -g * alpha_p * (s[lab == 1] - (1 - m))
        ln = g * alpha_n * (s[lab == 0] - m)
        return torch.log1p(torch.exp(ln).sum() * torch.exp(lp).sum())

    eps = 1e-6
    for x, grad in zip((a, b), analytic, strict=True):
        numeric = torch.zeros_like(x)
        with torch.no_grad():
            for idx in itertools.product(*(range(k) for k in x.shape)):
                x[idx] += eps
                up = frozen(a, b)
                x[idx] -= 2 * eps
                down = frozen(a, b)
                x[idx] += eps
                numeric[idx] = (up - down) / (2 * eps)
        torch.testing.assert_close(grad, numeric, rtol=1e-5, atol=1e-7)


def test_gradcheck_logistic_parameters() -> None:
    loss = LogisticLoss(w=1.5, b=0.3).double()
    a, b = _rand(4, 3, seed=13), _rand(4, 3, seed=14)
    lab = y([1, 0, 0, 1])
    raw_w = loss.raw_w.detach().clone().requires_grad_()
    bias = loss.b.detach().clone().requires_grad_()

    def f(u: torch.Tensor, v: torch.Tensor, rw: torch.Tensor, bb: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(loss, {"raw_w": rw, "b": bb}, (u, v, lab))

    assert torch.autograd.gradcheck(f, (a, b, raw_w, bias))


@pytest.mark.parametrize("distance", ["euclidean", "cosine", "manhattan", "dot"])
def test_gradcheck_triplet(distance: str) -> None:
    loss = TripletLoss(margin=5.0, distance=distance).double()  # margin large: every hinge active
    args = (_rand(4, 3, seed=21), _rand(4, 3, seed=22), _rand(4, 3, seed=23))
    assert torch.autograd.gradcheck(loss, args)


@pytest.mark.parametrize(
    ("cls", "kwargs"),
    [
        (BatchAllTripletLoss, {"margin": 1.0}),
        (BatchHardTripletLoss, {"margin": 1.0}),
        (BatchHardTripletLoss, {"soft": True, "distance": "cosine"}),
        (BatchSemiHardTripletLoss, {"margin": 1.0}),
    ],
)
def test_gradcheck_labelled_losses(cls: type, kwargs: dict[str, object]) -> None:
    loss = cls(**kwargs).double()
    e = _rand(8, 3, seed=31)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 0, 1])
    assert torch.autograd.gradcheck(lambda x: loss(x, labels), (e,))


@pytest.mark.parametrize("symmetric", [False, True])
def test_gradcheck_mnrl(symmetric: bool) -> None:
    loss = MultipleNegativesRankingLoss(scale=5.0, symmetric=symmetric).double()
    assert torch.autograd.gradcheck(loss, (_rand(3, 4, seed=41), _rand(6, 4, seed=42)), fast_mode=True)


# ----------------------------------------------------------------------------------------------------------
# Learning: a tiny linear tower trained on synthetic classes separates held-out items
# ----------------------------------------------------------------------------------------------------------
#
# 6 classes in 16-D: the class signal lives in 4 dimensions (centres ~N(0, 1), spread 0.2), the other 12 are
# noise of std 2. A random tower mixes the noise in, so held-out same-class pairs are barely closer than
# different-class pairs (AUC ≈ 0.55); a trained one must learn to drop the noise dimensions.

N_CLASSES, DIM, SIGNAL = 6, 16, 4


def _dataset() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    centres = torch.zeros(N_CLASSES, DIM)
    centres[:, :SIGNAL] = torch.randn(N_CLASSES, SIGNAL, generator=g)
    labels = torch.arange(N_CLASSES).repeat_interleave(30)
    x = centres[labels].clone()
    x[:, :SIGNAL] += 0.2 * torch.randn(len(labels), SIGNAL, generator=g)
    x[:, SIGNAL:] += 2.0 * torch.randn(len(labels), DIM - SIGNAL, generator=g)
    perm = torch.randperm(len(labels), generator=g)
    train, test = perm[:120], perm[120:]
    return x[train], labels[train], x[test], labels[test]


X_TRAIN, Y_TRAIN, X_TEST, Y_TEST = _dataset()


def _separation(tower: nn.Module, distance: str) -> tuple[float, float, float]:
    """(AUC, mean positive-pair distance, mean negative-pair distance) over all held-out pairs."""
    d = get_distance(distance)
    with torch.no_grad():
        e = tower(X_TEST)
        dist = d.as_distance(d.matrix(e, e))
    i, j = torch.triu_indices(len(Y_TEST), len(Y_TEST), 1)
    values, same = dist[i, j], Y_TEST[i] == Y_TEST[j]
    pos, neg = values[same], values[~same]
    auc = (pos[:, None] < neg[None, :]).double().mean().item()
    return auc, pos.mean().item(), neg.mean().item()


_YT = Y_TRAIN.numpy()
_POS = [np.flatnonzero((_YT[a] == _YT) & (np.arange(len(_YT)) != a)) for a in range(len(_YT))]
_NEG = [np.flatnonzero(_YT[a] != _YT) for a in range(len(_YT))]


def _other(rng: np.random.Generator, anchor: int, same: bool) -> int:
    cands = _POS[anchor] if same else _NEG[anchor]
    return int(cands[rng.integers(len(cands))])


def _pair_batch(rng: np.random.Generator, n: int = 32) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    i = rng.integers(len(_YT), size=n)
    same = rng.random(n) < 0.5
    j = [_other(rng, a, s) for a, s in zip(i, same, strict=True)]
    return X_TRAIN[i], X_TRAIN[j], torch.from_numpy(same.astype(np.int64))


def _triplet_batch(rng: np.random.Generator, n: int = 32) -> tuple[torch.Tensor, ...]:
    i = rng.integers(len(_YT), size=n)
    p = [_other(rng, a, True) for a in i]
    q = [_other(rng, a, False) for a in i]
    return X_TRAIN[i], X_TRAIN[p], X_TRAIN[q]


def _labelled_batch(rng: np.random.Generator, n: int = 24) -> tuple[torch.Tensor, torch.Tensor]:
    i = rng.permutation(len(_YT))[:n]
    return X_TRAIN[i], Y_TRAIN[i]


def _ranking_batch(rng: np.random.Generator, hard: int) -> tuple[torch.Tensor, torch.Tensor]:
    # one query per class, so no other query's positive is secretly a positive too
    queries = [int(rng.choice(np.flatnonzero(c == _YT))) for c in range(N_CLASSES)]
    docs = [_other(rng, q, True) for q in queries]
    for _ in range(hard):
        docs += [_other(rng, q, False) for q in queries]
    return X_TRAIN[queries], X_TRAIN[docs]


def _train(loss: nn.Module, family: str, steps: int = 200, lr: float = 0.02, **batch: int) -> nn.Module:
    torch.manual_seed(0)
    tower = nn.Linear(DIM, 8)
    opt = torch.optim.Adam([*tower.parameters(), *loss.parameters()], lr=lr)
    g = np.random.default_rng(1)
    for _ in range(steps):
        if family == "pair":
            a, b, lab = _pair_batch(g)
            out = loss(tower(a), tower(b), lab)
        elif family == "scores":
            a, b, lab = _pair_batch(g)
            out = loss(tower(a), tower(b), lab.double())
        elif family == "triplet":
            out = loss(*(tower(v) for v in _triplet_batch(g)))
        elif family == "labelled":
            e, lab = _labelled_batch(g)
            out = loss(tower(e), lab)
        else:
            q, d = _ranking_batch(g, **batch)
            out = loss(tower(q), tower(d))
        opt.zero_grad(set_to_none=True)
        out.backward()
        opt.step()
    return tower


LEARNING_CASES = [
    ("contrastive", {}, "pair", "euclidean"),
    ("contrastive", {"distance": "cosine", "margin": 0.5}, "pair", "cosine"),
    ("contrastive", {"distance": "manhattan", "margin": 2.0}, "pair", "manhattan"),
    ("online_contrastive", {}, "pair", "euclidean"),
    ("energy", {}, "pair", "euclidean"),
    ("logistic", {}, "pair", "euclidean"),
    ("circle", {}, "pair", "cosine"),
    ("cosine_similarity", {}, "scores", "cosine"),
    ("cosent", {}, "scores", "cosine"),
    ("angle", {}, "scores", "cosine"),
    ("triplet", {}, "triplet", "euclidean"),
    ("triplet", {"distance": "cosine", "margin": 0.3}, "triplet", "cosine"),
    ("triplet", {"distance": "manhattan", "margin": 2.0}, "triplet", "manhattan"),
    ("batch_all_triplet", {}, "labelled", "euclidean"),
    ("batch_hard_triplet", {}, "labelled", "euclidean"),
    ("batch_semi_hard_triplet", {}, "labelled", "euclidean"),
    ("multiple_negatives_ranking", {}, "ranking", "cosine"),
]


def test_untrained_tower_does_not_separate() -> None:
    torch.manual_seed(0)
    for distance in ("euclidean", "cosine", "manhattan"):
        auc, _, _ = _separation(nn.Linear(DIM, 8), distance)
        assert auc < 0.7


@pytest.mark.parametrize(("name", "kwargs", "family", "distance"), LEARNING_CASES)
def test_learning_separates_held_out_classes(
    name: str, kwargs: dict[str, object], family: str, distance: str
) -> None:
    loss = get_loss(name, **kwargs)
    tower = _train(loss, family, hard=0)
    auc, pos, neg = _separation(tower, distance)
    assert pos < neg, f"{name}: positive pairs {pos:.3f} not closer than negative pairs {neg:.3f}"
    assert auc > 0.95, f"{name}: held-out AUC {auc:.3f}"


@pytest.mark.parametrize("symmetric", [False, True])
def test_learning_mnrl_with_hard_negatives(symmetric: bool) -> None:
    loss = MultipleNegativesRankingLoss(symmetric=symmetric)
    tower = _train(loss, "ranking", hard=2)
    auc, pos, neg = _separation(tower, "cosine")
    assert pos < neg and auc > 0.95


def test_learning_logistic_gives_calibrated_probabilities() -> None:
    loss = LogisticLoss()
    tower = _train(loss, "pair", steps=300, hard=0)
    w, _ = loss.calibration
    assert w > 0
    with torch.no_grad():
        e = tower(X_TEST)
        d = get_distance("euclidean").matrix(e, e)
        p = loss.probability(d)
    i, j = torch.triu_indices(len(Y_TEST), len(Y_TEST), 1)
    same = (Y_TEST[i] == Y_TEST[j]).double()
    probs = p[i, j].double()
    # held-out log loss far below the 0.5-everywhere baseline, and mean probability near the positive rate
    log_loss = -(same * probs.clamp_min(1e-7).log() + (1 - same) * (1 - probs).clamp_min(1e-7).log()).mean()
    assert float(log_loss) < 0.3 * math.log(2)
    assert abs(float(probs.mean() - same.mean())) < 0.1


# ----------------------------------------------------------------------------------------------------------
# Every registered loss: a finite scalar with a gradient, on CPU and (where there is one) on CUDA
# ----------------------------------------------------------------------------------------------------------


def _example_inputs(name: str, device: str = "cpu") -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(9)

    def r(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g).to(device).requires_grad_()

    family = LOSSES[name].family
    if family == "pair":
        if name in ("cosine_similarity", "cosent", "angle"):
            labels = torch.tensor([0.9, 0.1, 0.5, 0.3, 0.0, 1.0])
        else:
            labels = torch.tensor([1, 0, 1, 0, 0, 1])
        return r(6, 4), r(6, 4), labels.to(device)
    if family == "triplet":
        return r(6, 4), r(6, 4), r(6, 4)
    if family == "labelled":
        return r(8, 4), torch.tensor([0, 0, 1, 1, 2, 2, 0, 1], device=device)
    return r(4, 4), r(8, 4)


@pytest.mark.parametrize("name", list(LOSSES))
def test_every_loss_gives_a_finite_scalar_and_gradient(name: str) -> None:
    inputs = _example_inputs(name)
    out = get_loss(name)(*inputs)
    assert out.shape == () and bool(torch.isfinite(out))
    out.backward()
    grads = [x.grad for x in inputs if x.requires_grad]
    assert grads and all(gr is not None and bool(torch.isfinite(gr).all()) for gr in grads)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", list(LOSSES))
def test_every_loss_on_cuda_matches_cpu_and_runs_under_bf16_autocast(name: str) -> None:
    cpu = get_loss(name)(*_example_inputs(name)).item()
    loss = get_loss(name).to("cuda")
    assert loss(*_example_inputs(name, "cuda")).item() == pytest.approx(cpu, rel=1e-4, abs=1e-5)
    inputs = _example_inputs(name, "cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = loss(*inputs)
    assert bool(torch.isfinite(out))
    out.float().backward()
    assert all(x.grad is not None for x in inputs if x.requires_grad)


@pytest.mark.parametrize("name", list(LOSSES))
def test_every_loss_refuses_an_empty_batch(name: str) -> None:
    inputs = tuple(x[:0] for x in _example_inputs(name))
    with pytest.raises(ValueError, match=r"empty|N·"):
        get_loss(name)(*inputs)
