"""Pooling of token vectors (B, L, H) into one vector per text (B, H), ignoring padding.

``mean`` averages the real tokens, ``max`` takes the element-wise maximum over them, ``cls`` takes the
first token. These match sentence-transformers' Pooling modes of the same names.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from textsiamese.errors import ConfigError


def mean_pool(tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Average of the unmasked token vectors."""
    weights = mask.unsqueeze(-1).to(tokens.dtype)
    return (tokens * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1e-9)


def max_pool(tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Element-wise maximum over the unmasked token vectors."""
    filled = tokens.masked_fill(mask.unsqueeze(-1) == 0, torch.finfo(tokens.dtype).min)
    return filled.max(dim=1).values


def cls_pool(tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The first token's vector ([CLS] for BERT-style encoders)."""
    return tokens[:, 0]


POOLINGS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "mean": mean_pool,
    "max": max_pool,
    "cls": cls_pool,
}


def get_pooling(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The pooling function registered under ``name``."""
    try:
        return POOLINGS[name]
    except KeyError:
        raise ConfigError(f"unknown pooling {name!r}; choose one of {', '.join(POOLINGS)}") from None
