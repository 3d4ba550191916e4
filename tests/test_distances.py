"""Distances: hand-computed values, pair/matrix agreement, scipy's cdist as an independent reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist

from textsiamese.errors import ConfigError
from textsiamese.model.distances import DISTANCES, Distance, get_distance

NAMES = ["cosine", "dot", "euclidean", "squared_euclidean", "manhattan"]

# Two aligned pairs: (1, 0)–(3, 4) and (1, 1)–(0, 2).
A = torch.tensor([[1.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
B = torch.tensor([[3.0, 4.0], [0.0, 2.0]], dtype=torch.float64)
HAND = {
    "cosine": [3 / 5, 2 / (math.sqrt(2) * 2)],
    "dot": [3.0, 2.0],
    "euclidean": [math.sqrt(4 + 16), math.sqrt(1 + 1)],
    "squared_euclidean": [20.0, 2.0],
    "manhattan": [2 + 4, 1 + 1],
}


def _scipy_matrix(name: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if name == "cosine":
        return 1.0 - cdist(a, b, "cosine")
    if name == "dot":
        return a @ b.T
    metric = {"euclidean": "euclidean", "squared_euclidean": "sqeuclidean", "manhattan": "cityblock"}[name]
    return cdist(a, b, metric)


def test_registry_holds_the_five_measures() -> None:
    assert sorted(DISTANCES) == sorted(NAMES)
    for name, cls in DISTANCES.items():
        assert cls.name == name
        assert isinstance(get_distance(name), Distance)


def test_direction_flags() -> None:
    assert get_distance("cosine").higher_is_closer and get_distance("dot").higher_is_closer
    for name in ("euclidean", "squared_euclidean", "manhattan"):
        assert not get_distance(name).higher_is_closer


@pytest.mark.parametrize("name", NAMES)
def test_pairwise_hand_values(name: str) -> None:
    got = get_distance(name).pairwise(A, B)
    assert got.shape == (2,)
    assert got.tolist() == pytest.approx(HAND[name], abs=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_matrix_matches_scipy_cdist(name: str) -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 3)), rng.normal(size=(4, 3))
    got = get_distance(name).matrix(torch.from_numpy(a), torch.from_numpy(b))
    assert got.shape == (5, 4)
    np.testing.assert_allclose(got.numpy(), _scipy_matrix(name, a, b), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", NAMES)
def test_matrix_matches_scipy_in_float32(name: str) -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(6, 8)), rng.normal(size=(3, 8))
    got = get_distance(name).matrix(torch.from_numpy(a).float(), torch.from_numpy(b).float())
    np.testing.assert_allclose(got.double().numpy(), _scipy_matrix(name, a, b), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["euclidean", "squared_euclidean"])
def test_matrix_stays_accurate_far_from_the_origin(name: str) -> None:
    """float32, points at 1000 + small offsets: without centring, ‖a‖² − 2a·b + ‖b‖² loses every digit."""
    rng = np.random.default_rng(4)
    a, b = 1000.0 + 0.01 * rng.normal(size=(5, 8)), 1000.0 + 0.01 * rng.normal(size=(4, 8))
    got = get_distance(name).matrix(torch.from_numpy(a).float(), torch.from_numpy(b).float())
    # float32 inputs are themselves rounded by ~6e-5 at 1000; compare with the rounded inputs in float64
    a32, b32 = a.astype(np.float32).astype(np.float64), b.astype(np.float32).astype(np.float64)
    np.testing.assert_allclose(got.double().numpy(), _scipy_matrix(name, a32, b32), rtol=1e-3)


@pytest.mark.parametrize("name", NAMES)
def test_pairwise_is_the_matrix_diagonal(name: str) -> None:
    g = torch.Generator().manual_seed(2)
    a, b = (
        torch.randn(7, 4, generator=g, dtype=torch.float64),
        torch.randn(7, 4, generator=g, dtype=torch.float64),
    )
    d = get_distance(name)
    torch.testing.assert_close(d.pairwise(a, b), d.matrix(a, b).diagonal())


@pytest.mark.parametrize("name", NAMES)
def test_gradcheck(name: str) -> None:
    g = torch.Generator().manual_seed(3)
    a = torch.randn(3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, 4, generator=g, dtype=torch.float64, requires_grad=True)
    d = get_distance(name)
    assert torch.autograd.gradcheck(lambda x, y: d.matrix(x, y), (a, b))
    assert torch.autograd.gradcheck(lambda x, y: d.pairwise(x, y), (a[:2], b))


def test_euclidean_gradient_is_zero_not_nan_for_identical_embeddings() -> None:
    d = get_distance("euclidean")
    a = torch.tensor([[1.0, 2.0], [0.5, -1.0]], requires_grad=True)
    d.pairwise(a, a.detach().clone()).sum().backward()
    assert a.grad is not None and torch.equal(a.grad, torch.zeros_like(a))
    b = torch.tensor([[1.0, 2.0], [0.5, -1.0]], requires_grad=True)
    d.matrix(b, b).sum().backward()
    assert b.grad is not None and bool(torch.isfinite(b.grad).all())


def test_views_of_the_values() -> None:
    cos = get_distance("cosine")
    v = torch.tensor([0.6, -0.2])
    assert cos.as_distance(v).tolist() == pytest.approx([-0.6, 0.2])
    assert cos.as_similarity(v).tolist() == pytest.approx([0.6, -0.2])
    assert cos.dissimilarity(v).tolist() == pytest.approx([0.4, 1.2])  # 1 − cos
    euc = get_distance("euclidean")
    assert euc.as_similarity(torch.tensor([2.0])).tolist() == [-2.0]
    assert euc.dissimilarity(torch.tensor([2.0])).tolist() == [2.0]
    assert not get_distance("dot").has_dissimilarity
    with pytest.raises(ConfigError, match="dot"):
        get_distance("dot").dissimilarity(v)


def test_unknown_name_and_instance_passthrough() -> None:
    with pytest.raises(ConfigError, match="unknown distance 'hamming'"):
        get_distance("hamming")
    inst = get_distance("manhattan")
    assert get_distance(inst) is inst
