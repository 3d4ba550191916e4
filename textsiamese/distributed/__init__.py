"""Encoding past one machine on Ray Data (the ``ray`` extra): sharded, resumable, one model per actor.

- :func:`encode_dataset`: a Ray Dataset of texts in, the same rows with a ``vector`` column out.
- :func:`encode_corpus`: a corpus file or glob → a shard directory (``shard-NNNNN.npy`` + records, manifest
  last) that ``textsiamese index build --from-shards`` turns into an index; rerun with ``resume=True``.
- :class:`ShardSet`: a finished shard directory, read shard by shard.

Ray itself is imported only when a function runs, so this package imports without it.
"""

from __future__ import annotations

from textsiamese.distributed.encoding import encode_corpus, encode_dataset
from textsiamese.distributed.runtime import INSTALL_HINT, require_ray
from textsiamese.distributed.shards import Shard, ShardSet

__all__ = ["INSTALL_HINT", "Shard", "ShardSet", "encode_corpus", "encode_dataset", "require_ray"]
