"""Reading delimited and JSON-lines files into rows, with errors that name file, line and column.

A *table* is a header (column names) and rows, each row a dict from column name to its text, tagged with the
physical line it started on so later validation can point at it. Formats: CSV (RFC 4180 quoting), TSV (split
on tabs, no quoting: the common research-data convention), JSONL (one object per line). The whole file is
decoded up front so an invalid UTF-8 byte is reported with its line before anything is processed.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from textsiamese.errors import InputError

TABLE_FORMATS = ("csv", "tsv", "jsonl")
_EXTENSIONS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".txt": "tsv",
    ".jsonl": "jsonl",
    ".json": "jsonl",
}

# csv's default field limit (128 KiB) is too small for long documents.
csv.field_size_limit(2**31 - 1)


@dataclass
class Row:
    """One data row: its first physical line in the file and its cells by column name."""

    line: int
    cells: dict[str, str]


@dataclass
class Table:
    """A header and its rows, read from ``source``."""

    source: str
    columns: list[str]
    rows: list[Row]


def column_list(names: list[str]) -> str:
    """Column names for a one-line message: as they are, or quoted and escaped when they hold line breaks
    or other unprintable characters (a quoted CSV header may)."""
    return ", ".join(name if name.isprintable() else repr(name) for name in names)


def guess_format(path: str | Path, default: str = "csv") -> str:
    """The table format implied by a file name's extension (``default`` for stdin or unknown endings)."""
    return _EXTENSIONS.get(Path(str(path)).suffix.lower(), default)


def read_text(path: str | Path, errors: str = "strict") -> str:
    """Decode a whole file (or stdin for ``-``) as UTF-8, dropping a byte-order mark.

    ``errors="replace"`` substitutes U+FFFD for invalid bytes; the default raises an ``InputError`` naming the
    line and byte column of the first bad byte.
    """
    source = str(path)
    if source == "-":
        data = sys.stdin.buffer.read()
        source = "<stdin>"
    else:
        file = Path(source)
        if not file.exists():
            raise InputError(source, "no such file")
        if file.is_dir():
            raise InputError(source, "is a directory, expected a file")
        try:
            data = file.read_bytes()
        except OSError as error:
            raise InputError(source, f"cannot read: {error.strerror or error}") from None
    try:
        text = data.decode("utf-8-sig", errors=errors)
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        line_start = data.rfind(b"\n", 0, error.start) + 1
        raise InputError(
            source,
            f"invalid UTF-8 byte 0x{data[error.start]:02x} at byte {error.start - line_start + 1} of the line "
            "(re-encode the file as UTF-8, or pass --errors replace)",
            line=line,
        ) from None
    if not text.strip():
        raise InputError(source, "file is empty")
    return text


def read_table(
    path: str | Path,
    format: str | None = None,
    *,
    header: list[str] | None = None,
    errors: str = "strict",
    allow_extra_cells: bool = False,
) -> Table:
    """Read a CSV, TSV or JSONL file into a ``Table``.

    ``header``: column names for a headerless delimited file (the first line is then data).
    ``allow_extra_cells``: keep rows with more cells than the header (the extras are dropped), as some
    published files have; otherwise a ragged row is an error.
    """
    source = "<stdin>" if str(path) == "-" else str(path)
    fmt = format or guess_format(path)
    if fmt not in TABLE_FORMATS:
        raise InputError(source, f"unknown table format {fmt!r}; expected one of {', '.join(TABLE_FORMATS)}")
    text = read_text(path, errors=errors)
    if fmt == "jsonl":
        return _read_jsonl(source, text)
    records = _csv_records(source, text) if fmt == "csv" else tsv_records(numbered_lines(text))
    return _records_to_table(source, records, header, allow_extra_cells)


def numbered_lines(text: str) -> Iterator[tuple[int, str]]:
    """(1-based line number, line) pairs; split on \n only: splitlines() also breaks on \x0b, \x1c, U+2028."""
    return enumerate(text.split("\n"), start=1)


def tsv_records(lines: Iterable[tuple[int, str]]) -> Iterator[tuple[int, list[str]]]:
    """Non-blank numbered lines split on tabs (no quoting), line endings dropped."""
    for number, line in lines:
        line = line.removesuffix("\n").removesuffix("\r")
        if line.strip():
            yield number, line.split("\t")


def _csv_records(source: str, text: str) -> Iterator[tuple[int, list[str]]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    start = 1
    try:
        for record in reader:
            if any(cell.strip() for cell in record):
                yield start, record
            start = reader.line_num + 1
    except csv.Error as error:
        raise InputError(source, f"cannot parse the CSV ({error})", line=reader.line_num) from None


def _records_to_table(
    source: str,
    records: Iterator[tuple[int, list[str]]],
    header: list[str] | None,
    allow_extra_cells: bool,
) -> Table:
    if header is None:
        try:
            _, first = next(records)
        except StopIteration:
            raise InputError(source, "file is empty") from None
        header = [name.strip() for name in first]
        _check_header(source, header)
    rows: list[Row] = []
    width = len(header)
    for line, cells in records:
        if len(cells) != width and not (allow_extra_cells and len(cells) > width):
            raise InputError(
                source,
                f"row has {len(cells)} cells but the header has {width} ({column_list(header)})",
                line=line,
            )
        rows.append(Row(line, dict(zip(header, cells, strict=False))))
    if not rows:
        raise InputError(source, "no data rows after the header")
    return Table(source, header, rows)


def _check_header(source: str, header: list[str]) -> None:
    seen: set[str] = set()
    for name in header:
        if not name:
            raise InputError(source, "header has an empty column name", line=1)
        if name in seen:
            raise InputError(source, "header names this column twice", line=1, column=name)
        seen.add(name)


def jsonl_rows(source: str, lines: Iterable[tuple[int, str]]) -> Iterator[Row]:
    """One ``Row`` per non-blank numbered line holding a JSON object; anything else is an ``InputError``."""
    for number, line in lines:
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise InputError(
                source, f"invalid JSON ({error.msg}, character {error.colno})", line=number
            ) from None
        if not isinstance(record, dict):
            raise InputError(source, "expected a JSON object per line", line=number)
        yield Row(number, {str(key): _json_cell(value) for key, value in record.items()})


def _read_jsonl(source: str, text: str) -> Table:
    rows = list(jsonl_rows(source, numbered_lines(text)))
    if not rows:
        raise InputError(source, "file is empty")
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row.cells))
    return Table(source, list(columns), rows)


def _json_cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "1" if value else "0"
    return json.dumps(value) if isinstance(value, list | dict) else str(value)
