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

    On Linux the two directories are swapped in one atomic ``renameat2(RENAME_EXCHANGE)`` and the old one,
    now under the staging name, is removed: at every instant ``target`` is a complete old or new version.
    Elsewhere (or on a file system without the exchange), the old ``target`` is moved aside first and removed
    only once the new one is in place, and put back if the second rename fails; a process killed between
    those two renames leaves the old copy in a hidden ``.<name>.old.*`` folder beside ``target``.
    """
    if not target.exists():
        os.replace(staging, target)
        return
    if _exchange(staging, target):
        shutil.rmtree(staging, ignore_errors=True)
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


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(first: Path, second: Path) -> bool:
    """Atomically swap two paths with Linux's ``renameat2``; False where that is not available."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # a libc without it (glibc < 2.28, some musl builds)
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    status = renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE)
    return bool(status == 0)
