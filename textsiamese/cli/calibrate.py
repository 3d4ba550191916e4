"""``textsiamese calibrate``: fit similarity → probability and a decision threshold on labelled dev pairs.

The calibration is stored in the model directory's ``config.json`` (see ``textsiamese.decisions.calibration`` for the
format); ``textsiamese score`` then writes ``probability`` and ``same`` per pair, and ``eval`` uses its
threshold and reports its expected calibration error.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from textsiamese.cli.common import (
    add_model_options,
    add_pair_input_options,
    add_progress_option,
    load_model,
    read_pair_input,
    show_progress,
)
from textsiamese.errors import ConfigError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "calibrate",
        help="fit a similarity-to-probability map and a threshold on dev pairs",
        description="Fit a map from the model's similarity to the probability that a pair is 'same' (Platt "
        "logistic or isotonic regression) and a decision threshold, on labelled dev pairs (a 'label' "
        "column, 1 = same), and store it with the model. The model directory is rewritten in place "
        "(atomically) unless --output names another one.",
    )
    parser.add_argument("--data", required=True, metavar="DEV", help="labelled dev pairs")
    parser.add_argument(
        "--method",
        default="platt",
        choices=["platt", "isotonic"],
        help="platt: a logistic curve of the similarity; isotonic: a monotone step function (more "
        "flexible, overfits a small dev set)",
    )
    parser.add_argument(
        "--objective", default="accuracy", choices=["accuracy", "f1"], help="what the threshold maximises"
    )
    add_target_options(parser)
    parser.add_argument("--metric", default=None, help="similarity metric (default: the model's own)")
    parser.add_argument(
        "--output",
        metavar="DIR",
        help="write the calibrated model here (required for the embedded default or a non-textsiamese "
        "directory)",
    )
    parser.add_argument("--json", action="store_true", help="print the calibration as JSON")
    add_progress_option(parser)
    add_model_options(parser)
    add_pair_input_options(parser)
    parser.set_defaults(func=run)


def add_target_options(parser: argparse.ArgumentParser, resamples: bool = True) -> None:
    """``--target METRIC=VALUE`` (up to two), ``--unsure LOW,HIGH`` and ``--resamples``."""
    parser.add_argument(
        "--target",
        action="append",
        default=[],
        metavar="METRIC=VALUE",
        help="choose the threshold for a target instead of --objective: precision=0.95 (the loosest "
        "threshold with dev precision >= 0.95), recall=0.9 or fpr=0.01; reported with a bootstrap 95%% "
        "interval. Twice (e.g. precision=0.95 and recall=0.95): the two thresholds bound an unsure band",
    )
    parser.add_argument(
        "--unsure",
        metavar="LOW,HIGH",
        default=None,
        help="similarities in [LOW, HIGH) are decided 'unsure' (score writes same / unsure / not)",
    )
    if resamples:
        parser.add_argument(
            "--resamples", type=int, default=2000, help="bootstrap resamples of the dev pairs (default: 2000)"
        )


def parsed_targets(args: argparse.Namespace) -> tuple[list[tuple[str, float]], tuple[float, float] | None]:
    from textsiamese.decisions.targets import parse_band, parse_target

    targets = [parse_target(t) for t in args.target]
    if len(targets) > 2:
        raise ConfigError("--target: give at most two (their thresholds bound the unsure band)")
    return targets, parse_band(args.unsure) if args.unsure else None


def run(args: argparse.Namespace) -> int:
    from textsiamese.decisions.calibration import (
        calibrate,
        expected_calibration_error,
        probabilities,
        raw_probabilities,
    )
    from textsiamese.model.config import ModelConfig
    from textsiamese.model.loading import resolve_model_directory

    if args.output is None and args.model is None:
        raise ConfigError("the embedded default model cannot be rewritten: pass --output DIR")
    target = args.output or resolve_model_directory(args.model, quiet=True)
    if args.output is None and not ModelConfig.is_native(Path(target)):
        raise ConfigError(
            f"{args.model} is not a textsiamese model directory; pass --output DIR for the calibrated copy"
        )
    targets, unsure = parsed_targets(args)
    pairs = read_pair_input(args, args.data, need="label")
    model = load_model(args)
    calibration = calibrate(
        model,
        pairs,
        method=args.method,
        metric=args.metric,
        objective=args.objective,
        batch_size=args.batch_size,
        show_progress=show_progress(args),
        targets=targets,
        unsure=unsure,
        resamples=args.resamples,
    )
    from textsiamese.decisions.calibration import model_scores

    scores = model_scores(model, pairs.sentence1, pairs.sentence2, calibration["metric"], args.batch_size)
    assert pairs.labels is not None
    summary = {
        "method": calibration["method"],
        "metric": calibration["metric"],
        "threshold": calibration["threshold"],
        "objective": calibration["objective"],
        "dev_ece": expected_calibration_error(probabilities(calibration, scores), pairs.labels),
        "n": calibration["n"],
        "model": str(target),
    }
    for found in calibration.get("targets", []):
        low, high = found["interval"]
        summary[found["metric"]] = found["dev"]
        summary[f"{found['metric']}_interval"] = [round(low, 4), round(high, 4)]
    if "unsure" in calibration:
        summary["unsure"] = calibration["unsure"]
    raw = raw_probabilities(scores, calibration["metric"])
    if raw is not None:
        summary["dev_ece_raw"] = expected_calibration_error(raw, pairs.labels)
    model.save(target)
    if args.json:
        print(json.dumps(summary))
    else:
        for key, value in summary.items():
            print(f"{key:>12}  {value:.4f}" if isinstance(value, float) else f"{key:>12}  {value}")
    return 0
