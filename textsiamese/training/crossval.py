"""Grouped k-fold cross-validation of a recipe over its own training file (``textsiamese train R --folds K``).

One small dev split can mislead: the ``wikiqa`` recipe gained 0.011 MAP on its 95 dev questions and lost
0.017 on the held-out test split. Here the training file is cut into ``K`` folds, whole groups at a time (a
WikiQA question with all its candidates, ``data.split_by: sentence1``; otherwise single rows), balanced by
row count. For each fold the recipe's starting model is trained on the other ``K - 1`` folds with the
recipe's loss and train options, and both the starting model (zero-shot) and the trained one are evaluated
on the held-out fold with the recipe's evaluator (``eval.task``). Every row is held out exactly once.

Nothing is selected on the held-out fold: no dev evaluation during training, no best checkpoint, no early
stopping (``eval_every``, ``eval_at_start`` and ``patience`` are switched off); the trained figure is the
model at the end of training. The recipe's own dev split (``data.dev_split`` / ``data.dev``) is not used.
A re-ranking fold is evaluated on the questions with both a relevant and an irrelevant candidate only (the
metric skips the others; they are not encoded at all).

Writes ``OUTPUT/crossval.json`` (after every fold, so a long run can be read while it goes): the settings,
the machine, per fold its rows, sizes, zero-shot and trained figures and time, and per metric the mean and
sample standard deviation over the folds of the zero-shot figure, the trained figure and the gain.
"""

from __future__ import annotations

import json
import random
import shutil
import statistics
import time
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from textsiamese.data import PairData, atomic_open
from textsiamese.errors import ConfigError
from textsiamese.training.config import TrainConfig
from textsiamese.training.evaluators import make_evaluator
from textsiamese.training.machine import machine_description
from textsiamese.training.recipe_run import (
    build_model,
    finish_train_data,
    make_loss,
    read_stage_data,
    train_options,
)
from textsiamese.training.trainer import Trainer

if TYPE_CHECKING:
    from textsiamese.training.recipes import Recipe

RESULT_FILE = "crossval.json"
# Train options that would look at the held-out fold while training (selection, early stopping).
# Counts an evaluator reports beside its figures (not averaged).
COUNTS = frozenset({"n", "queries_skipped", "corpus", "queries_without_relevant"})
NO_SELECTION = {"eval_every": None, "eval_at_start": False, "patience": None, "checkpoint_every": None}


