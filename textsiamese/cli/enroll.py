"""``textsiamese enroll`` and ``textsiamese classify``: one-shot matching against enrolled references.

``enroll`` encodes reference texts (columns ``label`` and ``text``) into a reference directory; running it
again on the same directory adds references and classes (no retraining). ``classify`` gives each text the
nearest class, its similarity, and ``unknown`` below the threshold.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from textsiamese.cli.common import (
    add_errors_option,
    add_id_column_option,
    add_model_options,
    count,
    load_model,
)
from textsiamese.data import Corpus, read_corpus, write_rows
from textsiamese.errors import ConfigError, InputError

STRATEGY_HELP = (
    "centroid: nearest class mean (the better one with several references per class, the same as reference "
    "with one); reference: nearest single reference; head: a logistic head on the embeddings (fitted by "
    "--fine-tune)"
)


def register(subparsers: argparse._SubParsersAction) -> None:
    enroll = subparsers.add_parser(
        "enroll",
        help="enroll reference texts per class for one-shot classification",
        description="Encode reference texts (a CSV/TSV/JSONL file with columns 'label' and 'text') into a "
        "reference directory. If the directory already holds references for the same model, the new ones "
        "are added (new classes included) unless --replace is given.",
    )
    enroll.add_argument("--references", required=True, metavar="FILE", help="file with label and text")
    enroll.add_argument("--output", required=True, metavar="DIR", help="reference directory")
    enroll.add_argument("--replace", action="store_true", help="start a new set instead of adding")
    _add_match_options(
        enroll,
        strategy="centroid for a new set, the set's own when adding to one",
        threshold="chosen on --dev when given, else the set's own when adding, else none: never unknown",
    )
    enroll.add_argument(
        "--dev", metavar="FILE", help="labelled texts on which to choose the unknown threshold (max accuracy)"
    )
    from textsiamese.cli.calibrate import add_target_options

    add_target_options(enroll)
    _add_fine_tune_options(enroll)
    _add_text_options(enroll)
    add_model_options(enroll)
    enroll.set_defaults(func=run_enroll)

    classify = subparsers.add_parser(
        "classify",
        help="classify texts to the nearest enrolled class",
        description="Give each text of --texts (a .txt file, one per line, or CSV/TSV/JSONL with a 'text' "
        "column) the nearest enrolled class and its similarity, or 'unknown' below the threshold. The "
        "input's columns are kept; 'predicted' and 'similarity' are added. If the file has a 'label' "
        "column, accuracy is reported on stderr (or in --json).",
    )
    classify.add_argument("--references", required=True, metavar="DIR", help="directory written by enroll")
    classify.add_argument("--texts", required=True, metavar="FILE")
    classify.add_argument("--output", default=None, metavar="FILE", help="output file (default: stdout)")
    _add_match_options(classify, strategy="the one stored by enroll", threshold="the one stored by enroll")
    classify.add_argument("--json", action="store_true", help="print a JSON summary instead of rows")
    _add_text_options(classify)
    add_model_options(classify)
    classify.set_defaults(func=run_classify)


def _add_match_options(parser: argparse.ArgumentParser, *, strategy: str, threshold: str) -> None:
    """``--strategy`` and ``--threshold``; ``strategy`` and ``threshold`` say what each is when not given,
    which differs between enroll (a new or growing set) and classify (what enroll stored)."""
    parser.add_argument(
        "--strategy",
        choices=["reference", "centroid", "head"],
        default=None,
        help=f"{STRATEGY_HELP} (default: {strategy})",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=None,
        help=f"similarity below which: unknown (default: {threshold})",
    )


# Repeated from decisions.fewshot (LOSSES, FineTuneConfig's defaults) so that building the parser imports no
# torch; tests/test_cli_options.py checks they still match the library.
FINE_TUNE_LOSSES = ("contrastive", "cosine", "mnrl")
FINE_TUNE_DEFAULTS: dict[str, Any] = {"loss": "contrastive", "epochs": 10, "learning_rate": 5e-5}


def _add_fine_tune_options(parser: argparse.ArgumentParser) -> None:
    default = argparse.Namespace(**FINE_TUNE_DEFAULTS)
    group = parser.add_argument_group("fine-tuning (--fine-tune)")
    group.add_argument(
        "--fine-tune",
        action="store_true",
        help="fine-tune the tower on pairs of all enrolled references (saved in DIR/tower), then pick the "
        "centroid or a logistic head (see --select)",
    )
    group.add_argument(
        "--loss", choices=FINE_TUNE_LOSSES, default=default.loss, help="(default: %(default)s)"
    )
    group.add_argument("--epochs", type=int, default=default.epochs, help="(default: %(default)s)")
    group.add_argument(
        "--learning-rate", type=float, default=default.learning_rate, help="(default: %(default)s)"
    )
    group.add_argument(
        "--select",
        choices=["holdout", "centroid", "head"],
        default="head",
        help="head (default: a logistic head on the tuned embeddings, the better on average in the "
        "few-shot benchmark), centroid, or holdout: whichever classifies a 25%% held-out part of the "
        "references better after tuning on the rest (costs a second, shorter run)",
    )
    group.add_argument("--seed", type=int, default=0, help="seed of pair drawing and training (default: 0)")


def _add_text_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--text-column", default="text", help="column holding the text (default: text)")
    parser.add_argument("--label-column", default="label", help="column holding the class (default: label)")
    add_id_column_option(parser, "text")
    add_errors_option(parser)


def _labelled(args: argparse.Namespace, path: str, required: bool) -> tuple[Corpus, list[str] | None]:
    corpus = read_corpus(path, text_column=args.text_column, id_column=args.id_column, errors=args.errors)
    labels = corpus.metadata.get(args.label_column)
    if labels is None and required:
        raise InputError(
            corpus.source,
            f"header lacks column {args.label_column!r} (the class of each text; see --label-column)",
            line=1,
        )
    if labels is not None:
        for number, label in enumerate(labels):
            if not label.strip():
                raise InputError(corpus.source, "label is empty", line=number + 2, column=args.label_column)
        labels = [label.strip() for label in labels]
    return corpus, labels


def run_enroll(args: argparse.Namespace) -> int:
    from textsiamese.decisions.oneshot import META_FILE, STRATEGIES, OneShotClassifier

    corpus, labels = _labelled(args, args.references, required=True)
    dev = _labelled(args, args.dev, required=True) if args.dev else None
    assert labels is not None
    model = load_model(args)
    output = Path(args.output)
    if (output / META_FILE).is_file() and not args.replace:
        matcher = OneShotClassifier.load(output, model, batch_size=args.batch_size)
        before = len(matcher)
    else:
        if output.exists() and not (output / META_FILE).is_file() and any(output.iterdir()):
            raise ConfigError(f"{output} exists and is not a reference directory; choose another --output")
        matcher = OneShotClassifier(model, batch_size=args.batch_size)
        before = 0
    if args.strategy:
        matcher.strategy = args.strategy
    matcher.enroll(labels, corpus.texts)
    tuned = at_target = ""
    if args.fine_tune:
        from textsiamese.decisions.fewshot import FineTuneConfig

        config = FineTuneConfig(
            loss=args.loss, epochs=args.epochs, learning_rate=args.learning_rate, seed=args.seed
        )
        report = matcher.fine_tune(config, select=args.select, show_progress=sys.stderr.isatty())
        if args.strategy:
            matcher.strategy = args.strategy
        tuned = (
            f"; tower fine-tuned ({config.loss}, {count(config.epochs, 'epoch')}, {report.steps} steps, "
            f"{report.seconds:.0f} s) on {count(len(matcher.tuned_classes), 'class', 'classes')}"
        )
    elif matcher.untuned_classes:
        tuned = f"; tower not tuned on: {', '.join(matcher.untuned_classes)} (enroll --fine-tune to retrain)"
    if args.threshold is not None:
        matcher.threshold = args.threshold
    elif dev is not None:
        from textsiamese.cli.calibrate import parsed_targets

        dev_corpus, dev_labels = dev
        assert dev_labels is not None
        targets, unsure = parsed_targets(args)
        for strategy in STRATEGIES:  # each strategy's own, so classify --strategy finds a fitting one
            if strategy == "head" and matcher.head is None:
                continue
            if targets or unsure:
                found = matcher.choose_target_threshold(
                    dev_corpus.texts, dev_labels, targets, strategy, unsure, args.resamples
                )
                if strategy == matcher.strategy:
                    at_target = "".join(
                        f"; dev {t['metric']} {t['dev']:.3f} at {t['threshold']:.4g} "
                        f"({t['level']:.0%} interval {t['interval'][0]:.3f}-{t['interval'][1]:.3f})"
                        for t in found.get("targets", [])
                    )
            else:
                matcher.choose_threshold(dev_corpus.texts, dev_labels, strategy=strategy)
    elif args.target or args.unsure:
        raise ConfigError("--target / --unsure: pass --dev, the labelled texts the threshold is chosen on")
    matcher.save(output)
    counts = {c: matcher.labels.count(c) for c in matcher.classes}
    skipped = f" ({matcher.skipped} already enrolled, skipped)" if matcher.skipped else ""
    chosen = ""
    if not args.strategy and not before and not args.fine_tune:
        chosen = (
            " (default with more than one reference per class; --strategy reference for the nearest single one)"
            if max(counts.values()) > 1
            else " (default; with one reference per class it is the nearest reference)"
        )
    print(
        f"textsiamese enroll: {count(len(matcher) - before, 'reference')} added{skipped}; {len(matcher)} in "
        f"{count(len(counts), 'class', 'classes')} ({', '.join(f'{c}: {n}' for c, n in counts.items())}){tuned}; "
        f"strategy {matcher.strategy}{chosen}, "
        f"threshold {matcher.threshold if matcher.threshold is not None else 'none'}"
        f"{f', unsure band {matcher.bands[matcher.strategy]}' if matcher.strategy in matcher.bands else ''}"
        f"{at_target}",
        file=sys.stderr,
    )
    return 0


def run_classify(args: argparse.Namespace) -> int:
    from textsiamese.decisions.oneshot import OneShotClassifier, accuracy

    corpus, labels = _labelled(args, args.texts, required=False)
    model = load_model(args)
    matcher = OneShotClassifier.load(args.references, model, batch_size=args.batch_size)
    strategy = args.strategy or matcher.strategy
    if args.threshold is None and matcher.threshold_for(strategy) is None and matcher.thresholds:
        chosen_for = ", ".join(f"{name} ({value:.4g})" for name, value in matcher.thresholds.items())
        print(
            f"textsiamese classify: {args.references} holds a threshold for {chosen_for} only; with --strategy "
            f"{strategy} nothing comes out unknown (pass --threshold, or enroll again with --dev)",
            file=sys.stderr,
        )
    predictions = matcher.classify(corpus.texts, strategy=args.strategy, threshold=args.threshold)
    summary: dict[str, object] = {
        "task": "one-shot",
        "strategy": strategy,
        "threshold": args.threshold if args.threshold is not None else matcher.threshold_for(strategy),
        "classes": len(matcher.classes),
        "references": len(matcher),
        "unknown": sum(p == matcher.unknown_label for p in predictions.labels),
        "unsure": sum(p == matcher.unsure_label for p in predictions.labels),
        "n": len(corpus),
    }
    if labels is not None:
        summary["accuracy"] = accuracy(predictions.labels, labels)
    if args.json:
        print(json.dumps(summary))
        return 0
    columns = ["id", "text", *corpus.metadata, "predicted", "similarity"]
    rows = [
        [identifier, text, *(corpus.metadata[c][i] for c in corpus.metadata), label, round(float(sim), 6)]
        for i, (identifier, text, label, sim) in enumerate(
            zip(corpus.ids, corpus.texts, predictions.labels, predictions.similarities, strict=True)
        )
    ]
    write_rows(args.output, columns, rows)
    if "accuracy" in summary:
        print(
            f"textsiamese classify: accuracy {summary['accuracy']:.4f} on {len(corpus)} texts",
            file=sys.stderr,
        )
    return 0
