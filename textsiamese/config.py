"""Moved to ``textsiamese.model.config``; kept so documented imports keep working."""

from textsiamese.model.config import *  # noqa: F403
