"""The model: towers by role, what a similarity between their vectors is, and the directory it lives in.

``siamese`` holds ``SiameseModel`` (one shared tower, or a query and a document tower; encoding, pair
similarity); ``persistence`` its own directory (atomic save, load, fingerprint); ``config`` the ``config.json`` that describes a
saved model; ``loading`` the ``load`` entry point for every layout a user may have (textsiamese,
sentence-transformers, plain Hugging Face, a training run's output, the embedded default); ``distances``
the similarity and distance measures the model, the losses, evaluation, calibration and search all share.
How fast encoding runs lives in ``textsiamese.inference``; what a score means, in ``textsiamese.decisions``.
"""

from __future__ import annotations

from textsiamese.inference.pipeline import ENCODE_CHUNK
from textsiamese.model.config import ROLES, ModelConfig
from textsiamese.model.distances import DISTANCES, Distance, get_distance
from textsiamese.model.loading import default_model_path, load, resolve_model_directory

# save_model: an attribute the single-module textsiamese.model had; tests read it through this path (a patch
# must target the module that calls it: textsiamese.model.persistence).
from textsiamese.model.persistence import save_model as save_model
from textsiamese.model.siamese import CONFIG_FILE, WEIGHTS_FILE, SiameseModel, TruncationWarning

__all__ = [
    "CONFIG_FILE",
    "DISTANCES",
    "ENCODE_CHUNK",
    "ROLES",
    "WEIGHTS_FILE",
    "Distance",
    "ModelConfig",
    "SiameseModel",
    "TruncationWarning",
    "default_model_path",
    "get_distance",
    "load",
    "resolve_model_directory",
]
