"""Moved to ``textsiamese.model.distances``; kept so documented imports keep working."""

from textsiamese.model.distances import *  # noqa: F403
