"""``textsiamese score``: a similarity per sentence pair, written with the input's own columns kept."""

from __future__ import annotations

import argparse
import sys

from textsiamese.cli.common import add_model_options, add_pair_input_options, load_model, read_pair_input
from textsiamese.data import guess_format, write_rows
from textsiamese.data.tables import TABLE_FORMATS


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "score",
        help="score sentence pairs",
        description="Score each (sentence1, sentence2) pair of a CSV/TSV/JSONL file (or stdin) with the model's "
        "similarity and write the rows back with a score column. The output is written under a temporary "
        "name and renamed, so a failed run leaves no partial file.",
    )
    parser.add_argument("--pairs", default="-", metavar="FILE", help="pair file (default: stdin)")
    parser.add_argument("--output", default=None, metavar="FILE", help="output file (default: stdout)")
    parser.add_argument(
        "--output-format",
        choices=TABLE_FORMATS,
        default=None,
        help="csv, tsv or jsonl (default: from --output)",
    )
    parser.add_argument(
        "--metric", default=None, help="cosine (default), dot, euclidean, squared_euclidean, manhattan"
    )
    parser.add_argument("--progress", action="store_true", help="show a progress bar on stderr")
    add_model_options(parser)
    add_pair_input_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.pairs == "-" and args.format == "auto":
        args.format = "csv"
    pairs = read_pair_input(args, args.pairs)
    model = load_model(args)
    similarity = model.similarity(
        pairs.sentence1,
        pairs.sentence2,
        metric=args.metric,
        batch_size=args.batch_size,
        show_progress=args.progress,
    )
    columns, rows = pairs.as_table()
    score_column = "score" if "score" not in columns else "predicted_score"
    if score_column != "score":
        print(
            "textsiamese score: input has a 'score' column; the model's is written as 'predicted_score'",
            file=sys.stderr,
        )
    for row, value in zip(rows, similarity, strict=True):
        row.append(round(float(value), 6))
    fmt = args.output_format
    if fmt is None:
        fmt = guess_format(args.output, default="csv") if args.output else _input_table_format(args)
    write_rows(args.output, [*columns, score_column], rows, fmt)
    return 0


def _input_table_format(args: argparse.Namespace) -> str:
    if args.format in TABLE_FORMATS:
        return str(args.format)
    return guess_format(args.pairs) if args.format == "auto" else "csv"
