"""Semantic search on FAISS: a persistent :class:`Index`, hard-negative mining and paraphrase mining.

>>> from textsiamese.search import Index, INDEX_KINDS
>>> sorted(INDEX_KINDS)
['flat', 'hnsw', 'ivf', 'ivfpq']
"""

from __future__ import annotations

from textsiamese.search.index import Hit, Index
from textsiamese.search.kinds import INDEX_KINDS, KIND_NAMES, METRICS, choose_kind
from textsiamese.search.mining import (
    MinedRow,
    MiningStats,
    mine_hard_negatives,
    mine_paraphrases,
    paraphrase_pairs,
    write_mined,
)

__all__ = [
    "INDEX_KINDS",
    "KIND_NAMES",
    "METRICS",
    "Hit",
    "Index",
    "MinedRow",
    "MiningStats",
    "choose_kind",
    "mine_hard_negatives",
    "mine_paraphrases",
    "paraphrase_pairs",
    "write_mined",
]