def assign_folds(keys: Sequence[Hashable], folds: int, seed: int) -> list[list[int]]:
    """Row indices of each of ``folds`` folds: rows sharing a key stay together; the groups, in seeded
    random order, go each to the fold with the fewest rows so far (ties: the lowest fold), so folds differ
    by at most one group's size."""
    if folds < 2:
        raise ConfigError(f"--folds must be at least 2, got {folds}")
    groups: dict[Hashable, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    if len(groups) < folds:
        raise ConfigError(f"{len(groups)} groups cannot make {folds} folds")
    order = list(groups)
    random.Random(seed).shuffle(order)
    rows: list[list[int]] = [[] for _ in range(folds)]
    for key in order:
        target = min(range(folds), key=lambda f: (len(rows[f]), f))
        rows[target].extend(groups[key])
    return [sorted(fold) for fold in rows]


def scored_rows(pairs: PairData, rows: Sequence[int], task: str) -> list[int]:
    """The rows of a held-out fold the evaluator is given: all of them, except for re-ranking, where only
    the questions with both a relevant and an irrelevant candidate count (the metric skips the others)."""
    if task != "reranking" or pairs.labels is None:
        return list(rows)
    seen: dict[str, set[int]] = {}
    for i in rows:
        seen.setdefault(pairs.sentence1[i], set()).add(int(pairs.labels[i]))
    return [i for i in rows if len(seen[pairs.sentence1[i]]) == 2]


def summarize(values: Sequence[float]) -> dict[str, float]:
    """Mean and sample standard deviation (0 for one value) of a figure over folds."""
    values = [float(v) for v in values]
    return {
        "mean": statistics.fmean(values),
        "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
    }


def cross_validate(
    recipe: Recipe,
    folds: int = 5,
    output: str | Path | None = None,
    only: Sequence[int] | None = None,
    zero_shot: bool = True,
    keep_models: bool = False,
) -> dict[str, Any]:
    """Cross-validate ``recipe`` (one stage) over its training file; returns what ``crossval.json`` holds.

    ``only`` runs those folds (numbered from 1) of the ``folds``-fold split, e.g. a 2-fold screen of
    settings on the same folds a full run uses. ``zero_shot=False`` skips the starting model's figures.
    The model trained on each fold is deleted unless ``keep_models``.
    """
    stages = recipe.stages()
    if len(stages) != 1:
        raise ConfigError(f"cross-validation runs one-stage recipes; {recipe.name} has {len(stages)}")
    stage = stages[0]
    task = (stage.get("eval") or {}).get("task")
    if not task:
        raise ConfigError("cross-validation needs eval.task (the evaluator of each held-out fold)")
    seed = int(stage.get("seed", 42))
    data = dict(stage["data"])
    whole = {**data, "dev": None, "dev_split": None, "limit": None, "hard_negatives": None}
    pairs, _ = read_stage_data(whole, recipe.path, seed)
    if not isinstance(pairs, PairData):
        raise ConfigError("cross-validation works on pair data (data.shape: pairs)")
    split_by = data.get("split_by")
    if split_by not in (None, "sentence1"):
        raise ConfigError("data.split_by must be sentence1 or null")
    keys: Sequence[Hashable] = pairs.sentence1 if split_by == "sentence1" else range(len(pairs))
    fold_rows = assign_folds(keys, folds, seed)
    wanted = sorted(set(only or range(1, folds + 1)))
    if not all(1 <= f <= folds for f in wanted):
        raise ConfigError(f"--fold must be between 1 and {folds}, got {wanted}")
    root = Path(output or Path("runs") / f"{recipe.name}-cv{folds}")
    options = {**train_options(stage), **NO_SELECTION}
    batch = (stage.get("eval") or {}).get("batch_size")
    report: dict[str, Any] = {
        "recipe": recipe.name,
        "folds": folds,
        "folds_run": wanted,
        "grouped_by": split_by or "row",
        "seed": seed,
        "metric": options.get("metric"),
        "machine": machine_description(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "rows": len(pairs),
        "settings": stage,
        "fold_results": [],
    }
    for number in wanted:
        held = fold_rows[number - 1]
        held_set = set(held)
        train_rows = [i for i in range(len(pairs)) if i not in held_set]
        train_part = finish_train_data(pairs.subset(train_rows), data, seed)
        scored = scored_rows(pairs, held, task)
        evaluator = make_evaluator(task, pairs.subset(scored), int(batch) if batch else None)
        torch.manual_seed(seed)
        texts = [*(pairs.sentence1[i] for i in train_rows), *(pairs.sentence2[i] for i in train_rows)]
        model = build_model(stage["model"], recipe.path, texts)  # texts: an LSTM's vocabulary
        started = time.perf_counter()
        before = dict(evaluator(model)) if zero_shot else None
        out = root / f"fold-{number}"
        trainer = Trainer(model, make_loss(stage), train_part, TrainConfig.from_dict(options), out)
        try:
            result = trainer.train()
        finally:
            trainer.close()
        if result.stopped == "interrupted":  # SIGINT / SIGTERM: the folds done so far are in the file
            report["interrupted"] = {"fold": number, "signal": result.signal}
            print(f"fold {number} interrupted ({result.signal}); folds done: {len(report['fold_results'])}")
            break
        after = dict(evaluator(trainer.model))
        if not keep_models:
            for name in ("final", "checkpoint"):
                shutil.rmtree(out / name, ignore_errors=True)
        report["fold_results"].append(
            {
                "fold": number,
                "held_out_rows": held,
                "scored_rows": len(scored),
                "train_rows": len(train_rows),
                "train_examples": len(trainer.data),
                "steps": result.steps,
                "zero_shot": before,
                "trained": after,
                "seconds": round(time.perf_counter() - started, 1),
            }
        )
        report["summary"] = _summary(report["fold_results"])
        root.mkdir(parents=True, exist_ok=True)
        with atomic_open(root / RESULT_FILE) as handle:
            handle.write(json.dumps(report, indent=1, default=str) + "\n")
        gain = report["summary"].get(str(report["metric"]), {}).get("gain")
        note = f", gain so far {gain['mean']:+.4f} ± {gain['sd']:.4f}" if gain else ""
        print(f"fold {number}: {report['metric']} {after.get(str(report['metric']))}{note}", flush=True)
    return report


def _summary(fold_results: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """Per numeric metric: mean ± sd over the folds run of the trained figure, the zero-shot one and the
    gain (trained - zero-shot, fold by fold)."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for key, value in fold_results[0]["trained"].items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or key in COUNTS:
            continue
        entry = {"trained": summarize([f["trained"][key] for f in fold_results])}
        if all(f["zero_shot"] for f in fold_results):
            entry["zero_shot"] = summarize([f["zero_shot"][key] for f in fold_results])
            entry["gain"] = summarize([f["trained"][key] - f["zero_shot"][key] for f in fold_results])
        out[key] = entry
    return out
