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
    loss: {name: cosine_similarity, score_range: [0, 5]}   # name + the loss's options
    eval: {task: sts, batch_size: null}                      # batch_size null: encode's device default; sts | pair_classification | retrieval | reranking
    train: {epochs: 4, batch_size: 16, lr: 2.0e-5, eval_every: 180, metric: spearman}   # TrainConfig
    stages: null               # or a list of {name, data, loss, eval, train} run in turn on one model

Relative paths are looked up from the current directory, then from the recipe's repository root (the
folder above ``recipes/``). Stages other than the last write to ``OUTPUT/stage-<i>-<name>/``; the last
(or only) stage writes to ``OUTPUT`` itself: ``final/``, ``best/``, ``checkpoint/``, ``metrics.jsonl``,
``results.json``, ``recipe.yaml`` (the recipe as run).
"""

from __future__ import annotations

import copy
import json
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from textsiamese.data import PairData, TripletData, atomic_open, read_pairs, read_triplets
from textsiamese.errors import ConfigError
from textsiamese.losses import get_loss
from textsiamese.model import SiameseModel
from textsiamese.training.config import TrainConfig
from textsiamese.training.evaluators import DEFAULT_METRIC, make_evaluator
from textsiamese.training.trainer import Trainer, TrainResult, machine_description

SECTIONS = ("name", "description", "seed", "output", "model", "data", "loss", "eval", "train", "stages")
MODEL_KEYS = ("base", "towers", "normalize", "tower")
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
)
EVAL_KEYS = ("task", "batch_size")
DEFAULTS: dict[str, Any] = {
    "name": "recipe",
    "description": "",
    "seed": 42,
    "output": None,
    "model": {"base": "default", "towers": "shared", "normalize": None, "tower": None},
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
    },
    "loss": {},
    "eval": {"task": None, "batch_size": None},
    "train": {},
    "stages": None,
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
    TrainConfig.from_dict(_train_options(stage))


def _train_options(stage: dict[str, Any]) -> dict[str, Any]:
    options = dict(stage.get("train") or {})
    options.setdefault("seed", stage.get("seed", 42))
    task = (stage.get("eval") or {}).get("task")
    if task and "metric" not in options:
        options["metric"] = DEFAULT_METRIC.get(task)
    return options


def resolve_path(value: str, recipe_path: Path | None, what: str) -> Path:
    """A data or model path from a recipe: as given, or relative to the recipe's repository root."""
    path = Path(value).expanduser()
    if path.is_absolute() or path.exists():
        if not path.exists():
            raise ConfigError(f"{what}: {path} does not exist")
        return path
    tried = [path.resolve()]
    if recipe_path is not None:
        for root in (recipe_path.resolve().parent.parent, recipe_path.resolve().parent):
            candidate = root / path
            if candidate.exists():
                return candidate
            tried.append(candidate)
    raise ConfigError(f"{what}: {value} not found (tried {', '.join(str(t) for t in tried)})")


# ---------------------------------------------------------------------- building the pieces


def build_model(spec: dict[str, Any], recipe_path: Path | None, texts: Sequence[str] = ()) -> SiameseModel:
    """The starting model: a loaded base, or a tower built from ``spec['tower']``."""
    from textsiamese.loading import load
    from textsiamese.towers import LSTMTower, TransformerTower, WordTokenizer

    base = spec.get("base")
    if base:
        model = load(None if base == "default" else resolve_path(str(base), recipe_path, "model.base"), "cpu")
    else:
        tower_spec = dict(spec.get("tower") or {})
        kind = tower_spec.pop("kind", None)
        if kind == "lstm":
            glove = tower_spec.pop("glove", False)
            max_words = tower_spec.pop("max_words", 100_000)
            if glove:
                tower: Any = LSTMTower.from_glove(max_words=max_words, **tower_spec)
            else:
                if not texts:
                    raise ConfigError(
                        "an LSTM tower without GloVe builds its vocabulary from the training texts"
                    )
                tower = LSTMTower(WordTokenizer.build(list(texts), max_size=max_words), **tower_spec)
        elif kind == "transformer":
            path = tower_spec.pop("path", None)
            if not path:
                raise ConfigError("model.tower.path: a Hugging Face model directory is needed")
            tower = TransformerTower.from_pretrained(
                resolve_path(path, recipe_path, "model.tower.path"), **tower_spec
            )
        else:
            raise ConfigError(
                "model: give base (a model directory or 'default') or tower: {kind: lstm|transformer}"
            )
        model = SiameseModel(tower, normalize=bool(spec.get("normalize") or False))
    towers = spec.get("towers", "shared")
    if towers not in ("shared", "pseudo"):
        raise ConfigError(f"model.towers must be shared or pseudo, not {towers!r}")
    if towers == "pseudo" and model.is_shared:
        model = SiameseModel.untied(
            model.tower("query"), normalize=model.normalize, similarity=model.similarity_metric
        )
    elif towers == "shared" and not model.is_shared:
        raise ConfigError("model.towers is shared but the base model has one tower per role")
    if spec.get("normalize") is not None:
        model.normalize = bool(spec["normalize"])
    return model


