"""Writing result tables atomically: a temporary file beside the target, renamed into place when complete.

A crash, a Ctrl-C or a full disk therefore never leaves a half-written file under the real name.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from textsiamese.data.tables import guess_format


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO[Any]]:
    """Open a temporary file next to ``path``; on success it replaces ``path``, on error it is removed."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(
            fd, mode, encoding=encoding if "b" not in mode else None, newline="" if "b" not in mode else None
        ) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise


def format_rows(columns: Sequence[str], rows: Sequence[Sequence[Any]], fmt: str, handle: IO[str]) -> None:
    """Write ``rows`` under ``columns`` to ``handle`` as csv, tsv or jsonl."""
    if fmt == "jsonl":
        for row in rows:
            handle.write(json.dumps(dict(zip(columns, row, strict=True)), ensure_ascii=False) + "\n")
        return
    writer = csv.writer(handle, delimiter="\t" if fmt == "tsv" else ",", lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)


def write_rows(
    path: str | Path | None, columns: Sequence[str], rows: Sequence[Sequence[Any]], fmt: str | None = None
) -> None:
    """Write a result table to ``path`` atomically, or to stdout when ``path`` is None or ``-``."""
    if path is None or str(path) == "-":
        buffer = io.StringIO()
        format_rows(columns, rows, fmt or "csv", buffer)
        sys.stdout.write(buffer.getvalue())
        sys.stdout.flush()
        return
    with atomic_open(path) as handle:
        format_rows(columns, rows, fmt or guess_format(path), handle)


def replace_directory(staging: Path, target: Path) -> None:
    """Move a fully written ``staging`` directory to ``target``, replacing any directory already there.

    The old ``target`` is moved aside first and removed only once the new one is in place; if the second
    rename fails, the old directory is put back. (POSIX has no atomic swap of two non-empty directories, so
    a process killed between the two renames leaves the old copy in a hidden ``.<name>.old.*`` folder
    beside ``target`` rather than under its name.)
    """
    if not target.exists():
        os.replace(staging, target)
        return
    backup = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
    os.replace(target, backup / "previous")
    try:
        os.replace(staging, target)
    except BaseException:
        os.replace(backup / "previous", target)
        shutil.rmtree(backup, ignore_errors=True)
        raise
    shutil.rmtree(backup, ignore_errors=True)
