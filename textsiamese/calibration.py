"""Moved to ``textsiamese.decisions.calibration``; kept so documented imports keep working."""

from textsiamese.decisions.calibration import *  # noqa: F403
