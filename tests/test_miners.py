"""Miners: hand-picked index tuples on points along a line, brute-force references on random batches, and
the split "mine indices without gradients, score them with a pair or triplet loss"."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist

from textsiamese.errors import ConfigError
from textsiamese.losses import BatchHardTripletLoss, BatchSemiHardTripletLoss, ContrastiveLoss, TripletLoss
from textsiamese.losses.labels import LabelError
from textsiamese.losses.miners import (
    MINERS,
    AllTripletsMiner,
    BatchHardMiner,
    HardPairMiner,
    PairIndices,
    SemiHardMiner,
    TripletIndices,
    get_miner,
)

F64 = torch.float64
LABELS = torch.tensor([0, 0, 1, 1])


def line(*xs: float) -> torch.Tensor:
    """Points on the x axis of the plane."""
    return torch.tensor([[x, 0.0] for x in xs], dtype=F64)


# x = 0, 1, 1.9, 3 with classes 0, 0, 1, 1.
# Distances: d01 = 1, d02 = 1.9, d03 = 3, d12 = 0.9, d13 = 2, d23 = 1.1.
E = line(0.0, 1.0, 1.9, 3.0)


def triples(t: TripletIndices) -> list[tuple[int, int, int]]:
    return list(zip(t.anchor.tolist(), t.positive.tolist(), t.negative.tolist(), strict=True))


def test_registry() -> None:
    assert set(MINERS) == {"all_triplets", "batch_hard", "semi_hard", "hard_pairs"}
    assert isinstance(get_miner("semi_hard", margin=0.5), SemiHardMiner)
    with pytest.raises(ConfigError, match="unknown miner"):
        get_miner("random")
    with pytest.raises(ConfigError, match="accepts"):
        get_miner("batch_hard", margin=1.0)
    with pytest.raises(ConfigError, match="margin"):
        SemiHardMiner(margin=0.0)


def test_batch_hard_hand() -> None:
    # anchor 0: farthest positive 1, closest negative 2 (1.9 < 3); anchor 1: 0, 2 (0.9 < 2);
    # anchor 2: 3, 1 (0.9 < 1.9); anchor 3: 2, 1 (2 < 3)
    assert triples(BatchHardMiner()(E, LABELS)) == [(0, 1, 2), (1, 0, 2), (2, 3, 1), (3, 2, 1)]


def test_batch_hard_skips_anchors_without_positive_or_negative() -> None:
    got = BatchHardMiner()(line(0.0, 1.0, 5.0), torch.tensor([0, 0, 1]))
    assert triples(got) == [(0, 1, 2), (1, 0, 2)]  # anchor 2 has no positive
    assert len(BatchHardMiner()(line(0.0, 1.0), torch.tensor([3, 3]))) == 0  # no negatives at all


def test_batch_hard_ties_go_to_the_lowest_index() -> None:
    # anchor 0 has two negatives at distance 2 (x = 2 and x = −2)
    got = BatchHardMiner()(line(0.0, 1.0, 2.0, -2.0), torch.tensor([0, 0, 1, 1]))
    assert triples(got)[0] == (0, 1, 2)


def test_semi_hard_hand() -> None:
    # (0,1): d_ap 1, negatives 1.9, 3 → 2; (1,0): d_ap 1, negatives 0.9, 2 → 3;
    # (2,3): d_ap 1.1, negatives 1.9, 0.9 → 0; (3,2): d_ap 1.1, negatives 3, 2 → 1
    assert triples(SemiHardMiner()(E, LABELS)) == [(0, 1, 2), (1, 0, 3), (2, 3, 0), (3, 2, 1)]


def test_semi_hard_with_margin_keeps_strict_semi_hard_only() -> None:
    # margin 1: keep d_ap < d_an < d_ap + 1. (1,0,3) has d_an = 2 = d_ap + 1 and is dropped.
    assert triples(SemiHardMiner(margin=1.0)(E, LABELS)) == [(0, 1, 2), (2, 3, 0), (3, 2, 1)]
    # margin 0.85: (2,3,0) 1.9 < 1.95 stays, (0,1,2) 1.9 ≥ 1.85 and (3,2,1) 2 ≥ 1.95 go
    assert triples(SemiHardMiner(margin=0.85)(E, LABELS)) == [(2, 3, 0)]


def test_semi_hard_fallback_to_farthest_negative() -> None:
    # x = 0, 2, 0.8, 5: for (2,3) d_ap = 4.2 and both negatives (0.8, 1.2) are closer → farthest, index 1
    got = triples(SemiHardMiner()(line(0.0, 2.0, 0.8, 5.0), LABELS))
    assert (2, 3, 1) in got
    assert (2, 3, 1) not in triples(SemiHardMiner(margin=1.0)(line(0.0, 2.0, 0.8, 5.0), LABELS))


def test_all_triplets() -> None:
    labels = torch.tensor([0, 0, 0, 1, 2, 2])
    got = set(triples(AllTripletsMiner()(torch.zeros(6, 2), labels)))
    lab = labels.tolist()
    expected = {
        (a, p, n)
        for a, p, n in itertools.product(range(6), repeat=3)
        if a != p and lab[a] == lab[p] and lab[n] != lab[a]
    }
    assert got == expected
    assert len(expected) == 3 * 2 * 3 + 2 * 1 * 4  # class 0: 3 anchors × 2 positives × 3 negatives; class 2


def test_hard_pairs_hand() -> None:
    # positive pairs (0,1) 1 and (2,3) 1.1; negative pairs (0,2) 1.9, (0,3) 3, (1,2) 0.9, (1,3) 2.
    # Closest negative 0.9: both positives are hard. Farthest positive 1.1: only (1,2) is a hard negative.
    pairs = HardPairMiner()(E, LABELS)
    assert list(zip(pairs.left.tolist(), pairs.right.tolist(), pairs.labels.tolist(), strict=True)) == [
        (0, 1, 1.0),
        (1, 2, 0.0),
        (2, 3, 1.0),
    ]


def test_hard_pairs_feed_a_pair_loss() -> None:
    e = E.clone().requires_grad_()
    pairs = HardPairMiner()(e, LABELS)
    assert isinstance(pairs, PairIndices)
    loss = ContrastiveLoss(margin=1.0)(*pairs.gather(e))
    assert loss.item() == pytest.approx((1.0**2 + (1.0 - 0.9) ** 2 + 1.1**2) / 3)
    loss.backward()
    assert e.grad is not None and bool(e.grad.abs().sum() > 0)


def test_mined_triplets_feed_the_explicit_triplet_loss() -> None:
    """Mining + TripletLoss gives the batch-hard and semi-hard losses, gradients included."""
    for miner, mined_loss in (
        (BatchHardMiner(), BatchHardTripletLoss()),
        (SemiHardMiner(), BatchSemiHardTripletLoss()),
    ):
        e1 = E.clone().requires_grad_()
        e2 = E.clone().requires_grad_()
        via_miner = TripletLoss(margin=1.0)(*miner(e1, LABELS).gather(e1))
        direct = mined_loss(e2, LABELS)
        assert via_miner.item() == pytest.approx(direct.item())
        via_miner.backward()
        direct.backward()
        torch.testing.assert_close(e1.grad, e2.grad)


def test_miners_return_plain_indices_without_gradients() -> None:
    e = E.clone().requires_grad_()
    for miner in (AllTripletsMiner(), BatchHardMiner(), SemiHardMiner(), HardPairMiner()):
        out = miner(e, LABELS)
        for field in out.__dataclass_fields__:
            value = getattr(out, field)
            assert not value.requires_grad
        assert out.__class__ in (TripletIndices, PairIndices)


def test_miners_check_labels() -> None:
    with pytest.raises(LabelError, match="whole numbers"):
        BatchHardMiner()(E, torch.tensor([0.0, 0.5, 1.0, 1.0]))
    with pytest.raises(LabelError, match="shape"):
        SemiHardMiner()(E, torch.tensor([0, 1]))


# Brute-force references on a random batch, for every measure (similarities mined by "larger is closer").


def _np_dist(e: np.ndarray, name: str) -> np.ndarray:
    if name == "dot":
        return -(e @ e.T)
    if name == "cosine":
        return cdist(e, e, "cosine")
    return cdist(
        e, e, {"euclidean": "euclidean", "manhattan": "cityblock", "squared_euclidean": "sqeuclidean"}[name]
    )


@pytest.mark.parametrize("distance", ["euclidean", "squared_euclidean", "manhattan", "cosine", "dot"])
def test_batch_hard_and_semi_hard_match_brute_force(distance: str) -> None:
    rng = np.random.default_rng(3)
    e = rng.normal(size=(10, 3))
    lab = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 3])
    d = _np_dist(e, distance)
    n = len(e)

    hard = []
    for a in range(n):
        pos = [p for p in range(n) if p != a and lab[p] == lab[a]]
        neg = [q for q in range(n) if lab[q] != lab[a]]
        if pos and neg:
            hard.append((a, max(pos, key=lambda p: d[a, p]), min(neg, key=lambda q: d[a, q])))

    semi = []
    for a, p in itertools.permutations(range(n), 2):
        neg = [q for q in range(n) if lab[q] != lab[a]]
        if lab[a] != lab[p] or not neg:
            continue
        farther = [q for q in neg if d[a, q] > d[a, p]]
        semi.append(
            (a, p, min(farther, key=lambda q: d[a, q]) if farther else max(neg, key=lambda q: d[a, q]))
        )

    emb, labels = torch.from_numpy(e), torch.from_numpy(lab)
    assert triples(BatchHardMiner(distance)(emb, labels)) == hard
    assert sorted(triples(SemiHardMiner(distance=distance)(emb, labels))) == sorted(semi)


def test_miners_refuse_an_empty_batch() -> None:
    for miner in (AllTripletsMiner(), BatchHardMiner(), SemiHardMiner(), HardPairMiner()):
        with pytest.raises(ValueError, match="non-empty"):
            miner(torch.zeros(0, 2), torch.zeros(0, dtype=torch.long))
