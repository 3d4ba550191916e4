"""The ``textsiamese`` command line.

Each sub-command lives in its own module under ``textsiamese.cli`` and exposes ``register(subparsers)``,
which adds its parser and sets ``func`` (taking the parsed namespace, returning an exit status). Building the
parsers imports no torch, transformers or FAISS (``--help`` answers at once): a sub-command module imports
those inside the function that runs it. Errors a
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
    "textsiamese.cli.export",
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
    from textsiamese.cli.common import CommandParser

    parser = CommandParser(
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
        print(f"textsiamese {args.command}: error: {_message(error, args)}", file=sys.stderr)
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


# How a reader parameter that chooses columns is set on the command line (the option's dest is the
# parameter's name), for the advice after "header lacks column(s) …".
COLUMN_OPTION_HINTS = {
    "columns": "remap names with --columns canonical=actual",
    "text_column": "name the text column with --text-column",
    "id_column": "name the id column with --id-column, or --id-column '' for row numbers",
}


def _message(error: TextSiameseError, args: argparse.Namespace) -> str:
    """The error's one-line message; for a header that lacks a column, the advice names the option of the
    running command that chooses it (``--text-column`` for index build, ``--columns`` for score), and falls
    back to the Python wording where the command has no such option (train's recipes: ``data.columns``)."""
    from textsiamese.data.records import MissingColumnsError

    if isinstance(error, MissingColumnsError):
        return error.message_with({p: hint for p, hint in COLUMN_OPTION_HINTS.items() if hasattr(args, p)})
    return str(error)


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
