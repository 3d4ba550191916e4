"""textsiamese: siamese and pseudo-siamese networks for text semantic similarity."""

from __future__ import annotations

__version__ = "0.1.0"
