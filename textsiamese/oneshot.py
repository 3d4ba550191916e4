"""Moved to ``textsiamese.decisions.oneshot``; kept so documented imports keep working."""

from textsiamese.decisions.oneshot import *  # noqa: F403

# Public but outside the module's ``__all__``, so the star import leaves them out (cli/enroll uses META_FILE).
from textsiamese.decisions.oneshot import FORMAT_NAME as FORMAT_NAME
from textsiamese.decisions.oneshot import FORMAT_VERSION as FORMAT_VERSION
from textsiamese.decisions.oneshot import META_FILE as META_FILE
from textsiamese.decisions.oneshot import VECTORS_FILE as VECTORS_FILE
