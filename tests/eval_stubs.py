"""A model stand-in with fixed vectors per text, so evaluator tests know every score exactly."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from textsiamese.model.distances import get_distance


class VectorModel:
    """Looks up each text's vector (per role, when ``document`` vectors are given separately)."""

    def __init__(
        self,
        vectors: Mapping[str, Sequence[float]],
        document_vectors: Mapping[str, Sequence[float]] | None = None,
        calibration: dict[str, Any] | None = None,
    ) -> None:
        self.vectors = {k: np.asarray(v, dtype=np.float32) for k, v in vectors.items()}
        self.document_vectors = (
            None
            if document_vectors is None
            else {k: np.asarray(v, dtype=np.float32) for k, v in document_vectors.items()}
        )
        self.calibration = calibration
        self.similarity_metric = "cosine"
        self.source = "<stub>"
        self.calls: list[tuple[str, int]] = []

    @property
    def is_shared(self) -> bool:
        return self.document_vectors is None

    @property
    def dimension(self) -> int:
        return len(next(iter(self.vectors.values())))

    def fingerprint(self) -> str:
        return "stub-" + str(sorted((k, v.tolist()) for k, v in self.vectors.items()).__hash__())

    def encode(self, texts: Sequence[str], role: str = "query", **_: Any) -> np.ndarray:
        self.calls.append((role, len(texts)))
        table = self.vectors if role == "query" or self.document_vectors is None else self.document_vectors
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return np.stack([table[t] for t in texts])

    def encode_pairs(self, a: Sequence[str], b: Sequence[str], **_: Any) -> tuple[np.ndarray, np.ndarray]:
        return self.encode(a, role="query"), self.encode(b, role="document")

    def similarity(
        self, a: Sequence[str], b: Sequence[str], metric: str | None = None, **_: Any
    ) -> np.ndarray:
        x, y = self.encode_pairs(a, b)
        distance = get_distance(metric or self.similarity_metric)
        return distance.pairwise(torch.from_numpy(x), torch.from_numpy(y)).numpy()


def angle_vectors(angles: Mapping[str, float]) -> dict[str, list[float]]:
    """2-D unit vectors at the given angles (radians): cos of the angle between two is their similarity."""
    return {k: [float(np.cos(a)), float(np.sin(a))] for k, a in angles.items()}
