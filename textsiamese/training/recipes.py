"""Recipes: one YAML file takes a base model and a dataset to a trained, evaluated model directory.

A recipe has these sections (every key can be changed from the command line with ``--set key=value``; a
bare ``key=value`` that is not a top-level key means ``train.key``, so ``--set max_steps=2`` works). In a
recipe with ``stages``, each stage is the recipe-level settings with the stage's own on top (a null in a
stage inherits the recipe-level value); ``--set`` changes the recipe level, and ``--set stages.2.train.lr=…``
one stage:

.. code-block:: yaml

    name: stsb
    seed: 42
    model:
      base: default            # "default" (embedded MiniLM), or a model directory; null: build `tower`
      towers: shared           # shared | pseudo (two untied copies: one tower per role)
      normalize: null          # true / false overrides the base model's setting
      prompts: null            # {query: "query: ", document: "passage: "}: a prefix per role, saved with the model
      tower: null              # built when base is null: {kind: lstm, glove: true, max_words: 100000, ...}
    data:
      train: ../shared/data/stsb/sts-train.csv
      format: stsb             # any read_pairs format; "snli" with shape triplets reads SNLI triplets
      shape: pairs             # pairs | triplets
      columns: null            # {sentence1: question, ...} for generic files
      limit: null              # first N training rows only
      dev: ../shared/data/stsb/sts-dev.csv   # or dev_split: a fraction (or count) held out of train
      dev_format: null         # default: format
      dev_split: null
      split_by: null           # sentence1: all rows of one question land on the same side of the split
      dev_limit: null
      hard_negatives: null     # group: each positive takes num_negatives label-0 candidates of its own query
      num_negatives: 1
    loss: {name: cosine_similarity, score_range: [0, 5]}   # name + the loss's options
    eval: {task: sts, batch_size: null}                      # batch_size null: encode's device default; sts | pair_classification | retrieval | reranking
    train: {epochs: 4, batch_size: 16, lr: 2.0e-5, eval_every: 180, metric: spearman}   # TrainConfig
    stages: null               # or a list of {name, data, loss, eval, train} run in turn on one model
    soup: null                 # or [42, 1, 7]: the recipe once per seed, final/ the mean of their weights

Relative paths are looked up from the current directory, then from the recipe's repository root (the
folder above ``recipes/``). Stages other than the last write to ``OUTPUT/stage-<i>-<name>/``; the last
(or only) stage writes to ``OUTPUT`` itself: ``final/``, ``best/``, ``checkpoint/``, ``metrics.jsonl``,
``results.json``, ``recipe.yaml`` (the recipe as run). A soup writes each seed's run to ``OUTPUT/seed-S/``
and the averaged model to ``OUTPUT/final/`` (``training.soup``).

This module reads a recipe (``load_recipe``: the file, ``--set`` overrides, stages, validation);
``recipe_run.py`` runs one (``run_recipe``: each stage's model, data, loss, options and evaluator).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from textsiamese.errors import ConfigError
from textsiamese.training.config import TrainConfig

# Running a recipe lives in recipe_run.py; its entry points, and the training names this module imported
# before that split, stay importable from here.
from textsiamese.training.evaluators import DEFAULT_METRIC as DEFAULT_METRIC
from textsiamese.training.evaluators import make_evaluator as make_evaluator
from textsiamese.training.machine import machine_description as machine_description
from textsiamese.training.recipe_run import build_model as build_model
from textsiamese.training.recipe_run import read_stage_data as read_stage_data
from textsiamese.training.recipe_run import resolve_path as resolve_path
from textsiamese.training.recipe_run import run_recipe as run_recipe
from textsiamese.training.recipe_run import split_pairs as split_pairs
from textsiamese.training.recipe_run import train_options
from textsiamese.training.results import TrainResult as TrainResult
from textsiamese.training.soup import check_soup
from textsiamese.training.trainer import Trainer as Trainer

SECTIONS = (
    "name",
    "description",
    "seed",
    "output",
    "model",
    "data",
    "loss",
    "eval",
    "train",
    "stages",
    "soup",
)
MODEL_KEYS = ("base", "towers", "normalize", "prompts", "tower")
DATA_KEYS = (
    "train",
    "format",
    "shape",
    "columns",
    "limit",
    "dev",
    "dev_format",
    "dev_split",
    "split_by",
    "dev_limit",
    "hard_negatives",
    "num_negatives",
)
EVAL_KEYS = ("task", "batch_size")
DEFAULTS: dict[str, Any] = {
    "name": "recipe",
    "description": "",
    "seed": 42,
    "output": None,
    "model": {"base": "default", "towers": "shared", "normalize": None, "prompts": None, "tower": None},
    "data": {
        "train": None,
        "format": "auto",
        "shape": "pairs",
        "columns": None,
        "limit": None,
        "dev": None,
        "dev_format": None,
        "dev_split": None,
        "split_by": None,
        "dev_limit": None,
        "hard_negatives": None,
        "num_negatives": 1,
    },
    "loss": {},
    "eval": {"task": None, "batch_size": None},
    "train": {},
    "stages": None,
    "soup": None,
}


@dataclass
class Recipe:
    """A parsed recipe: the file it came from and its settings after ``--set`` overrides."""

    path: Path | None
    settings: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.settings.get("name") or "recipe")

    def stages(self) -> list[dict[str, Any]]:
        """The effective settings of each stage (top-level settings merged under each stage's own)."""
        base = {k: v for k, v in self.settings.items() if k != "stages"}
        stages = self.settings.get("stages")
        if not stages:
            return [base]
        if not isinstance(stages, list):
            raise ConfigError("stages must be a list of {name, data, loss, eval, train} mappings")
        merged = []
        for i, stage in enumerate(stages):
            if not isinstance(stage, dict):
                raise ConfigError(f"stage {i + 1} must be a mapping")
            merged.append(_merge(base, stage, inherit_nulls=True))
        return merged


def find_recipe(name_or_path: str) -> Path:
    """A recipe path, or the name of a file in ``recipes/`` (``stsb`` → ``recipes/stsb.yaml``)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    for candidate in (Path("recipes") / f"{name_or_path}.yaml", Path("recipes") / name_or_path):
        if candidate.is_file():
            return candidate
    raise ConfigError(f"no recipe {name_or_path!r} (a YAML file, or a name in ./recipes/)")


def load_recipe(name_or_path: str | Path, overrides: Sequence[str] = ()) -> Recipe:
    """Read a recipe file and apply ``key=value`` overrides (values parsed as YAML)."""
    path = find_recipe(str(name_or_path))
    try:
        raw = yaml.safe_load(path.read_text("utf-8")) or {}
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"{path}: cannot read the recipe ({error})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a recipe is a mapping of sections")
    settings = _merge(DEFAULTS, raw)
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value, got {item!r}")
        keys = key.strip().split(".")
        if len(keys) == 1 and keys[0] not in SECTIONS:
            keys = ["train", keys[0]]
        value = parse_value(text)
        if keys[0] == "stages" and len(keys) > 2:
            stages = settings.get("stages") or []
            if not keys[1].isdigit() or not 1 <= int(keys[1]) <= len(stages):
                raise ConfigError(f"--set {key}: the recipe has {len(stages)} stage(s), numbered from 1")
            _set(stages[int(keys[1]) - 1], keys[2:], value)
        else:
            _set(settings, keys, value)
    recipe = Recipe(path, settings)
    check_soup(recipe.settings.get("soup"))
    for stage in recipe.stages():
        _validate(stage, path)
    return recipe


def parse_value(text: str) -> Any:
    """A ``--set`` value: YAML (numbers, true/false, null, [lists], {maps}), with ``1e-4`` read as a number
    (YAML 1.1 wants ``1.0e-4``)."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _merge(base: dict[str, Any], update: dict[str, Any], inherit_nulls: bool = False) -> dict[str, Any]:
    """``update`` over ``base``, section by section; with ``inherit_nulls`` a null in ``update`` keeps the
    base value (a stage's ``train: null`` takes the recipe-level ``data.train``, e.g. from ``--set``)."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        if value is None and inherit_nulls and out.get(key) is not None:
            continue
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key != "loss" and inherit_nulls:
            out[key] = _merge(out[key], value, inherit_nulls)
        elif isinstance(value, dict) and isinstance(out.get(key), dict) and key != "loss":
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _set(settings: dict[str, Any], keys: list[str], value: Any) -> None:
    node = settings
    for key in keys[:-1]:
        if node.get(key) is None:
            node[key] = {}
        if not isinstance(node[key], dict):
            raise ConfigError(f"--set {'.'.join(keys)}: {key!r} is not a section")
        node = node[key]
    node[keys[-1]] = value


def _validate(stage: dict[str, Any], path: Path) -> None:
    unknown = set(stage) - set(SECTIONS)
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {sorted(unknown)}; known: {', '.join(SECTIONS)}")
    for section, keys in (("model", MODEL_KEYS), ("data", DATA_KEYS), ("eval", EVAL_KEYS)):
        extra = set(stage.get(section) or {}) - set(keys)
        if extra:
            raise ConfigError(f"{path}: unknown {section} key(s) {sorted(extra)}; known: {', '.join(keys)}")
    if not (stage.get("loss") or {}).get("name"):
        raise ConfigError(f"{path}: the recipe names no loss (loss: {{name: ...}})")
    TrainConfig.from_dict(train_options(stage))
