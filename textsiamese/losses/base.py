"""What every loss shares: the base class and the input checks (label checks live in ``losses.labels``).

Kept apart from ``textsiamese.losses`` (the registry) so that the loss modules can import it without a cycle.
The label convention these checks enforce is documented once, in the ``textsiamese.losses`` docstring.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from textsiamese.errors import ConfigError
from textsiamese.losses.labels import LabelError, binary_labels, class_labels, float_scores
from textsiamese.model.distances import Distance, get_distance

FAMILIES = ("pair", "triplet", "labelled", "ranking")


class SiameseLoss(nn.Module):
    """Base class of the losses: an ``nn.Module`` that maps embeddings (and labels) to a scalar.

    A loss never holds the model; the trainer encodes and hands the embeddings in. ``family`` tells the
    trainer which batch shape the loss takes:

    * ``"pair"``: ``forward(a, b, labels)``, a and b (N, D), labels (N,)
    * ``"triplet"``: ``forward(anchor, positive, negative)``, each (N, D)
    * ``"labelled"``: ``forward(embeddings, labels)``, (N, D) and class ids (N,)
    * ``"ranking"``: ``forward(queries, documents)``, (N, D) and (N·(1+h), D)

    Labels are checked on every call by default (``validate_labels``): a value check reads the labels on the
    host, which on a GPU waits for the device. A caller that has already checked all its labels once with
    ``check_labels`` (the trainer does, when it builds the training set) sets ``validate_labels = False`` so
    that each call only converts them; shape checks, free on the host, stay on.
    """

    family: ClassVar[str]
    name: ClassVar[str]
    # What the labels are: "binary" (1 = similar, 0 = dissimilar), "scores" (finite floats), "classes" (whole
    # class ids) or "" (no labels: triplet and ranking losses).
    label_kind: ClassVar[str] = ""
    validate_labels: bool = True

    def check_labels(self, labels: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """``labels`` checked for this loss (``LabelError`` otherwise), as the ``dtype`` tensor the loss uses
        (class ids as int64). Works on any number of labels: one batch or a whole training set."""
        if self.label_kind == "binary":
            return binary_labels(labels, loss=self.name, dtype=dtype)
        if self.label_kind == "scores":
            return float_scores(labels, loss=self.name, dtype=dtype)
        if self.label_kind == "classes":
            return class_labels(labels, labels.shape[0], loss=self.name)
        return labels

    def labels_as(self, labels: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """The labels of one call: checked when ``validate_labels`` is on, else only converted to ``dtype``."""
        if self.validate_labels:
            return self.check_labels(labels, dtype)
        return labels.to(dtype)


def resolve_distance(distance: str | Distance, *, loss: str, need_dissimilarity: bool = False) -> Distance:
    """The distance object for ``distance``; with ``need_dissimilarity``, refuse measures that lack one."""
    d = get_distance(distance)
    if need_dissimilarity and not d.has_dissimilarity:
        raise ConfigError(
            f"loss {loss!r} needs a measure with a non-negative dissimilarity (euclidean, squared_euclidean, "
            f"manhattan or cosine as 1 − cos); {d.name!r} has none"
        )
    return d


def check_pair_shapes(a: torch.Tensor, b: torch.Tensor, labels: torch.Tensor, *, loss: str) -> None:
    """a and b must be (N, D) of the same shape, labels (N,)."""
    if a.dim() != 2 or a.shape != b.shape:
        raise ValueError(
            f"{loss}: a and b must both be (N, D) with the same shape, got {tuple(a.shape)} "
            f"and {tuple(b.shape)}"
        )
    if a.shape[0] == 0:
        raise ValueError(f"{loss}: empty batch")
    if labels.shape != (a.shape[0],):
        raise LabelError(f"{loss}: labels must have shape ({a.shape[0]},), got {tuple(labels.shape)}")
