"""``textsiamese encode``: embeddings of a text file, in input order, saved as a ``.npy`` array.

The array is filled in place inside a memory-mapped temporary ``.npy`` beside the output and renamed into
place when complete, so memory stays bounded on a large corpus and a failed run leaves no partial file.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textsiamese.cli import distributed
from textsiamese.cli.common import (
    PRECISIONS,
    add_long_text_options,
    add_model_options,
    add_progress_option,
    add_prompt_option,
    apply_long_text,
    count,
    held_truncation,
    line_numbers,
    load_model,
    show_progress,
    truncated_flags,
    warn_truncation,
)
from textsiamese.cli.distributed import add_engine_options
from textsiamese.data import atomic_open, read_corpus
from textsiamese.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "encode",
        help="encode a text file into a .npy array of embeddings",
        description="Encode every text of FILE (a .txt file: one text per line, blank lines skipped; a CSV, "
        "TSV or JSONL file: the --text-column column) and save the embeddings, one row per text in input "
        "order, as a float32 .npy array. The output is written under a temporary name and renamed. "
        "--report-truncation also writes FILE.tokens.csv (id, line, tokens, truncated per row).",
    )
    parser.add_argument(
        "--input",
        required=True,
        metavar="FILE",
        help="text file (.txt, .csv, .tsv, .jsonl; with --engine ray also .parquet or a quoted glob)",
    )
    parser.add_argument(
        "--output",
        required=True,
        metavar="FILE.npy",
        help="where to save the (N, D) array (--engine ray: a directory of shards)",
    )
    parser.add_argument(
        "--text-column", default="text", help="column holding the texts in CSV/TSV/JSONL (default: text)"
    )
    parser.add_argument(
        "--role",
        default="query",
        choices=["query", "document"],
        help="which tower encodes the texts in a pseudo-siamese model (default: query)",
    )
    parser.add_argument(
        "--precision",
        default="auto",
        choices=PRECISIONS,
        help="auto (bf16 autocast on CUDA and on CPUs with avx512_bf16/amx_bf16, fp32 on other CPUs), "
        "fp32 (exact: sentence-transformers' vectors), bf16, or int8 (CPU: dynamic quantisation, fastest; "
        "see docs/benchmarks.md for the quality cost of each)",
    )
    parser.add_argument(
        "--int8", action="store_const", const="int8", dest="precision", help="same as --precision int8"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads for the model (default: torch's choice; --engine ray: CPUs and threads per worker, "
        "default the CPUs shared out)",
    )
    parser.add_argument(
        "--no-normalize",
        dest="normalize",
        action="store_false",
        default=None,
        help="do not L2-normalise the vectors, even if the model does by default",
    )
    add_progress_option(parser)
    add_prompt_option(parser, "query or document (--role)")
    parser.add_argument(
        "--errors",
        default="strict",
        choices=["strict", "replace"],
        help="invalid UTF-8: stop with the line (strict) or substitute U+FFFD (replace)",
    )
    add_long_text_options(parser)
    add_model_options(parser)
    add_engine_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from textsiamese.inference.precision import torch_threads

    if args.batch_size is not None and args.batch_size < 1:
        raise ConfigError("--batch-size must be at least 1")
    if args.engine == "ray":
        return distributed.run_encode(args)
    if not str(args.output).endswith(".npy"):
        raise ConfigError(f"--output must end in .npy (numpy.save adds the suffix otherwise): {args.output}")
    corpus = read_corpus(args.input, text_column=args.text_column, errors=args.errors)
    model = load_model(args)
    apply_long_text(args, model, (args.role,))
    shape = (len(corpus.texts), model.tower(args.role).dimension)
    with torch_threads(args.threads), _atomic_npy(Path(args.output), shape) as array, held_truncation():
        _, tokens = model.encode(
            corpus.texts,
            role=args.role,
            batch_size=args.batch_size,
            normalize=args.normalize,
            show_progress=show_progress(args),
            precision=args.precision,
            out=array,
            prompt=args.prompt,
            return_tokens=True,
        )
    truncated = truncated_flags(model, args.role, tokens)
    warn_truncation(len(tokens), line_numbers(truncated, corpus.lines), [model.tower(args.role).max_length])
    if args.report_truncation:
        _write_token_report(Path(args.output).with_suffix(".tokens.csv"), corpus, tokens, truncated)
    print(
        f"textsiamese encode: {count(shape[0], 'text')} → {args.output} ({shape[0]} x {shape[1]} float32)",
        file=sys.stderr,
    )
    return 0


def _write_token_report(path: Path, corpus: Any, tokens: Any, truncated: Any) -> None:
    """``--report-truncation``: one CSV row per array row: its id, file line, whole token count, truncated."""
    import csv

    lines = corpus.lines or list(range(1, len(corpus.texts) + 1))
    with atomic_open(path) as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["id", "line", "tokens", "truncated"])
        writer.writerows(zip(corpus.ids, lines, tokens.tolist(), map(int, truncated), strict=True))
    print(f"textsiamese encode: token counts → {path}", file=sys.stderr)


@contextlib.contextmanager
def _atomic_npy(target: Path, shape: tuple[int, int]) -> Iterator[np.ndarray]:
    """A float32 ``.npy`` memory map under a temporary name beside ``target``; renamed into place on success."""
    import numpy as np

    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".npy", dir=target.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(temp, 0o666 & ~umask)  # mkstemp creates 0600; give the result the usual permissions
    try:
        if shape[0] == 0:  # an empty file cannot be memory-mapped
            empty = np.zeros(shape, dtype=np.float32)
            yield empty
            np.save(temp, empty)
        else:
            array = np.lib.format.open_memmap(temp, mode="w+", dtype=np.float32, shape=shape)
            yield array
            array.flush()
            del array
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
