"""``textsiamese train RECIPE``: fine-tune a model from a recipe file (see ``recipes/README.md``)."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from textsiamese.cli.common import add_progress_option
from textsiamese.cli.output_guard import check_run_directory
from textsiamese.errors import ConfigError

if TYPE_CHECKING:
    from textsiamese.training.recipes import Recipe


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="fine-tune a model from a recipe",
        description="Train from a recipe (a YAML file, or the name of one in ./recipes/). Outputs go to "
        "--output (default runs/<recipe name>): final/ and best/ model directories, checkpoint/, "
        "metrics.jsonl and results.json. SIGINT or SIGTERM saves a checkpoint and stops; --resume continues. "
        "A directory that already holds a run is refused unless --resume or --overwrite is given.",
    )
    parser.add_argument("recipe", help="recipe file, or a name in ./recipes/ (e.g. stsb)")
    parser.add_argument("--output", metavar="DIR", help="output directory (default: runs/<recipe name>)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a recipe value, e.g. --set train.lr=3e-5 --set data.train=PATH; a bare key means "
        "train.KEY (--set max_steps=2); repeatable",
    )
    again = parser.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="continue from OUTPUT/checkpoint")
    again.add_argument(
        "--overwrite",
        action="store_true",
        help="start over in an OUTPUT that holds a run: its checkpoint/, final/, best/, metrics and stage "
        "folders are removed first",
    )
    parser.add_argument("--device", help="cpu, cuda, cuda:1 … (default: cuda when available)")
    add_progress_option(parser, "the recipe's train.progress, else when stderr is a terminal")
    parser.add_argument("--json", action="store_true", help="print the results of the last stage as JSON")
    cv = parser.add_argument_group(
        "cross-validation",
        "--folds K trains on K-1 folds of the recipe's training file and evaluates on the held-out one, "
        "for every fold (WikiQA-style files grouped by question with data.split_by: sentence1), and writes "
        "OUTPUT/crossval.json (default OUTPUT: runs/<recipe name>-cv<K>)",
    )
    cv.add_argument("--folds", type=int, metavar="K", help="cross-validate over K folds instead of training")
    cv.add_argument(
        "--fold",
        dest="only_folds",
        type=int,
        action="append",
        metavar="I",
        help="run only fold I of the K (repeatable; e.g. a 2-fold screen of settings)",
    )
    cv.add_argument(
        "--no-zero-shot", action="store_true", help="skip the starting model's figures on each fold"
    )
    cv.add_argument("--keep-models", action="store_true", help="keep each fold's trained model")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from textsiamese.training import load_recipe, run_recipe
    from textsiamese.training.distributed import env_world

    overrides = list(args.overrides)
    if args.device:
        overrides.append(f"train.device={args.device}")
    if args.progress is not None:
        overrides.append(f"train.progress={str(args.progress).lower()}")
    recipe = load_recipe(args.recipe, overrides)
    train = recipe.settings.get("train")
    if args.progress is None and isinstance(train, dict) and not sys.stderr.isatty():
        train.setdefault("progress", False)  # no bar in a log file, unless the recipe asks for one
    if args.folds is not None:
        return _cross_validate(args, recipe)
    if args.only_folds or args.no_zero_shot or args.keep_models:
        raise ConfigError("--fold, --no-zero-shot and --keep-models go with --folds K")
    # The directory run_recipe writes to, resolved the same way, so the check looks where the run will go.
    output = Path(args.output or recipe.settings.get("output") or Path("runs") / recipe.name)
    check_run_directory(output, resume=args.resume, overwrite=args.overwrite, is_main=env_world()[0] == 0)
    results = run_recipe(recipe, output=output, resume=args.resume)
    if not results:
        return 0
    last = results[-1]
    if args.json:
        print(json.dumps({k: v for k, v in last.to_dict().items() if k != "evaluations"}, default=str))
    else:
        keys = ["output", "steps", "stopped", "seconds", "best_step", "best", "final", "baseline"]
        if last.averaged_steps is not None:  # final is the weight average; show what it averaged and beat
            keys[7:7] = ["averaged_steps", "unaveraged"]
        for key in keys:
            print(f"{key:>14}  {getattr(last, key)}")
    if last.stopped == "interrupted":
        print(f"interrupted: checkpoint saved in {last.output}/checkpoint; continue with --resume")
        return 128 + int(signal.Signals[last.signal or "SIGINT"])
    return 0


def _cross_validate(args: argparse.Namespace, recipe: Recipe) -> int:
    """``--folds K``: the recipe's grouped K-fold cross-validation; prints mean ± sd per metric."""
    from textsiamese.training.crossval import RESULT_FILE, cross_validate

    output = Path(args.output or Path("runs") / f"{recipe.name}-cv{args.folds}")
    if (output / RESULT_FILE).exists() and not args.overwrite:
        raise ConfigError(f"{output} already holds {RESULT_FILE}; pass --overwrite to start over")
    report = cross_validate(
        recipe,
        folds=args.folds,
        output=output,
        only=args.only_folds,
        zero_shot=not args.no_zero_shot,
        keep_models=args.keep_models,
    )
    if "interrupted" in report:
        return 128 + int(signal.Signals[report["interrupted"]["signal"] or "SIGINT"])
    if args.json:
        print(json.dumps(report.get("summary", {})))
        return 0
    print(f"{recipe.name}: folds {report['folds_run']} of {report['folds']} -> {output / RESULT_FILE}")
    for key, entry in report.get("summary", {}).items():
        parts = [f"{name} {v['mean']:.4f} ± {v['sd']:.4f}" for name, v in entry.items()]
        print(f"{key:>12}  " + "  ".join(parts))
    return 0
