"""Training: the plain torch loop (``Trainer``), its options (``TrainConfig``) and recipes.

>>> from textsiamese.training import Trainer, TrainConfig, load_recipe, run_recipe   # doctest: +SKIP
>>> run_recipe(load_recipe("recipes/stsb.yaml", ["max_steps=10"]), output="runs/stsb-short")  # doctest: +SKIP
"""

from __future__ import annotations

from textsiamese.training.batches import TrainSet, build_train_set, plan_epoch
from textsiamese.training.config import TrainConfig, lr_factor
from textsiamese.training.evaluators import make_evaluator
from textsiamese.training.recipes import Recipe, load_recipe, run_recipe
from textsiamese.training.trainer import Trainer, TrainingError, TrainResult

__all__ = [
    "Recipe",
    "TrainConfig",
    "TrainResult",
    "TrainSet",
    "Trainer",
    "TrainingError",
    "build_train_set",
    "load_recipe",
    "lr_factor",
    "make_evaluator",
    "plan_epoch",
    "run_recipe",
]
