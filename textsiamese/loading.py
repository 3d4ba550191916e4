"""Moved to ``textsiamese.model.loading``; kept so documented imports keep working."""

from textsiamese.model.loading import *  # noqa: F403
