"""The tower interface: text → token ids → padded features → one vector per text.

Tokenizing is split from padding so a corpus (or a training set) is tokenized once, sorted into
similar-length batches, and padded per batch. A tower saves its own assets (tokenizer, vocabulary,
architecture) into a folder; the model saves all weights together in one safetensors file.
"""

from __future__ import annotations

import itertools
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from textsiamese.errors import ConfigError


@dataclass
class Tokenized:
    """Token ids per text (already truncated) and how many texts were cut at the maximum length.

    ``lengths``: each text's whole token count (special tokens included, before truncation), where the
    tower measures it; ``None`` means only ``len(ids[i])`` is known."""

    ids: list[list[int]]
    truncated: int = 0
    lengths: list[int] | None = None


class Tower(nn.Module, ABC):
    """Encodes texts into fixed-size vectors. Subclasses register under ``kind`` in ``TOWERS``."""

    kind: ClassVar[str]

    @property
    @abstractmethod
    def dimension(self) -> int:
        """Size of the output vectors."""

    @property
    @abstractmethod
    def max_length(self) -> int:
        """Longest token sequence the tower reads; longer texts are truncated (and counted)."""

    @abstractmethod
    def tokenize(self, texts: Sequence[str]) -> Tokenized:
        """Token ids of each text, truncated to ``max_length``."""

    @abstractmethod
    def collate(self, ids: Sequence[Sequence[int]]) -> dict[str, torch.Tensor]:
        """Pad a batch of id lists to its longest member: the features ``forward`` takes."""

    @abstractmethod
    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """(batch, dimension) embeddings, not normalised."""

    @abstractmethod
    def config(self) -> dict[str, Any]:
        """JSON-serialisable settings that, with the saved assets, rebuild this tower's architecture."""

    @abstractmethod
    def save_assets(self, directory: Path) -> None:
        """Write tokenizer / vocabulary / architecture files (not the weights) into ``directory``."""

    @classmethod
    @abstractmethod
    def from_assets(cls, config: dict[str, Any], directory: Path) -> Tower:
        """Rebuild the architecture from ``config`` and saved assets, with untrained weights."""

    def content_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text whole (not truncated) and without special tokens: what chunk-then-pool
        (``inference.long_text``) cuts into windows. Towers that cannot say refuse by name."""
        raise ConfigError(f"{type(self).__name__} cannot encode long texts in chunks (long_text='chunk')")

    def special_ids(self) -> tuple[list[int], list[int]]:
        """The ids this tower puts before and after a text's own tokens (none by default)."""
        return [], []

    def features(
        self, texts: Sequence[str], device: torch.device | str | None = None
    ) -> dict[str, torch.Tensor]:
        """Tokenize and pad ``texts`` in one step (for small batches and tests)."""
        batch = self.collate(self.tokenize(texts).ids)
        return {k: v.to(device) for k, v in batch.items()} if device is not None else batch


def pad_ids(ids: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad id lists into an (B, L) long tensor and its 0/1 attention mask.

    Vectorised: the rows are flattened once in C (``itertools.chain``) and scattered through a boolean
    mask, so the cost has no per-row Python step (a batch of 512 pads in well under a millisecond).
    """
    lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
    width = int(lengths.max(initial=0)) or 1
    flat = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int64, count=int(lengths.sum()))
    return pad_flat(flat, lengths, width, pad_id)


def pad_flat(
    flat: np.ndarray, lengths: np.ndarray, width: int, pad_id: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows stored back to back in ``flat`` (row ``i`` has ``lengths[i]`` ids) → padded ids and mask."""
    valid = np.arange(width, dtype=np.int64)[None, :] < lengths[:, None]
    input_ids = np.full((len(lengths), width), pad_id, dtype=np.int64)
    input_ids[valid] = flat  # row-major boolean assignment fills each row's prefix in order
    return torch.from_numpy(input_ids), torch.from_numpy(valid.astype(np.int64))
