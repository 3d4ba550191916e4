"""The ``textsiamese`` command line.

Each sub-command lives in its own module under ``textsiamese.cli`` and exposes ``register(subparsers)``,
which adds its parser and sets ``func`` (taking the parsed namespace, returning an exit status). Errors a
user can cause (``TextSiameseError``) print one line on stderr and exit with status 2; an operating-system
error (disk full, permission denied) prints one line and exits with status 1; ``--debug`` shows the traceback
instead.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
import warnings
from collections.abc import Iterator, Sequence

from textsiamese.errors import TextSiameseError

# Sub-command modules, in the order they appear in --help.
COMMAND_MODULES = [
    "textsiamese.cli.score",
    "textsiamese.cli.evaluate",
    "textsiamese.cli.calibrate",
    "textsiamese.cli.enroll",
    "textsiamese.cli.info",
    "textsiamese.cli.convert",
    "textsiamese.cli.train",
    "textsiamese.cli.encode",
    "textsiamese.cli.index",
    "textsiamese.cli.search",
    "textsiamese.cli.mine",
    "textsiamese.cli.paraphrases",
    "textsiamese.cli.serve",
]


def build_parser() -> argparse.ArgumentParser:
    """The full parser with every registered sub-command."""
    from textsiamese import __version__

    parser = argparse.ArgumentParser(
        prog="textsiamese",
        description="Siamese networks for text similarity: score, evaluate, train and search sentence pairs.",
    )
    parser.add_argument("--version", action="version", version=f"textsiamese {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``textsiamese`` script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with _one_line_warnings(args.command, args.debug):
            status = int(args.func(args) or 0)
    except TextSiameseError as error:
        if args.debug:
            raise
        print(f"textsiamese {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"textsiamese {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of our stdout went away (e.g. `| head`); that is not an error of ours.
        sys.stderr.close()
        return 0
    except OSError as error:
        # Disk full, permission denied, … while writing: one line, exit status 1. Files are written under a
        # temporary name and renamed, so whatever was there before is intact.
        if args.debug:
            raise
        where = f"{error.filename}: " if error.filename else ""
        print(f"textsiamese {args.command}: error: {where}{error.strerror or error}", file=sys.stderr)
        return 1
    return status


@contextlib.contextmanager
def _one_line_warnings(command: str, debug: bool) -> Iterator[None]:
    """Show each warning (e.g. the truncation count) as one ``textsiamese CMD: warning: …`` line on stderr.

    A message repeated word for word (the same texts encoded twice, e.g. for a report) is shown once.
    """
    if debug:
        yield
        return
    seen: set[str] = set()
    original = warnings.showwarning

    def show(message: Warning | str, category: type[Warning], *_: object, **__: object) -> None:
        text = " ".join(str(message).split())
        if text not in seen:
            seen.add(text)
            print(f"textsiamese {command}: warning: {text}", file=sys.stderr)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = original


if __name__ == "__main__":
    sys.exit(main())