def read_stage_data(
    data: dict[str, Any], recipe_path: Path | None, seed: int
) -> tuple[PairData | TripletData, PairData | None]:
    """Training data and dev pairs of a stage (the dev part split off the training file when asked)."""
    if not data.get("train"):
        raise ConfigError("data.train: no training file given (--set data.train=PATH)")
    train_path = resolve_path(str(data["train"]), recipe_path, "data.train")
    fmt = data.get("format") or "auto"
    train: PairData | TripletData
    if data.get("shape", "pairs") == "triplets":
        train = read_triplets(train_path, fmt, columns=data.get("columns"))
    elif data.get("shape", "pairs") == "pairs":
        train = read_pairs(train_path, fmt, columns=data.get("columns"))
    else:
        raise ConfigError(f"data.shape must be pairs or triplets, not {data.get('shape')!r}")
    dev: PairData | None = None
    if data.get("dev_split"):
        if not isinstance(train, PairData):
            raise ConfigError("data.dev_split works on pair data; give data.dev for triplets")
        train, dev = split_pairs(train, data["dev_split"], seed, data.get("split_by"))
    elif data.get("dev"):
        dev_path = resolve_path(str(data["dev"]), recipe_path, "data.dev")
        dev = read_pairs(dev_path, data.get("dev_format") or fmt, columns=data.get("columns"))
    if data.get("limit"):
        train = _head(train, int(data["limit"]))
    if dev is not None and data.get("dev_limit"):
        dev = dev.subset(range(min(len(dev), int(data["dev_limit"]))))
    return train, dev


def split_pairs(
    pairs: PairData, size: float | int, seed: int, split_by: str | None = None
) -> tuple[PairData, PairData]:
    """Hold out a seeded random dev part (a fraction < 1, or a count); with ``split_by='sentence1'`` whole
    groups of rows sharing sentence1 go to one side, so no question is in both."""
    keys = pairs.sentence1 if split_by == "sentence1" else list(range(len(pairs)))
    if split_by not in (None, "sentence1"):
        raise ConfigError("data.split_by must be sentence1 or null")
    groups: dict[Any, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    order = list(groups)
    random.Random(seed).shuffle(order)
    want = round(size * len(pairs)) if size < 1 else int(size)
    dev_rows: list[int] = []
    for key in order:
        if len(dev_rows) >= want:
            break
        dev_rows.extend(groups[key])
    held = set(dev_rows)
    train_rows = [i for i in range(len(pairs)) if i not in held]
    if not dev_rows or not train_rows:
        raise ConfigError(f"data.dev_split {size} leaves an empty train or dev part")
    return pairs.subset(train_rows), pairs.subset(sorted(dev_rows))


def _head(data: PairData | TripletData, n: int) -> PairData | TripletData:
    if isinstance(data, PairData):
        return data.subset(range(min(n, len(data))))
    return TripletData(
        data.anchor[:n],
        data.positive[:n],
        data.negative[:n],
        [row for row in data.more_negatives[:n]],
        source=data.source,
    )


def _texts(data: PairData | TripletData) -> list[str]:
    if isinstance(data, PairData):
        return [*data.sentence1, *data.sentence2]
    return [*data.anchor, *data.positive, *data.negative]


# ---------------------------------------------------------------------- running


def run_recipe(recipe: Recipe, output: str | Path | None = None, resume: bool = False) -> list[TrainResult]:
    """Run every stage of ``recipe``; returns one ``TrainResult`` per stage (skipped stages excluded)."""
    stages = recipe.stages()
    root = Path(output or recipe.settings.get("output") or Path("runs") / recipe.name)
    model: SiameseModel | None = None
    results: list[TrainResult] = []
    for i, stage in enumerate(stages):
        last = i == len(stages) - 1
        stage_name = str(stage.get("name") or recipe.name)
        out = root if last else root / f"stage-{i + 1}-{stage_name}"
        seed = int(stage.get("seed", 42))
        torch.manual_seed(seed)
        train_data, dev = read_stage_data(stage["data"], recipe.path, seed)
        if resume and (out / "results.json").is_file() and (out / "final").is_dir() and not last:
            from textsiamese.loading import load

            model = load(out / "final", "cpu")
            print(f"stage {i + 1} ({stage_name}) already done: {out / 'final'}", flush=True)
            continue
        if model is None:
            model = build_model(stage["model"], recipe.path, _texts(train_data))
        loss_spec = dict(stage["loss"])
        loss_name = loss_spec.pop("name")
        if "score_range" in loss_spec:
            loss_spec["score_range"] = tuple(loss_spec["score_range"])
        loss = get_loss(loss_name, **loss_spec)
        config = TrainConfig.from_dict(_train_options(stage))
        evaluator = None
        task = (stage.get("eval") or {}).get("task")
        if task:
            if dev is None:
                raise ConfigError(f"eval.task {task!r} needs dev data (data.dev or data.dev_split)")
            batch = stage["eval"].get("batch_size")
            evaluator = make_evaluator(task, dev, int(batch) if batch else None)
        if resume and last and not (out / "checkpoint").is_dir():
            print(
                f"note: --resume: no checkpoint in {out}; starting this stage from the beginning", flush=True
            )
        trainer = Trainer(
            model,
            loss,
            train_data,
            config,
            out,
            evaluator=evaluator,
            resume=resume and (out / "checkpoint").is_dir(),
        )
        if trainer.is_main:
            out.mkdir(parents=True, exist_ok=True)
            with atomic_open(out / "recipe.yaml") as handle:
                yaml.safe_dump({**stage, "stage": i + 1, "stages": len(stages)}, handle, sort_keys=False)
        started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        try:
            result = trainer.train()
        finally:
            trainer.close()
        results.append(result)
        if trainer.is_main:
            summary = {
                "recipe": recipe.name,
                "stage": stage_name,
                "started": started,
                "machine": machine_description(),
                "train_examples": len(trainer.data),
                "dev_examples": None if dev is None else len(dev),
                **{k: v for k, v in result.to_dict().items() if k != "evaluations"},
            }
            with atomic_open(out / "results.json") as handle:
                handle.write(json.dumps(summary, indent=2, default=str) + "\n")
        if result.stopped == "interrupted":
            break
    return results
