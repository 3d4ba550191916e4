"""textsiamese: siamese and pseudo-siamese networks for text semantic similarity.

>>> import textsiamese
>>> model = textsiamese.load()                     # the embedded all-MiniLM-L6-v2  # doctest: +SKIP
>>> model.similarity(["A man is eating."], ["Someone eats."])                      # doctest: +SKIP
"""

from __future__ import annotations

__version__ = "0.1.0"

from textsiamese.calibration import calibrate, fit_calibration
from textsiamese.errors import ConfigError, InputError, ModelError, TextSiameseError
from textsiamese.loading import default_model_path, load
from textsiamese.model import SiameseModel, TruncationWarning
from textsiamese.oneshot import OneShotClassifier
from textsiamese.search import Index
from textsiamese.towers import LSTMTower, TransformerTower, WordTokenizer

__all__ = [
    "ConfigError",
    "Index",
    "InputError",
    "LSTMTower",
    "ModelError",
    "OneShotClassifier",
    "SiameseModel",
    "TextSiameseError",
    "TransformerTower",
    "TruncationWarning",
    "WordTokenizer",
    "__version__",
    "calibrate",
    "default_model_path",
    "fit_calibration",
    "load",
]
