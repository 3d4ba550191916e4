"""Model soups: one recipe trained with several seeds, and the uniform mean of their weights as the model.

Fine-tuned from the same starting weights, runs that differ only in seed (data order, dropout) end in the
same basin, so the mean of their weights is a model of its own that usually scores above each of them
(Wortsman et al. 2022, "uniform soup") at the inference cost of one. A recipe asks for one with a top-level
``soup: [42, 1, 7]``: each seed runs the whole recipe into ``OUTPUT/seed-S/`` (a finished member is not run
again, so ``--resume`` picks up where a soup stopped), then ``OUTPUT/final/`` is the mean, scored with the
last stage's dev evaluator, and ``OUTPUT/results.json`` lists every member's figure beside the soup's.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from textsiamese.data import atomic_open
from textsiamese.errors import ConfigError, ModelError
from textsiamese.training.results import TrainResult

if TYPE_CHECKING:
    from textsiamese.model import SiameseModel
    from textsiamese.training.recipes import Recipe


def check_soup(value: Any) -> list[int] | None:
    """The seeds of a recipe's ``soup`` (None when it has none); ``ConfigError`` unless at least two distinct
    whole numbers."""
    if value in (None, [], False):
        return None
    if not isinstance(value, list) or not all(isinstance(s, int) and not isinstance(s, bool) for s in value):
        raise ConfigError(f"soup must be a list of seeds (whole numbers), got {value!r}")
    if len(set(value)) < 2 or len(set(value)) != len(value):
        raise ConfigError(f"soup needs at least two distinct seeds, got {value!r}")
    return list(value)


@torch.no_grad()
def average_models(directories: Sequence[str | Path]) -> SiameseModel:
    """The first model of ``directories`` with every floating-point weight replaced by the mean over all of
    them; ``ModelError`` when they do not share one architecture (names and shapes of their weights)."""
    from textsiamese.model.loading import load

    if len(directories) < 2:
        raise ConfigError("averaging needs at least two models")
    models = [load(d, "cpu") for d in directories]
    states = [m.towers.state_dict() for m in models]
    shapes = {k: tuple(v.shape) for k, v in states[0].items()}
    for directory, state in zip(directories[1:], states[1:], strict=True):
        if {k: tuple(v.shape) for k, v in state.items()} != shapes:
            raise ModelError(
                f"{directory}: not the architecture of {directories[0]}; only like models average"
            )
    for name, value in states[0].items():
        if value.is_floating_point():
            mean = sum(state[name].double() for state in states) / len(states)
            value.copy_(mean.to(value.dtype))
    return models[0]


def run_soup(recipe: Recipe, root: Path, resume: bool) -> list[TrainResult]:
    """Train every seed of ``recipe``'s soup (skipping finished members), average them into ``root/final``
    and score the mean on the dev data; the members' results, then the soup's."""
    from textsiamese.training.recipe_run import run_recipe
    from textsiamese.training.recipes import Recipe as RecipeClass

    seeds = check_soup(recipe.settings.get("soup")) or []
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    results: list[TrainResult] = []
    members: dict[str, dict[str, Any]] = {}
    for seed in seeds:
        member = root / f"seed-{seed}"
        if (member / "results.json").is_file() and (member / "final").is_dir():
            print(f"soup member seed {seed} already done: {member / 'final'}", flush=True)
            members[str(seed)] = json.loads((member / "results.json").read_text("utf-8"))
            continue
        single = RecipeClass(recipe.path, {**recipe.settings, "seed": seed, "soup": None})
        ran = run_recipe(single, member, resume=resume)
        results += ran
        if not ran or ran[-1].stopped == "interrupted":
            return results
        members[str(seed)] = ran[-1].to_dict()
    model = average_models([root / f"seed-{seed}" / "final" for seed in seeds])
    last = RecipeClass(recipe.path, {**recipe.settings, "soup": None}).stages()[-1]
    final = _score(model, last, recipe.path)
    if int(os.environ.get("RANK", "0")) == 0:
        model.save(root / "final")
        summary = {
            "recipe": recipe.name,
            "started": started,
            "soup": seeds,
            "members": {
                s: {"final": m.get("final"), "seconds": m.get("seconds")} for s, m in members.items()
            },
            "final": final,
        }
        with atomic_open(root / "results.json") as handle:
            handle.write(json.dumps(summary, indent=2, default=str) + "\n")
    seconds = sum(float(m.get("seconds") or 0) for m in members.values())
    steps = sum(int(m.get("steps") or 0) for m in members.values())
    results.append(TrainResult(str(root), steps, steps, "completed", round(seconds, 2), final=final))
    return results


def _score(model: SiameseModel, stage: dict[str, Any], path: Path | None) -> dict[str, Any] | None:
    """The stage's dev evaluation of ``model`` (None when the stage has no eval task)."""
    from textsiamese.training.evaluators import make_evaluator
    from textsiamese.training.recipe_run import read_stage_data

    task = (stage.get("eval") or {}).get("task")
    if not task:
        return None
    _, dev = read_stage_data(stage["data"], path, int(stage.get("seed", 42)))
    if dev is None:
        raise ConfigError(f"eval.task {task!r} needs dev data (data.dev or data.dev_split)")
    batch = stage["eval"].get("batch_size")
    return dict(make_evaluator(task, dev, int(batch) if batch else None)(model))
