"""Moved to ``textsiamese.inference.precision``; kept so documented imports keep working."""

from textsiamese.inference.precision import *  # noqa: F403
