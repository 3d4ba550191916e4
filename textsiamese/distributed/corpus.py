"""Streaming a corpus (one file or a glob of them) as chunks of ids, texts and metadata, in file order.

The distributed encoder never holds a whole corpus: it reads it chunk by chunk and cuts it into fixed-size
shards. Each file is read as :func:`textsiamese.data.read_corpus` reads it (a ``.txt`` file: one text a line,
blank lines skipped, ids = line numbers; CSV / TSV / JSONL: ``text_column``, ids from ``id_column`` or row
numbers, other columns as metadata) and Parquet the same way through pyarrow, so a single file gets the ids
that ``textsiamese encode`` and ``index build`` give it. Across several files an id is prefixed with its
file (``path:id``) so that ids stay unique.
"""

from __future__ import annotations

import glob
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from textsiamese.data.records import DEFAULT_ID_COLUMN, corpus_from_table
from textsiamese.data.stream import _decoded_lines, _open_binary, iter_table_chunks
from textsiamese.data.tables import Row, Table
from textsiamese.errors import InputError

CORPUS_SUFFIXES = (".txt", ".csv", ".tsv", ".jsonl", ".parquet")


@dataclass
class Chunk:
    """Consecutive corpus rows: ids, texts and metadata columns (all of the same length)."""

    ids: list[str]
    texts: list[str]
    metadata: dict[str, list[str]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.texts)


def expand_inputs(pattern: str) -> list[str]:
    """The files ``pattern`` names: itself if it is a file, else the sorted matches of a glob; an
    InputError when none matches or a match has an unknown suffix."""
    if Path(pattern).is_file():
        files = [pattern]
    else:
        files = sorted(p for p in glob.glob(pattern, recursive=True) if Path(p).is_file())
    if not files:
        raise InputError(pattern, "no such file (and no file matches it as a glob)")
    for name in files:
        if Path(name).suffix.lower() not in CORPUS_SUFFIXES:
            raise InputError(name, f"unknown corpus format; expected one of {', '.join(CORPUS_SUFFIXES)}")
    return files


def iter_corpus(
    files: list[str],
    *,
    text_column: str = "text",
    id_column: str | None = None,
    errors: str = "strict",
    chunk_rows: int = 4096,
) -> Iterator[Chunk]:
    """Chunks of at most ``chunk_rows`` rows of ``files`` in order (ids prefixed ``path:`` when there are
    several files)."""
    for name in files:
        prefix = f"{name}:" if len(files) > 1 else ""
        for chunk in _file_chunks(name, text_column, id_column, errors, chunk_rows):
            if prefix:
                chunk.ids = [prefix + i for i in chunk.ids]
            yield chunk


def _file_chunks(
    name: str, text_column: str, id_column: str | None, errors: str, chunk_rows: int
) -> Iterator[Chunk]:
    suffix = Path(name).suffix.lower()
    if suffix == ".txt":
        yield from _text_chunks(name, errors, chunk_rows)
        return
    tables = _parquet_tables(name, chunk_rows) if suffix == ".parquet" else None
    if tables is None:
        tables = iter_table_chunks(name, chunk_rows=chunk_rows, errors=errors)
    rows_before = 0
    for table in tables:
        resolved = id_column
        if resolved is None:
            resolved = DEFAULT_ID_COLUMN if DEFAULT_ID_COLUMN in table.columns else ""
        corpus = corpus_from_table(table, text_column=text_column, id_column=resolved)
        ids = corpus.ids if resolved else [str(rows_before + i) for i in range(1, len(corpus) + 1)]
        rows_before += len(corpus)
        yield Chunk(ids, corpus.texts, corpus.metadata)


def _text_chunks(name: str, errors: str, chunk_rows: int) -> Iterator[Chunk]:
    """One text a line, blank lines skipped, ids = line numbers (as ``read_corpus`` reads a .txt file)."""
    source, handle = _open_binary(name)
    ids: list[str] = []
    texts: list[str] = []
    with handle:
        for number, line in _decoded_lines(source, handle, errors):
            text = line.removesuffix("\n").removesuffix("\r")
            if not text.strip():
                continue
            ids.append(str(number))
            texts.append(text)
            if len(texts) >= chunk_rows:
                yield Chunk(ids, texts)
                ids, texts = [], []
    if texts:
        yield Chunk(ids, texts)


def _parquet_tables(name: str, chunk_rows: int) -> Iterator[Table]:
    """A Parquet file as tables of ``chunk_rows`` rows, cells as text, each row's 'line' its 1-based row."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise InputError(name, "reading Parquet needs pyarrow (pip install pyarrow)") from None
    try:
        parquet = pq.ParquetFile(name)
    except Exception as error:  # pyarrow raises ArrowInvalid, OSError, ...: all mean "not readable"
        raise InputError(name, f"cannot read the Parquet file ({error})") from None
    columns = list(parquet.schema_arrow.names)
    row = 0
    for batch in parquet.iter_batches(batch_size=chunk_rows):
        rows = []
        for record in batch.to_pylist():
            row += 1
            rows.append(Row(row, {k: _cell(v) for k, v in record.items()}))
        yield Table(name, columns, rows)


def _cell(value: Any) -> str:
    return "" if value is None else str(value)


def shards(chunks: Iterator[Chunk], shard_rows: int) -> Iterator[Chunk]:
    """The rows of ``chunks`` regrouped into shards of exactly ``shard_rows`` rows (the last one shorter)."""
    pending = Chunk([], [], {})
    for chunk in chunks:
        _extend(pending, chunk)
        while len(pending) >= shard_rows:
            yield _take(pending, shard_rows)
    if len(pending):
        yield pending


def _extend(into: Chunk, chunk: Chunk) -> None:
    before = len(into)
    for name in chunk.metadata:
        into.metadata.setdefault(name, [""] * before)
    for name, values in into.metadata.items():
        values.extend(chunk.metadata.get(name, [""] * len(chunk)))
    into.ids.extend(chunk.ids)
    into.texts.extend(chunk.texts)


def _take(pending: Chunk, count: int) -> Chunk:
    head = Chunk(
        pending.ids[:count], pending.texts[:count], {k: v[:count] for k, v in pending.metadata.items()}
    )
    del pending.ids[:count], pending.texts[:count]
    for values in pending.metadata.values():
        del values[:count]
    return head
