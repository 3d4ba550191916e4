"""Shared fixtures for the search tests: clustered vectors, a brute-force numpy oracle and a toy encoder."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np


def clustered(
    count: int, dimension: int, clusters: int = 30, spread: float = 0.6, seed: int = 0
) -> np.ndarray:
    """Gaussian blobs around random centres: shaped like real embedding sets, where IVF and HNSW matter."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dimension)).astype(np.float32)
    members = rng.integers(0, clusters, size=count)
    return (centres[members] + spread * rng.standard_normal((count, dimension))).astype(np.float32)


def normalise(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def exact_scores(queries: np.ndarray, corpus: np.ndarray, metric: str) -> np.ndarray:
    """(Q, N) scores by numpy alone: cosine, dot, or euclidean distance."""
    q, c = queries.astype(np.float64), corpus.astype(np.float64)
    if metric == "cosine":
        return normalise(q) @ normalise(c).T
    if metric == "dot":
        return q @ c.T
    return np.sqrt(np.maximum(((q[:, None, :] - c[None, :, :]) ** 2).sum(-1), 0.0))


def exact_topk(queries: np.ndarray, corpus: np.ndarray, k: int, metric: str = "cosine") -> np.ndarray:
    """Row positions of the exact top-k by numpy (best first)."""
    scores = exact_scores(queries, corpus, metric)
    order = np.argsort(scores if metric == "euclidean" else -scores, axis=1, kind="stable")
    return order[:, :k]


def recall(found: Sequence[Sequence[str]], truth: Sequence[Sequence[str]]) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth, strict=True)]))


class ToyEncoder:
    """A deterministic bag-of-words encoder: each word gets a fixed random vector, a text their sum.

    Texts sharing words are close, so search results are predictable without a neural network. The query
    role adds nothing (a shared tower); ``salt`` changes every vector and the fingerprint, like another model.
    """

    def __init__(self, dimension: int = 32, salt: str = "toy") -> None:
        self.dimension = dimension
        self.salt = salt
        self.normalize = True
        self.is_shared = True
        self.calls: list[tuple[str, int]] = []

    def fingerprint(self) -> str:
        return hashlib.sha256(f"{self.salt}:{self.dimension}".encode()).hexdigest()

    def _word(self, word: str) -> np.ndarray:
        seed = int.from_bytes(hashlib.sha256(f"{self.salt}|{word}".encode()).digest()[:8], "little")
        return np.random.default_rng(seed).standard_normal(self.dimension).astype(np.float32)

    def encode(
        self, texts: Sequence[str], role: str = "query", batch_size: int = 64, **kwargs: Any
    ) -> np.ndarray:
        self.calls.append((role, len(texts)))
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().split():
                out[row] += self._word(word)
            if not text.split():
                out[row] = self._word("<empty>")
        return normalise(out).astype(np.float32)
