"""Moved to ``textsiamese.losses.miners``; kept so documented imports keep working."""

from textsiamese.losses.miners import *  # noqa: F403
