"""``textsiamese eval``: score a model against gold judgements (``--task sts``: Spearman / Pearson)."""

from __future__ import annotations

import argparse
import json

from textsiamese.cli.common import add_model_options, add_pair_input_options, load_model, read_pair_input
from textsiamese.errors import ConfigError

TASKS = ("sts",)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="evaluate a model on labelled pairs",
        description="Evaluate a model. --task sts: Spearman and Pearson correlation of the similarity with "
        "the gold 'score' column.",
    )
    parser.add_argument("--task", required=True, choices=TASKS)
    parser.add_argument("--data", required=True, metavar="FILE", help="evaluation file")
    parser.add_argument(
        "--metrics", default="cosine", help="comma-separated similarity metrics; the first is the headline"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.add_argument("--progress", action="store_true", help="show a progress bar on stderr")
    add_model_options(parser)
    add_pair_input_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from textsiamese.evaluation import evaluate_sts

    if args.task != "sts":
        raise ConfigError(f"unknown task {args.task!r}")
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    pairs = read_pair_input(args, args.data, need="score")
    model = load_model(args)
    result = evaluate_sts(
        model, pairs, metrics=metrics, batch_size=args.batch_size, show_progress=args.progress
    )
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>20}  {value:.4f}" if isinstance(value, float) else f"{key:>20}  {value}")
    return 0
