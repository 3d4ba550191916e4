"""Running a recipe: each stage's model, data, loss, train options and dev evaluator, then its ``Trainer``.

``recipes.py`` reads a recipe (the YAML file, ``--set`` overrides, stages, validation); this module turns
each stage's effective settings into the pieces a run needs (``build_model``, ``read_stage_data``, the loss
and ``TrainConfig``, the evaluator) and runs the stages in turn on one model, writing ``recipe.yaml`` (the
stage as run) and ``results.json`` beside each stage's outputs. A resumed recipe skips finished earlier
stages and continues the last one from its checkpoint.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import yaml

from textsiamese.data import PairData, TripletData, atomic_open, read_pairs, read_triplets
from textsiamese.data.group_negatives import group_negatives
from textsiamese.errors import ConfigError
from textsiamese.losses import SiameseLoss, get_loss
from textsiamese.model import SiameseModel
from textsiamese.model.siamese import check_prompts
from textsiamese.training.config import TrainConfig
from textsiamese.training.evaluators import DEFAULT_METRIC, make_evaluator
from textsiamese.training.machine import machine_description
from textsiamese.training.results import TrainResult
from textsiamese.training.trainer import Trainer

if TYPE_CHECKING:
    from textsiamese.training.recipes import Recipe


def run_recipe(recipe: Recipe, output: str | Path | None = None, resume: bool = False) -> list[TrainResult]:
    """Run every stage of ``recipe``; returns one ``TrainResult`` per stage (skipped stages excluded). A
    recipe with a ``soup`` runs once per seed and averages the members (``training.soup``)."""
    root = Path(output or recipe.settings.get("output") or Path("runs") / recipe.name)
    if recipe.settings.get("soup"):
        from textsiamese.training.soup import run_soup

        return run_soup(recipe, root, resume)
    stages = recipe.stages()
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
            from textsiamese.model.loading import load

            model = load(out / "final", "cpu")
            print(f"stage {i + 1} ({stage_name}) already done: {out / 'final'}", flush=True)
            continue
        if model is None:
            model = build_model(stage["model"], recipe.path, _texts(train_data))
        trainer = _stage_trainer(stage, model, train_data, dev, out, resume, last)
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
            _write_results(out, recipe.name, stage_name, started, trainer, dev, result)
        if result.stopped == "interrupted":
            break
    return results


def _stage_trainer(
    stage: dict[str, Any],
    model: SiameseModel,
    train_data: PairData | TripletData,
    dev: PairData | None,
    out: Path,
    resume: bool,
    last: bool,
) -> Trainer:
    """The trainer of one stage: its loss, train options and dev evaluator, writing to ``out``; with
    ``resume`` it continues from the checkpoint in ``out`` when there is one (the last stage says when not)."""
    loss = make_loss(stage)
    config = TrainConfig.from_dict(train_options(stage))
    evaluator = None
    task = (stage.get("eval") or {}).get("task")
    if task:
        if dev is None:
            raise ConfigError(f"eval.task {task!r} needs dev data (data.dev or data.dev_split)")
        batch = stage["eval"].get("batch_size")
        evaluator = make_evaluator(task, dev, int(batch) if batch else None)
    if resume and last and not (out / "checkpoint").is_dir():
        print(f"note: --resume: no checkpoint in {out}; starting this stage from the beginning", flush=True)
    return Trainer(
        model,
        loss,
        train_data,
        config,
        out,
        evaluator=evaluator,
        resume=resume and (out / "checkpoint").is_dir(),
    )


def make_loss(stage: dict[str, Any]) -> SiameseLoss:
    """The loss a stage names (``loss: {name: ..., options}``)."""
    loss_spec = dict(stage["loss"])
    loss_name = loss_spec.pop("name")
    if "score_range" in loss_spec:
        loss_spec["score_range"] = tuple(loss_spec["score_range"])
    return get_loss(loss_name, **loss_spec)


def _write_results(
    out: Path,
    recipe_name: str,
    stage_name: str,
    started: str,
    trainer: Trainer,
    dev: PairData | None,
    result: TrainResult,
) -> None:
    """``out/results.json``: the stage, when and where it ran, its data sizes and its result."""
    summary = {
        "recipe": recipe_name,
        "stage": stage_name,
        "started": started,
        "machine": machine_description(),
        "train_examples": len(trainer.data),
        "dev_examples": None if dev is None else len(dev),
        **{k: v for k, v in result.to_dict().items() if k != "evaluations"},
    }
    with atomic_open(out / "results.json") as handle:
        handle.write(json.dumps(summary, indent=2, default=str) + "\n")


def train_options(stage: dict[str, Any]) -> dict[str, Any]:
    """A stage's ``TrainConfig`` options: its ``train`` section, the recipe's seed unless the section sets
    one, and the eval task's default metric unless the section names one."""
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


def build_model(spec: dict[str, Any], recipe_path: Path | None, texts: Sequence[str] = ()) -> SiameseModel:
    """The starting model: a loaded base, or a tower built from ``spec['tower']``."""
    from textsiamese.model.loading import load
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
            model.tower("query"),
            normalize=model.normalize,
            similarity=model.similarity_metric,
            prompts=model.prompts,
        )
    elif towers == "shared" and not model.is_shared:
        raise ConfigError("model.towers is shared but the base model has one tower per role")
    if spec.get("normalize") is not None:
        model.normalize = bool(spec["normalize"])
    if spec.get("prompts") is not None:
        model.prompts = check_prompts(dict(spec["prompts"] or {}))
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
    train = finish_train_data(train, data, seed)
    if dev is not None and data.get("dev_limit"):
        dev = dev.subset(range(min(len(dev), int(data["dev_limit"]))))
    return train, dev


def finish_train_data(
    train: PairData | TripletData, data: dict[str, Any], seed: int
) -> PairData | TripletData:
    """The training part as the loss sees it: its first ``data.limit`` rows, then, with
    ``data.hard_negatives: group``, each positive pair with ``data.num_negatives`` negative candidates of
    its own query (``group_negatives``) as triplets for a ranking loss. Used by a recipe run and by each
    fold of a cross-validation alike."""
    if data.get("limit"):
        train = _head(train, int(data["limit"]))
    mode = data.get("hard_negatives")
    if mode is None:
        return train
    if mode != "group":
        raise ConfigError(f"data.hard_negatives must be group or null, not {mode!r}")
    if not isinstance(train, PairData):
        raise ConfigError("data.hard_negatives: group works on pair data with 0/1 labels")
    triplets, dropped = group_negatives(train, int(data.get("num_negatives") or 1), seed)
    if dropped:
        print(f"note: {dropped} positive pairs have no negative candidate of their query and are left out")
    return triplets


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
