"""Reading a large pair file (or stdin) in chunks, so memory stays bounded whatever its length.

``iter_pair_chunks`` yields ``PairData`` of at most ``chunk_rows`` pairs, validated exactly as
``read_pairs`` validates a whole file (same messages, same physical line numbers), from CSV, TSV or JSONL.
Bytes are decoded line by line, so an invalid UTF-8 byte is still reported with its line.
"""

from __future__ import annotations

import csv
import re
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO

from textsiamese.data.records import PairData, pairs_from_table
from textsiamese.data.tables import (
    TABLE_FORMATS,
    Row,
    Table,
    _check_header,
    column_list,
    guess_format,
    jsonl_rows,
    tsv_records,
)
from textsiamese.errors import InputError


def _open_binary(path: str | Path) -> tuple[str, IO[bytes]]:
    if str(path) == "-":
        return "<stdin>", sys.stdin.buffer
    file = Path(path)
    if not file.exists():
        raise InputError(str(path), "no such file")
    if file.is_dir():
        raise InputError(str(path), "is a directory, expected a file")
    try:
        return str(path), file.open("rb")
    except OSError as error:
        raise InputError(str(path), f"cannot read: {error.strerror or error}") from None


def _decoded_lines(source: str, handle: IO[bytes], errors: str) -> Iterator[tuple[int, str]]:
    for number, raw in enumerate(handle, start=1):
        if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        try:
            yield number, raw.decode("utf-8", errors=errors)
        except UnicodeDecodeError as error:
            raise InputError(
                source,
                f"invalid UTF-8 byte 0x{raw[error.start]:02x} at byte {error.start + 1} of the line "
                "(re-encode the file as UTF-8, or pass --errors replace)",
                line=number,
            ) from None


def _csv_records(source: str, lines: Iterator[tuple[int, str]]) -> Iterator[tuple[int, list[str]]]:
    # Numbered as the whole-file reader numbers them: csv also ends a line at a lone carriage return (old
    # Mac files), so such a line is split here rather than handed to csv, which would refuse it.
    current = [0]

    def text() -> Iterator[str]:
        for _, line in lines:
            for piece in _LONE_CR.split(line):
                if piece:
                    current[0] += 1
                    yield piece

    reader = csv.reader(text())
    start = 1
    try:
        for record in reader:
            if any(cell.strip() for cell in record):
                yield start, record
            start = current[0] + 1
    except csv.Error as error:
        raise InputError(source, f"cannot parse the CSV ({error})", line=current[0]) from None


_LONE_CR = re.compile(r"(?<=\r)(?!\n)")


def iter_table_chunks(
    path: str | Path, format: str | None = None, chunk_rows: int = 4096, errors: str = "strict"
) -> Iterator[Table]:
    """Tables of at most ``chunk_rows`` rows, all with the header of the file (JSONL: the first record's
    keys, plus any new ones as they appear)."""
    fmt = format or guess_format(path)
    source = "<stdin>" if str(path) == "-" else str(path)
    if fmt not in TABLE_FORMATS:
        raise InputError(source, f"unknown table format {fmt!r}; expected one of {', '.join(TABLE_FORMATS)}")
    source, handle = _open_binary(path)
    try:
        lines = _decoded_lines(source, handle, errors)
        rows: Iterator[Row]
        if fmt == "jsonl":
            rows = jsonl_rows(source, lines)
            header: list[str] = []
        else:
            records = _csv_records(source, lines) if fmt == "csv" else tsv_records(lines)
            try:
                _, first = next(records)
            except StopIteration:
                raise InputError(source, "file is empty") from None
            header = [name.strip() for name in first]
            _check_header(source, header)
            rows = _rows_of(source, records, header)
        any_rows = False
        chunk: list[Row] = []
        for row in rows:
            if fmt == "jsonl":
                header += [c for c in row.cells if c not in header]
            chunk.append(row)
            if len(chunk) >= chunk_rows:
                any_rows = True
                yield Table(source, list(header), chunk)
                chunk = []
        if chunk:
            any_rows = True
            yield Table(source, list(header), chunk)
        if not any_rows:
            raise InputError(source, "file is empty" if fmt == "jsonl" else "no data rows after the header")
    finally:
        if handle is not sys.stdin.buffer:
            handle.close()


def _rows_of(source: str, records: Iterator[tuple[int, list[str]]], header: list[str]) -> Iterator[Row]:
    width = len(header)
    for line, cells in records:
        if len(cells) != width:
            raise InputError(
                source,
                f"row has {len(cells)} cells but the header has {width} ({column_list(header)})",
                line=line,
            )
        yield Row(line, dict(zip(header, cells, strict=True)))


def iter_pair_chunks(
    path: str | Path,
    format: str | None = None,
    *,
    columns: Mapping[str, str] | None = None,
    need: str | None = None,
    label_convention: str = "1=similar",
    chunk_rows: int = 4096,
    errors: str = "strict",
) -> Iterator[PairData]:
    """Validated pairs, ``chunk_rows`` at a time, from a CSV / TSV / JSONL file or ``-`` (stdin)."""
    for table in iter_table_chunks(path, format, chunk_rows=chunk_rows, errors=errors):
        yield pairs_from_table(table, columns=columns, need=need, label_convention=label_convention)


__all__ = ["iter_pair_chunks", "iter_table_chunks"]
