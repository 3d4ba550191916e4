"""Evaluators: how well a model's similarities agree with gold judgements.

Each evaluator takes a model and validated data and returns a flat dict of plain floats (fractions, not
percent) plus ``n``, the form ``textsiamese eval --json`` prints and the trainer logs.
"""

from __future__ import annotations

from textsiamese.evaluation.sts import evaluate_sts, sts_correlations

__all__ = ["evaluate_sts", "sts_correlations"]
