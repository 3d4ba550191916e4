"""Moved to ``textsiamese.losses.labels``; kept so documented imports keep working."""

from textsiamese.losses.labels import *  # noqa: F403
