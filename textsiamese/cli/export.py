"""``textsiamese export``: one tower of a model as a standalone directory (textsiamese, sentence-transformers
or ONNX); see ``textsiamese.model.export``."""

from __future__ import annotations

import argparse
import sys

from textsiamese.cli.common import load_model

# textsiamese.model.export.FORMATS, as the option offers them (no torch import to build the parser).
EXPORT_FORMATS = ("textsiamese", "st", "onnx")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export",
        help="write one tower alone (textsiamese, sentence-transformers or ONNX)",
        description="Write ROLE's tower of a model, with that role's prompt and normalisation, as a standalone "
        "directory: a textsiamese model, a sentence-transformers model (SentenceTransformer(OUT) loads it), "
        "or model.onnx + tokenizer + onnx_config.json for ONNX Runtime alone. The directory is written under a "
        "temporary name and renamed into place.",
    )
    parser.add_argument(
        "--model", metavar="DIR", help="model directory (default: the embedded all-MiniLM-L6-v2)"
    )
    parser.add_argument("--role", required=True, choices=("query", "document"), help="which tower to export")
    parser.add_argument("--format", default="textsiamese", choices=EXPORT_FORMATS, help="what to write")
    parser.add_argument("--int8", action="store_true", help="onnx: int8 weights (per output channel)")
    parser.add_argument("--output", required=True, metavar="OUT", help="directory to write")
    parser.add_argument("--force", action="store_true", help="replace OUT when it exists and is not empty")
    parser.add_argument("--device", default="cpu", help=argparse.SUPPRESS)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from textsiamese.model.export import check_output, export_tower_directory

    check_output(Path(args.output), args.force)  # before loading: refuse at once
    model = load_model(args)
    path = export_tower_directory(
        model, args.role, args.output, args.format, int8=args.int8, force=args.force
    )
    tower = model.tower(args.role)
    print(
        f"textsiamese export: {args.role} tower ({tower.kind}, {tower.dimension}-d) as {args.format}"
        f"{' int8' if args.int8 else ''} -> {path}",
        file=sys.stderr,
    )
    return 0
