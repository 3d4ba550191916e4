"""Options and helpers shared by the sub-commands.

Nothing here imports torch, transformers or FAISS: every sub-command's parser is built from this module for
``textsiamese --help``, which should answer at once. The few choice lists the parsers need from those
libraries' modules are repeated below (``tests/test_cli_options.py`` checks they match); the modules
themselves are imported by the functions that run a command.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import warnings
from collections.abc import Iterator
from typing import Any

from textsiamese.data import PAIR_FORMATS, PairData, read_pairs
from textsiamese.errors import ConfigError

# textsiamese.inference.onnx.BACKENDS, textsiamese.inference.precision.PRECISIONS, textsiamese.search.kinds.KIND_NAMES
# and .METRICS, as the options offer them.
BACKENDS = ("torch", "onnx")
PRECISIONS = ("auto", "fp32", "bf16", "int8")
INDEX_KIND_NAMES = ("auto", "flat", "hnsw", "ivf", "ivfpq")
INDEX_METRICS = ("cosine", "dot", "euclidean")


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Ends an option's help with ``(default: X)`` when it has a default worth saying and the help does not
    already mention one.

    Unlike ``argparse.ArgumentDefaultsHelpFormatter`` it says nothing for flags (``store_true``,
    ``--no-…``: their default is only the flag's absence) nor for defaults of ``None``, ``''`` or ``[]``
    (those mean "not given"; where that stands for something, the help says what).
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help
        if not text or "default" in text.lower() or not action.option_strings or action.nargs == 0:
            return text
        if action.default in (None, "", [], argparse.SUPPRESS):
            return text
        return f"{text} (default: %(default)s)"


class CommandParser(argparse.ArgumentParser):
    """The parser of the ``textsiamese`` command and, through ``add_subparsers``, of every sub-command:
    they all show defaults with ``DefaultsHelpFormatter`` without each ``add_parser`` call asking."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", DefaultsHelpFormatter)
        super().__init__(*args, **kwargs)


def add_progress_option(
    parser: argparse.ArgumentParser, default_help: str = "when stderr is a terminal"
) -> None:
    """``--progress`` / ``--no-progress``: the one spelling of the progress bar on stderr for every command.

    Neither given leaves ``args.progress`` ``None``, which ``show_progress`` reads as "when stderr is a
    terminal": a bar helps a person watching and is noise in a log file or a pipe.
    """
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=f"show a progress bar on stderr, or not (default: {default_help})",
    )


def show_progress(args: argparse.Namespace) -> bool:
    """Whether to show the progress bar: ``--progress`` / ``--no-progress``, else when stderr is a terminal."""
    if args.progress is None:
        return sys.stderr.isatty()
    return bool(args.progress)


def count(n: int, noun: str, plural: str | None = None) -> str:
    """``"1 row"``, ``"2 rows"``: a number with its noun in the right number for a message."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """``--model``, ``--device``, ``--backend``, ``--batch-size``."""
    parser.add_argument(
        "--model", metavar="DIR", help="model directory (default: the embedded all-MiniLM-L6-v2)"
    )
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 … (default: cuda when available)")
    parser.add_argument(
        "--backend",
        default="torch",
        choices=BACKENDS,
        help="torch (default) or onnx: CPU, transformer towers, the tower exported once and run by ONNX "
        "Runtime (fp32, or int8 weights with --int8 where offered); needs pip install 'textsiamese[onnx]'",
    )
    parser.add_argument(
        "--batch-size", type=int, default=None, help="texts per forward pass (default: 16 on CPU, 64 on CUDA)"
    )


def add_pair_input_options(parser: argparse.ArgumentParser) -> None:
    """``--format``, ``--columns``, ``--label-convention``, ``--errors`` for pair files."""
    parser.add_argument(
        "--format",
        default="auto",
        choices=PAIR_FORMATS,
        help="input format: generic csv/tsv/jsonl (auto: from the extension) or a named dataset file",
    )
    parser.add_argument(
        "--columns",
        default=None,
        metavar="NAME=COLUMN,…",
        help="remap column names, e.g. sentence1=question,sentence2=answer",
    )
    parser.add_argument(
        "--label-convention",
        default="1=similar",
        choices=["1=similar", "0=similar"],
        help="what label 1 means in the file; 0=similar files are flipped on reading",
    )
    add_errors_option(parser)


def add_errors_option(parser: argparse.ArgumentParser) -> None:
    """``--errors strict|replace``: what to do with invalid UTF-8 in any file the command reads."""
    parser.add_argument(
        "--errors",
        default="strict",
        choices=["strict", "replace"],
        help="invalid UTF-8: stop with the line (strict) or substitute U+FFFD (replace)",
    )


def add_id_column_option(parser: argparse.ArgumentParser, what: str = "row") -> None:
    """``--id-column``: where a table file's ids come from; by default its ``id`` column, as ``text`` is the
    text column (see ``data.read_corpus``)."""
    parser.add_argument(
        "--id-column",
        default=None,
        metavar="COLUMN",
        help=f"column holding each {what}'s unique id (default: the 'id' column when the file has one, else "
        "row numbers; '' forces row numbers)",
    )


def parse_columns(spec: str | None) -> dict[str, str] | None:
    """``"sentence1=q,sentence2=a"`` → ``{"sentence1": "q", "sentence2": "a"}``."""
    if not spec:
        return None
    mapping: dict[str, str] = {}
    for item in spec.split(","):
        name, sep, column = item.partition("=")
        if not sep or not name.strip() or not column.strip():
            raise ConfigError(f"--columns expects NAME=COLUMN pairs separated by commas, got {item!r}")
        mapping[name.strip()] = column.strip()
    return mapping


def read_pair_input(args: argparse.Namespace, path: str, need: str | None = None) -> PairData:
    """Read the pair file named on the command line with the shared input options."""
    return read_pairs(
        path,
        args.format,
        columns=parse_columns(args.columns),
        need=need,
        label_convention=args.label_convention,
        errors=args.errors,
    )


def load_model(args: argparse.Namespace) -> Any:
    """The model named by ``--model`` (or the embedded default) on ``--device``, with ``--backend`` where the
    command offers it."""
    from textsiamese.model.loading import load

    return load(args.model, device=args.device, backend=getattr(args, "backend", "torch"))


def add_prompt_option(parser: argparse.ArgumentParser, role: str) -> None:
    """``--prompt TEXT``: the prefix put before every text, in place of the model's own prompt for ``role``."""
    parser.add_argument(
        "--prompt",
        default=None,
        metavar="TEXT",
        help=f'prefix put before every text ("" for none); default: the model\'s own {role} prompt, if any',
    )


