"""textsiamese: siamese and pseudo-siamese networks for text semantic similarity.

>>> import textsiamese
>>> model = textsiamese.load()                     # the embedded all-MiniLM-L6-v2  # doctest: +SKIP
>>> model.similarity(["A man is eating."], ["Someone eats."])                      # doctest: +SKIP

The public names are imported on first use (PEP 562 ``__getattr__``): most of them pull in torch,
transformers or FAISS, which take seconds to import, and ``textsiamese --help`` or a data-only script should
not pay for that. ``from textsiamese import load`` and ``textsiamese.load`` work as before.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from textsiamese.errors import ConfigError, InputError, ModelError, TextSiameseError

__version__ = "0.1.0"

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time these come from __getattr__
    from textsiamese.decisions.calibration import calibrate, fit_calibration
    from textsiamese.decisions.oneshot import OneShotClassifier
    from textsiamese.model import SiameseModel, TruncationWarning
    from textsiamese.model.loading import default_model_path, load
    from textsiamese.search import Index
    from textsiamese.towers import LSTMTower, TransformerTower, WordTokenizer

# Each lazily imported public name → the module that defines it.
_LAZY = {
    "calibrate": "textsiamese.decisions.calibration",
    "fit_calibration": "textsiamese.decisions.calibration",
    "default_model_path": "textsiamese.model.loading",
    "load": "textsiamese.model.loading",
    "SiameseModel": "textsiamese.model",
    "TruncationWarning": "textsiamese.model",
    "OneShotClassifier": "textsiamese.decisions.oneshot",
    "Index": "textsiamese.search",
    "LSTMTower": "textsiamese.towers",
    "TransformerTower": "textsiamese.towers",
    "WordTokenizer": "textsiamese.towers",
}


def __getattr__(name: str) -> Any:
    """Import a public name's module on first access and cache the name in the package namespace.

    A subpackage's name (``textsiamese.data``, ``textsiamese.search``) imports it, as the eager imports
    this replaces did as a side effect, so ``import textsiamese; textsiamese.data.read_pairs`` still works.
    """
    module = _LAZY.get(name)
    if module is None:
        try:
            return importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as error:
            if error.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


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
