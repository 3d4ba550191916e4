"""``textsiamese info``: what a model is: towers, dimension, parameters, where it was loaded from."""

from __future__ import annotations

import argparse
import json
from typing import Any

from textsiamese.cli.common import load_model


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("info", help="describe a model", description="Describe a model directory.")
    parser.add_argument(
        "--model", metavar="DIR", help="model directory (default: the embedded all-MiniLM-L6-v2)"
    )
    parser.add_argument("--device", default="cpu", help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)


def describe(model: Any) -> dict[str, Any]:
    """A JSON-able description of ``model``."""
    config = model.config()
    return {
        "source": model.source,
        "kind": "siamese (shared tower)" if model.is_shared else "pseudo-siamese (one tower per role)",
        "roles": config.roles,
        "towers": config.towers,
        "dimension": model.dimension,
        "normalize": model.normalize,
        "similarity": model.similarity_metric,
        "parameters": model.num_parameters(),
        "calibrated": model.calibration is not None,
        "library_version": config.library_version,
    }


def run(args: argparse.Namespace) -> int:
    info = describe(load_model(args))
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    lines = [("model:", str(info["source"])), ("kind:", info["kind"])]
    for role, name in info["roles"].items():
        tower = info["towers"][name]
        settings = ", ".join(f"{k}={v}" for k, v in tower.items() if k != "kind")
        lines.append((f"{role} tower:", f"{tower['kind']} [{name}] ({settings})"))
    lines += [
        (
            "dimension:",
            f"{info['dimension']}  (normalised: {info['normalize']}, similarity: {info['similarity']})",
        ),
        ("parameters:", f"{info['parameters']:,}"),
        ("calibrated:", str(info["calibrated"])),
    ]
    width = max(len(label) for label, _ in lines) + 2  # every value starts in one column, after the longest
    for label, value in lines:
        print(f"{label:<{width}}{value}")
    return 0
