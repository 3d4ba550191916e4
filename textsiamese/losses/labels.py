"""Label checks shared by the losses and the miners; the convention itself is documented once, in the
``textsiamese.losses`` docstring: 1 = similar, 0 = dissimilar; similarity scores are floats, higher = more
similar; class labels are whole-number ids.

``binary_labels(labels, convention="0=similar")`` is the translation, for tensors, of data that uses
0 = same (Chopra, Hadsell & LeCun 2005); the file readers take the same ``label_convention`` names and flip
at the edge, so nothing inside sees the other convention.
"""

from __future__ import annotations

import torch

from textsiamese.data.records import LABEL_CONVENTIONS as CONVENTIONS
from textsiamese.errors import ConfigError


class LabelError(ConfigError):
    """Labels or scores that a loss cannot use (non-binary labels for a binary loss, wrong shape, NaN)."""


def binary_labels(
    labels: torch.Tensor,
    *,
    loss: str = "labels",
    convention: str = "1=similar",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Labels checked to be binary and returned as floats (``dtype``) with 1 = similar.

    ``convention`` says which value means "similar" in ``labels``: ``"1=similar"`` is the library's own;
    ``"0=similar"`` translates data that uses 0 = same (Chopra, Hadsell & LeCun 2005). Anything other than the
    two values {0, 1} (booleans count) raises ``LabelError`` rather than being silently treated as a weight.

    >>> binary_labels(torch.tensor([0, 1, 1]), convention="0=similar").tolist()
    [1.0, 0.0, 0.0]
    """
    if convention not in CONVENTIONS:
        raise ConfigError(f"label convention must be one of {', '.join(CONVENTIONS)}; got {convention!r}")
    if labels.dtype == torch.bool:
        y = labels.to(dtype)
    else:
        y = labels.detach()
        if y.is_floating_point() and bool(torch.isnan(y).any()):
            raise LabelError(f"{loss}: labels contain NaN")
        bad = (y != 0) & (y != 1)
        if bool(bad.any()):
            examples = sorted({float(v) for v in y[bad].flatten()[:5].tolist()})
            raise LabelError(
                f"{loss}: labels must be binary, 1 = similar and 0 = dissimilar; got values such as "
                f"{examples}. Float similarity scores belong to 'cosine_similarity' or 'cosent'; data with "
                "0 = same must be flipped when read (see the textsiamese.losses docstring)"
            )
        y = labels.to(dtype)
    if convention == "0=similar":
        y = 1.0 - y
    return y


def float_scores(
    scores: torch.Tensor, *, loss: str = "scores", dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Gold scores as a floating tensor of ``dtype``, refusing NaN and infinities."""
    s = scores.to(dtype)
    if not bool(torch.isfinite(s.detach()).all()):
        raise LabelError(f"{loss}: scores must be finite numbers")
    return s


def class_labels(labels: torch.Tensor, n: int, *, loss: str = "labels") -> torch.Tensor:
    """Class ids (N,) as int64; floats are accepted only when they are whole numbers."""
    if labels.shape != (n,):
        raise LabelError(f"{loss}: labels must have shape ({n},), got {tuple(labels.shape)}")
    if labels.is_floating_point():
        if not bool(torch.isfinite(labels).all()) or bool((labels != labels.round()).any()):
            raise LabelError(f"{loss}: class labels must be whole numbers (class ids)")
    elif labels.is_complex():
        raise LabelError(f"{loss}: class labels must be whole numbers (class ids)")
    return labels.to(torch.int64)
