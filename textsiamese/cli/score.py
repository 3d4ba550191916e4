"""``textsiamese score``: a similarity per sentence pair, written with the input's own columns kept.

A calibrated model (``textsiamese calibrate``, or one trained with the logistic loss) also writes
``probability`` (that the pair is "same"), ``same`` (1 or 0, the decision at its threshold) and ``decision``
(``same`` / ``not``, or ``unsure`` inside the calibration's unsure band). Generic
CSV / TSV / JSONL input, from a file or stdin, is read, scored and written in chunks of ``--chunk-size``
pairs, so a million pairs run in bounded memory. An ``--output`` file appears only when every row scored;
on stdout, the rows of earlier chunks are already written when a row of a later chunk is refused (the
error still names its line and the exit status is 2).
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
import warnings
from collections.abc import Iterator
from contextlib import nullcontext
from typing import IO, Any

from textsiamese.cli.common import (
    add_long_text_options,
    add_model_options,
    add_pair_input_options,
    add_progress_option,
    apply_long_text,
    line_numbers,
    load_model,
    parse_columns,
    read_pair_input,
    show_progress,
    truncated_flags,
    warn_truncation,
)
from textsiamese.data import PairData, atomic_open, guess_format
from textsiamese.data.stream import iter_pair_chunks
from textsiamese.data.tables import TABLE_FORMATS


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "score",
        help="score sentence pairs",
        description="Score each (sentence1, sentence2) pair of a CSV/TSV/JSONL file (or stdin) with the model's "
        "similarity and write the rows back with a score column (and probability and same, when the model "
        "is calibrated; with --report-truncation, sentence1_tokens, sentence2_tokens and truncated). Input is "
        "processed in chunks, so memory stays bounded. An output file is written "
        "under a temporary name and renamed, so a failed run leaves no partial file.",
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
        "--metric",
        default=None,
        help="cosine (default), dot, euclidean, squared_euclidean, manhattan; a calibrated model's "
        "probability needs its own metric",
    )
    parser.add_argument(
        "--chunk-size", type=int, default=4096, metavar="N", help="pairs read and scored at a time"
    )
    add_progress_option(parser)
    add_long_text_options(parser)
    add_model_options(parser)
    add_pair_input_options(parser)
    parser.set_defaults(func=run)


def _chunks(args: argparse.Namespace) -> Iterator[PairData]:
    if args.format in TABLE_FORMATS or args.format == "auto":
        fmt = None if args.format == "auto" else args.format
        return iter_pair_chunks(
            args.pairs,
            fmt,
            columns=parse_columns(args.columns),
            label_convention=args.label_convention,
            chunk_rows=max(1, args.chunk_size),
            errors=args.errors,
        )
    return iter([read_pair_input(args, args.pairs)])  # named dataset files are small: read whole


class _RowWriter:
    """Writes a header once, then rows, as csv / tsv / jsonl."""

    def __init__(self, handle: IO[str], fmt: str, columns: list[str]) -> None:
        self.handle, self.fmt, self.columns = handle, fmt, columns
        self.writer: Any = None
        if fmt != "jsonl":
            self.writer = csv.writer(handle, delimiter="\t" if fmt == "tsv" else ",", lineterminator="\n")
            self.writer.writerow(columns)

    def write(self, rows: list[list[Any]]) -> None:
        if self.writer is not None:
            self.writer.writerows(rows)
        else:
            for row in rows:
                record = dict(zip(self.columns, row, strict=True))
                self.handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.handle.flush()


TOKEN_COLUMNS = ["sentence1_tokens", "sentence2_tokens", "truncated"]


def _output_names(columns: list[str], calibrated: bool, report: bool = False) -> list[str]:
    wanted = ["score", "probability", "same", "decision"] if calibrated else ["score"]
    wanted += TOKEN_COLUMNS if report else []
    names = []
    for name in wanted:
        out = name if name not in columns else f"predicted_{name}"
        if out != name:
            print(
                f"textsiamese score: input has a {name!r} column; the model's is written as {out!r}",
                file=sys.stderr,
            )
        names.append(out)
    return names


def run(args: argparse.Namespace) -> int:
    from textsiamese.decisions.calibration import decision_words, decisions, metric_of, probabilities

    if args.pairs == "-" and args.format == "auto":
        args.format = "csv"
    chunks = _chunks(args)
    first = next(chunks)  # input errors in the first chunk surface before the model loads
    model = load_model(args)
    apply_long_text(args, model, ("query", "document"))
    calibration = model.calibration
    metric = args.metric or (metric_of(calibration) if calibration else model.similarity_metric)
    calibrated = bool(calibration) and metric_of(calibration) == metric
    if calibration and not calibrated:
        print(
            f"textsiamese score: the model is calibrated for {metric_of(calibration)}, not {metric}; "
            "writing scores only",
            file=sys.stderr,
        )
    fmt = args.output_format
    if fmt is None:
        fmt = guess_format(args.output, default="csv") if args.output else _input_table_format(args)
    to_stdout = args.output is None or args.output == "-"
    progress = _progress(show_progress(args))
    header: list[str] | None = None
    writer: _RowWriter | None = None
    truncation = _TruncationCount()
    target = nullcontext(sys.stdout) if to_stdout else atomic_open(args.output)
    try:
        with target as handle:
            for pairs in _prepend(first, chunks):
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    scores = model.similarity(
                        pairs.sentence1, pairs.sentence2, metric=metric, batch_size=args.batch_size
                    )
                cut = truncation.add(caught, 2 * len(pairs))
                token_columns = _token_columns(model, pairs) if cut or args.report_truncation else None
                if cut and token_columns is not None:
                    truncation.lines += line_numbers(token_columns[2], pairs.lines)
                columns, rows = pairs.as_table()
                if header is None:
                    header = columns
                    names = _output_names(columns, calibrated, args.report_truncation)
                    writer = _RowWriter(handle, fmt, [*columns, *names])
                elif columns != header:  # JSONL records may add keys: keep the first chunk's columns
                    rows = [[dict(zip(columns, r, strict=True)).get(c, "") for c in header] for r in rows]
                if calibrated:
                    assert calibration is not None
                    probs = probabilities(calibration, scores)
                    same = decisions(calibration, scores)
                    words = decision_words(calibration, scores)
                    for row, s, p, d, w in zip(rows, scores, probs, same, words, strict=True):
                        row += [round(float(s), 6), round(float(p), 6), int(d), w]
                else:
                    for row, s in zip(rows, scores, strict=True):
                        row.append(round(float(s), 6))
                if args.report_truncation and token_columns is not None:
                    for row, *counts in zip(rows, *token_columns, strict=True):
                        row += [int(n) for n in counts]
                assert writer is not None
                writer.write(rows)
                progress.update(len(pairs))
    finally:
        progress.close()
        truncation.report()
    return 0


_TRUNCATED = re.compile(r"^(\d+) of (\d+) texts were longer than (\d+) tokens")


class _TruncationCount:
    """Adds up the per-chunk truncation warnings of ``encode`` so a streamed file gets one warning in all,
    naming the lines of the pairs that had a text cut."""

    def __init__(self) -> None:
        self.truncated = 0
        self.texts = 0
        self.limits: list[int] = []
        self.lines: list[int] = []

    def add(self, caught: list[warnings.WarningMessage], texts: int) -> bool:
        """Count a chunk's warnings; whether any was a truncation count."""
        self.texts += texts
        cut = False
        for record in caught:
            match = _TRUNCATED.match(str(record.message))
            if match is None:  # not a truncation count: pass it on as it came
                warnings.warn_explicit(record.message, record.category, record.filename, record.lineno)
                continue
            cut = True
            self.truncated += int(match.group(1))
            if int(match.group(3)) not in self.limits:
                self.limits.append(int(match.group(3)))
        return cut

    def report(self) -> None:
        if self.truncated:
            lines = sorted(set(self.lines))
            warn_truncation(self.texts, lines, self.limits, count=self.truncated)


def _token_columns(model: Any, pairs: PairData) -> tuple[Any, Any, Any]:
    """Each pair's whole token counts (sentence1 by the query tower, sentence2 by the document tower) and
    whether either text was cut (1 / 0)."""
    first = model.token_counts(pairs.sentence1, "query")
    second = model.token_counts(pairs.sentence2, "document")
    cut = truncated_flags(model, "query", first) | truncated_flags(model, "document", second)
    return first, second, cut.astype(int)


def _prepend(first: PairData, rest: Iterator[PairData]) -> Iterator[PairData]:
    yield first
    yield from rest


def _progress(show: bool) -> Any:
    if not show:
        return _NoProgress()
    from tqdm.auto import tqdm

    return tqdm(desc="score", unit=" pairs", file=sys.stderr)


class _NoProgress:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _input_table_format(args: argparse.Namespace) -> str:
    if args.format in TABLE_FORMATS:
        return str(args.format)
    return guess_format(args.pairs) if args.format == "auto" else "csv"
