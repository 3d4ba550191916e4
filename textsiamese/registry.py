"""Moved to ``textsiamese.losses.registry``; kept so documented imports keep working."""

from textsiamese.losses.registry import *  # noqa: F403
