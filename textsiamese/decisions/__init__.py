"""From a score to a decision: what a similarity means and what to answer with it.

``calibration`` learns, on labelled dev pairs, the map from a model's raw score to the probability that a
pair is "same" (Platt or isotonic) and the decision threshold, stores it in the model's config and applies
it; ``oneshot`` classifies texts by their nearest enrolled reference (or class centroid), answering
``unknown`` below a similarity threshold. Both read scores from a model; neither changes it.
"""

from __future__ import annotations

from textsiamese.decisions import calibration as _calibration
from textsiamese.decisions import oneshot as _oneshot
from textsiamese.decisions.calibration import *  # noqa: F403
from textsiamese.decisions.oneshot import *  # noqa: F403

__all__ = _calibration.__all__ + _oneshot.__all__
