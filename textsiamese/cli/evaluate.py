"""``textsiamese eval``: score a model against gold judgements.

Tasks: ``sts`` (Spearman / Pearson against ``score``), ``classification`` (pairs with ``label``: accuracy,
precision, recall, F1 at a threshold chosen on ``--dev`` or by cross-validation, average precision, ROC-AUC,
expected calibration error), ``retrieval`` (sentence1 = query, sentence2 = document, label 1 = relevant:
recall@1/5/10, MRR@10, nDCG@10, MAP), ``reranking`` (the same columns, each query's own candidates ranked:
MAP, MRR, MRR@10, nDCG@10, as WikiQA is reported) and ``triplet`` (anchor, positive, negative: accuracy).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from textsiamese.cli.common import (
    add_model_options,
    add_pair_input_options,
    add_progress_option,
    load_model,
    parse_columns,
    read_pair_input,
    show_progress,
)
from textsiamese.data import PairData
from textsiamese.errors import ConfigError, InputError

if TYPE_CHECKING:
    import numpy as np

TASKS = ("sts", "classification", "retrieval", "reranking", "triplet")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="evaluate a model on labelled pairs or triplets",
        description="Evaluate a model. sts: Spearman and Pearson correlation of the similarity with the gold "
        "'score' column. classification: accuracy, precision, recall, F1 (threshold chosen on --dev, or by "
        "cross-validation on the file), average precision, ROC-AUC and calibration error on a 'label' "
        "column. retrieval: sentence1 = query, sentence2 = document, label 1 = relevant; recall@1/5/10, "
        "MRR@10, nDCG@10, MAP over all distinct sentence2. reranking: the same columns, each query's own "
        "candidates ranked (rows sharing sentence1); MAP, MRR, MRR@10, nDCG@10, recall@k over queries with both "
        "labels. "
        "triplet: accuracy of d(anchor, positive) < "
        "d(anchor, negative).",
    )
    parser.add_argument("--task", required=True, choices=TASKS)
    parser.add_argument("--data", required=True, metavar="FILE", help="evaluation file")
    parser.add_argument(
        "--dev",
        metavar="FILE",
        help="classification: labelled dev pairs (same format options) on which the threshold (and, for an "
        "uncalibrated model, a Platt calibration) is chosen, then applied unchanged to --data",
    )
    parser.add_argument(
        "--metrics",
        default=None,
        help="comma-separated similarity metrics; the first is the headline (sts reports each; other "
        "tasks use the first). Default: the model's calibration metric, else its own (cosine)",
    )
    parser.add_argument(
        "--objective",
        default="accuracy",
        choices=["accuracy", "f1"],
        help="classification: what the threshold maximises (default: accuracy)",
    )
    parser.add_argument(
        "--folds", type=int, default=5, help="classification without --dev: cross-validation folds"
    )
    from textsiamese.cli.calibrate import add_target_options

    add_target_options(parser)
    parser.add_argument("--report", metavar="DIR", help="write PNG plots and summary.md to DIR")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    add_progress_option(parser)
    add_model_options(parser)
    add_pair_input_options(parser)
    parser.set_defaults(func=run)


def _metrics(args: argparse.Namespace) -> list[str]:
    if not args.metrics:
        return []
    return [m.strip() for m in args.metrics.split(",") if m.strip()]


def run(args: argparse.Namespace) -> int:
    if args.task not in TASKS:
        raise ConfigError(f"unknown task {args.task!r}")
    if args.dev and args.task != "classification":
        raise ConfigError("--dev is used by --task classification only")
    if (args.target or args.unsure) and args.task != "classification":
        raise ConfigError("--target / --unsure are used by --task classification only")
    args.progress = show_progress(args)  # the task runners pass it on as a bool
    runner = {
        "sts": _run_sts,
        "classification": _run_classification,
        "retrieval": _run_retrieval,
        "reranking": _run_reranking,
        "triplet": _run_triplet,
    }[args.task]
    result = runner(args)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>24}  {value:.4f}" if isinstance(value, float) else f"{key:>24}  {value}")
    return 0


def _report(args: argparse.Namespace, result: dict[str, Any], **arrays: Any) -> None:
    from textsiamese.evaluation.report import write_report

    written = write_report(args.report, result, source=args.data, **arrays)
    print(f"textsiamese eval: wrote {len(written)} files to {args.report}", file=sys.stderr)


def _pair_pca(
    a: np.ndarray, b: np.ndarray, labels: Any, names: tuple[str, str] = ("different", "same")
) -> dict[str, Any]:
    import numpy as np

    return {
        "pca_vectors": np.abs(a - b),
        "pca_groups": [names[1] if y == 1 else names[0] for y in labels],
        "pca_title": "PCA of |u − v| per pair, by label",
    }


def _check_correlatable(pairs: PairData) -> None:
    """A correlation needs two pairs and gold scores that vary; say so before loading a model."""
    if len(pairs) < 2:
        raise InputError(pairs.source, f"STS correlation needs at least two pairs, the file has {len(pairs)}")
    assert pairs.scores is not None
    if min(pairs.scores) == max(pairs.scores):
        raise InputError(
            pairs.source, f"every gold score is {pairs.scores[0]:g}; a correlation with them is undefined"
        )


def _run_sts(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np

    from textsiamese.evaluation import evaluate_sts

    pairs = read_pair_input(args, args.data, need="score")
    _check_correlatable(pairs)
    model = load_model(args)
    metrics = _metrics(args) or [model.similarity_metric]
    result: dict[str, Any] = evaluate_sts(
        model, pairs, metrics=metrics, batch_size=args.batch_size, show_progress=args.progress
    )
    if args.report:
        import torch

        from textsiamese.model.distances import get_distance

        a, b = model.encode_pairs(pairs.sentence1, pairs.sentence2, batch_size=args.batch_size)
        scores = get_distance(metrics[0]).pairwise(torch.from_numpy(a), torch.from_numpy(b)).numpy()
        gold = np.asarray(pairs.scores)
        top = max(int(np.ceil(gold.max())) - 1, int(np.floor(gold.min())))
        bands = np.minimum(np.floor(gold).astype(int), top)  # the maximum joins the band below it
        _report(
            args,
            result,
            metric=metrics[0],
            scores=scores,
            gold_scores=gold,
            pca_vectors=a,
            pca_groups=[f"gold {band}–{band + 1}" for band in bands],
            pca_title="PCA of first-sentence embeddings, by gold score band",
        )
    return result


def _run_classification(args: argparse.Namespace) -> dict[str, Any]:
    from textsiamese.evaluation import classify_pairs

    pairs = read_pair_input(args, args.data, need="label")
    dev = read_pair_input(args, args.dev, need="label") if args.dev else None
    model = load_model(args)
    metrics = _metrics(args)
    outcome = classify_pairs(
        model,
        pairs,
        dev=dev,
        metric=metrics[0] if metrics else None,
        objective=args.objective,
        folds=args.folds,
        batch_size=args.batch_size,
        show_progress=args.progress,
    )
    if args.report:
        assert outcome.embeddings is not None
        a, b = outcome.embeddings
        if "class" in pairs.extra:  # e.g. AG News: colour the first texts by their class
            pca: dict[str, Any] = {
                "pca_vectors": a,
                "pca_groups": pairs.extra["class"],
                "pca_title": "PCA of first-text embeddings, by class",
            }
        else:
            pca = _pair_pca(a, b, outcome.labels)
        _report(
            args,
            dict(outcome.metrics),
            metric=outcome.metric,
            scores=outcome.scores,
            labels=outcome.labels,
            threshold=outcome.threshold,
            predicted=outcome.predicted,
            probabilities=outcome.probabilities,
            raw_probabilities=outcome.raw_probabilities,
            **pca,
        )
    result = dict(outcome.metrics)
    if args.target or args.unsure:
        result.update(_at_targets(args, model, dev, outcome))
    return result


def _at_targets(args: argparse.Namespace, model: Any, dev: Any, outcome: Any) -> dict[str, Any]:
    """Thresholds for ``--target`` chosen on ``--dev`` (with their bootstrap intervals there), and what each
    gives on ``--data``; with an unsure band, the share of ``--data`` pairs decided unsure."""
    from textsiamese.cli.calibrate import parsed_targets
    from textsiamese.decisions.calibration import model_scores
    from textsiamese.decisions.targets import UNSURE, decision_labels, evaluate_at, fit_targets

    if dev is None:
        raise ConfigError("--target / --unsure: pass --dev, the labelled pairs the threshold is chosen on")
    targets, unsure = parsed_targets(args)
    dev_scores = model_scores(model, dev.sentence1, dev.sentence2, outcome.metric, args.batch_size)
    chosen = fit_targets(dev_scores, dev.labels, targets, outcome.metric, unsure, args.resamples)
    out: dict[str, Any] = {}
    for found in chosen.get("targets", []):  # type: ignore[attr-defined]
        on_data = evaluate_at(outcome.scores, outcome.labels, found["threshold"], outcome.metric)
        name = f"{found['metric']}={found['target']}"
        out[f"{name} threshold"] = found["threshold"]
        out[f"{name} dev"] = found["dev"]
        out[f"{name} dev_interval"] = [round(v, 4) for v in found["interval"]]
        for metric, value in on_data.items():
            out[f"{name} data_{metric}"] = value
    if "unsure" in chosen:
        words = decision_labels(outcome.scores, 0.0, outcome.metric, chosen["unsure"])  # type: ignore[arg-type]
        out["unsure"] = chosen["unsure"]
        out["unsure_rate"] = sum(w == UNSURE for w in words) / len(words)
    return out


def _run_retrieval(args: argparse.Namespace) -> dict[str, Any]:
    from textsiamese.evaluation import evaluate_retrieval

    return _run_ranking(args, evaluate_retrieval)


def _run_reranking(args: argparse.Namespace) -> dict[str, Any]:
    from textsiamese.evaluation import evaluate_reranking

    return _run_ranking(args, evaluate_reranking)


def _run_ranking(args: argparse.Namespace, evaluate: Any) -> dict[str, Any]:
    """Retrieval or re-ranking: query / document pairs with 0/1 relevance labels."""
    import numpy as np

    pairs = read_pair_input(args, args.data, need="label")
    model = load_model(args)
    metrics = _metrics(args)
    metric = metrics[0] if metrics else None
    result: dict[str, Any] = evaluate(
        model, pairs, metric=metric, batch_size=args.batch_size, show_progress=args.progress
    )
    if args.report:
        import torch

        from textsiamese.model.distances import get_distance

        a, b = model.encode_pairs(pairs.sentence1, pairs.sentence2, batch_size=args.batch_size)
        name = result["metric"]
        scores = get_distance(name).pairwise(torch.from_numpy(a), torch.from_numpy(b)).numpy()
        labels = np.asarray(pairs.labels)
        names = ("not relevant", "relevant")
        _report(
            args,
            result,
            metric=name,
            scores=scores,
            labels=labels,
            label_names=names,
            **_pair_pca(a, b, labels, names),
        )
    return result


def _run_triplet(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np

    from textsiamese.data import read_triplets
    from textsiamese.evaluation.triplet import triplet_distances, triplet_result
    from textsiamese.model.distances import get_distance

    fmt = "snli" if args.format == "snli" else (None if args.format == "auto" else args.format)
    if fmt not in (None, "snli", "csv", "tsv", "jsonl"):
        raise ConfigError(f"--task triplet reads csv, tsv, jsonl or snli files, not {args.format!r}")
    triplets = read_triplets(
        args.data, fmt or "auto", columns=parse_columns(args.columns), errors=args.errors
    )
    model = load_model(args)
    metrics = _metrics(args)
    name = get_distance(metrics[0] if metrics else model.similarity_metric).name
    d_p, d_n = triplet_distances(model, triplets, name, args.batch_size, args.progress)
    result: dict[str, Any] = triplet_result(d_p, d_n, name)
    if args.report:
        closeness = -np.concatenate([d_p, d_n])
        closer = get_distance(name).higher_is_closer
        labels = np.concatenate([np.ones(len(d_p), dtype=int), np.zeros(len(d_n), dtype=int)])
        _report(
            args,
            result,
            metric=name,
            scores=closeness,
            labels=labels,
            higher_is_closer=True,
            label_names=("negative", "positive"),
            score_label=f"{name} to the anchor" if closer else f"−{name} distance to the anchor",
        )
    return result
