"""Towers: modules that turn texts into fixed-size vectors, registered by kind.

``TOWERS`` maps a kind (the name used in config files, recipes and the CLI) to its class.
"""

from __future__ import annotations

from textsiamese.errors import ModelError
from textsiamese.towers.base import Tokenized, Tower
from textsiamese.towers.lstm import LSTMTower, WordTokenizer, load_glove
from textsiamese.towers.pooling import POOLINGS, get_pooling
from textsiamese.towers.projected import DenseLayer, L2Normalize, ProjectedTower
from textsiamese.towers.transformer import TransformerTower

TOWERS: dict[str, type[Tower]] = {
    TransformerTower.kind: TransformerTower,
    LSTMTower.kind: LSTMTower,
    ProjectedTower.kind: ProjectedTower,
}


def tower_class(kind: str) -> type[Tower]:
    """The tower class registered under ``kind``."""
    try:
        return TOWERS[kind]
    except KeyError:
        raise ModelError(f"unknown tower kind {kind!r}; known: {', '.join(TOWERS)}") from None


__all__ = [
    "POOLINGS",
    "TOWERS",
    "DenseLayer",
    "L2Normalize",
    "LSTMTower",
    "ProjectedTower",
    "Tokenized",
    "Tower",
    "TransformerTower",
    "WordTokenizer",
    "get_pooling",
    "load_glove",
    "tower_class",
]