# textsiamese.inference.long_text.MODES and .CHUNK_POOLINGS, as the options offer them (checked like the above).
LONG_TEXT_MODES = ("truncate", "chunk")
CHUNK_POOLINGS = ("mean", "max", "first")


def add_long_text_options(parser: argparse.ArgumentParser, report: bool = True) -> None:
    """``--long-text``, ``--chunk-length``, ``--chunk-overlap``, ``--chunk-pooling`` and, where the command
    writes one, ``--report-truncation``."""
    parser.add_argument(
        "--long-text",
        default=None,
        choices=LONG_TEXT_MODES,
        help="texts longer than the tower reads: truncate them, or chunk them (overlapping windows encoded in "
        "the same batches, their vectors pooled into one) (default: the model's saved setting, else truncate)",
    )
    parser.add_argument(
        "--chunk-length",
        type=int,
        default=None,
        metavar="N",
        help="tokens per chunk, special tokens included (default: the tower's maximum)",
    )
    parser.add_argument(
        "--chunk-overlap",
        type=int,
        default=None,
        metavar="N",
        help="tokens shared by neighbouring chunks (default: 32)",
    )
    parser.add_argument(
        "--chunk-pooling",
        default=None,
        choices=CHUNK_POOLINGS,
        help="how chunk vectors become one: mean, max (per dimension) or first (default: mean)",
    )
    if report:
        parser.add_argument(
            "--report-truncation",
            action="store_true",
            help="write each text's token count and whether it was truncated beside the output, and name the "
            "truncated rows' lines in the warning",
        )


def apply_long_text(args: argparse.Namespace, model: Any, roles: tuple[str, ...]) -> None:
    """Set ``roles``' long-text handling on ``model`` from the ``--long-text`` / ``--chunk-*`` options, on top
    of what the model has saved; nothing given leaves the model's own."""
    from dataclasses import replace

    from textsiamese.inference.long_text import LongText

    given = {
        "mode": args.long_text,
        "chunk_length": args.chunk_length,
        "overlap": args.chunk_overlap,
        "pooling": args.chunk_pooling,
    }
    changes = {key: value for key, value in given.items() if value is not None}
    if not changes:
        return
    for role in roles:
        setting = replace(model.long_text.get(role, LongText()), **changes)
        if not setting.chunked:
            options = [f"--{name}" for name in ("chunk-length", "chunk-overlap", "chunk-pooling")]
            named = [
                o
                for o, k in zip(options, ("chunk_length", "overlap", "pooling"), strict=True)
                if k in changes
            ]
            if named:
                raise ConfigError(f"{', '.join(named)} needs --long-text chunk (the model truncates)")
        model.set_long_text(setting, role=role)


@contextlib.contextmanager
def held_truncation() -> Iterator[list[str]]:
    """Hold back ``encode``'s own TruncationWarning (it counts input positions) so the command can give one
    naming the file's lines (``warn_truncation``): the list yielded holds the held messages once the block
    ends; other warnings pass on as they came."""
    from textsiamese.model import TruncationWarning

    held: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield held
    for record in caught:
        if issubclass(record.category, TruncationWarning):
            held.append(str(record.message))
        else:
            warnings.warn_explicit(record.message, record.category, record.filename, record.lineno)


def truncated_flags(model: Any, role: str, tokens: Any) -> Any:
    """Which of ``role``'s texts (by whole token count) lost tokens (``SiameseModel.truncated``)."""
    return model.truncated(tokens, role)


def warn_truncation(texts: int, lines: list[int], limits: list[int], count: int | None = None) -> None:
    """The one TruncationWarning of a command: how many of ``texts`` were cut (``count``, default one per
    line) and the first of their ``lines``."""
    from textsiamese.inference.long_text import truncation_message
    from textsiamese.model import TruncationWarning

    count = len(lines) if count is None else count
    if count:
        limit = " or ".join(str(n) for n in sorted(set(limits)))
        message = truncation_message(count, texts, limit, sorted(set(lines)), "lines")
        warnings.warn(message, TruncationWarning, stacklevel=2)


def line_numbers(flags: Any, lines: list[int]) -> list[int]:
    """The file lines (else 1-based positions) of the rows whose flag is set."""
    import numpy as np

    rows = np.flatnonzero(np.asarray(flags)).tolist()
    return [lines[i] for i in rows] if lines else [i + 1 for i in rows]
