"""``textsiamese convert``: turn a named dataset file (STS-B, SICK, MRPC, …) into the generic pair format."""

from __future__ import annotations

import argparse

from textsiamese.cli.common import add_pair_input_options, read_pair_input
from textsiamese.data import write_rows


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="convert a dataset file to the generic pair format",
        description="Read pairs in any supported format and write them as generic CSV/TSV/JSONL with columns "
        "sentence1, sentence2, score or label, then the file's other columns.",
    )
    parser.add_argument("--input", required=True, metavar="FILE")
    parser.add_argument("--output", required=True, metavar="FILE", help="output .csv, .tsv or .jsonl")
    add_pair_input_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    pairs = read_pair_input(args, args.input)
    pairs.names = {}  # canonical column names out, whatever the input called them
    columns, rows = pairs.as_table()
    write_rows(args.output, columns, rows)
    return 0
