"""Writing an index to its directory and reading it back: the FAISS file, the rows file and the manifest.

The directory's file mechanics (generation-named data files, checksums, the manifest as the one atomic
commit point) live in :mod:`textsiamese.search.storage`; this module decides what goes into those files.
The rows file holds one JSON line per live row, ``{"label", "id", "text", "metadata"?}``; the manifest
records the index's kind, metric, parameters, tuning and model fingerprint next to each file's checksum.
Reading checks sizes and checksums before FAISS parses anything, then that the rows, the vectors and the
manifest agree, so a damaged directory is refused with one line naming the file.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import faiss

from textsiamese.errors import InputError, TextSiameseError
from textsiamese.search import storage
from textsiamese.search.kinds import INDEX_KINDS, METRICS
from textsiamese.search.rows import RowTable


@dataclass
class StoredIndex:
    """What :func:`read_index_directory` found: the FAISS index, the rows and the manifest they agree with."""

    faiss_index: Any
    rows: RowTable
    manifest: dict[str, Any]


# The read_corpus keywords a manifest may record for the corpus file the index was built from.
CORPUS_COLUMN_KEYS = ("text_column", "id_column")


def corpus_columns(manifest: dict[str, Any]) -> dict[str, str]:
    """The corpus columns recorded at build time, as ``read_corpus`` keywords (``text_column``, ``id_column``).

    ``index add`` reads its new rows with them unless told otherwise, so a corpus built with
    ``--text-column body`` needs no second ``--text-column``. A manifest from before they were recorded, or
    from an index built in Python, has none: ``{}``, so ``read_corpus``'s own defaults apply."""
    recorded = manifest.get("corpus_columns")
    if not isinstance(recorded, dict):
        return {}
    return {key: str(recorded[key]) for key in CORPUS_COLUMN_KEYS if recorded.get(key)}


def _library_version() -> str:
    from textsiamese import __version__

    return __version__


def _first_line_of(error: RuntimeError, default: str) -> str:
    """FAISS's one-line reason from its multi-line RuntimeError text (the last line says what failed)."""
    text = str(error).strip()
    return text.splitlines()[-1] if text else default


def write_index_directory(
    path: str | os.PathLike[str], faiss_index: Any, rows: RowTable, description: dict[str, Any]
) -> Path:
    """Write a new generation of data files, then the manifest that points at them, and return the
    directory; a failure removes the new files and leaves the previous generation in use.

    ``description`` is the manifest's account of the index (model fingerprint and source, dimension, metric,
    kind, params, tuning, count, next_label, corpus_columns), written between the format header and the file
    entries."""
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    generation = datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(4)
    index_path = directory / f"index-{generation}.faiss"
    rows_path = directory / f"rows-{generation}.jsonl"
    try:
        _write_faiss(faiss_index, index_path)
        _write_rows(rows, rows_path)
        storage.fsync_path(index_path)
        manifest = {
            "format": storage.FORMAT,
            "format_version": storage.FORMAT_VERSION,
            "library_version": _library_version(),
            "faiss_version": faiss.__version__,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            **description,
            "files": {"index": storage.file_entry(index_path), "rows": storage.file_entry(rows_path)},
        }
        storage.write_json_atomic(directory / storage.MANIFEST, manifest)
    except BaseException:
        for leftover in (index_path, rows_path):
            leftover.unlink(missing_ok=True)
        raise
    storage.remove_stale(directory, {index_path.name, rows_path.name})
    return directory


def _write_faiss(faiss_index: Any, index_path: Path) -> None:
    try:
        faiss.write_index(faiss_index, str(index_path))
    except RuntimeError as error:  # FAISS reports a failed write (e.g. a full disk) this way
        reason = _first_line_of(error, "write failed")
        raise TextSiameseError(f"{index_path}: cannot write the FAISS index ({reason[:200]})") from None


def _write_rows(rows: RowTable, rows_path: Path) -> None:
    """One JSON line per live row, flushed to disk before the manifest may point at the file."""
    with open(rows_path, "w", encoding="utf-8") as handle:
        for label, row_id in enumerate(rows.ids):
            if row_id is None:
                continue
            row: dict[str, Any] = {"label": label, "id": row_id, "text": rows.texts[label]}
            if rows.meta[label]:
                row["metadata"] = rows.meta[label]
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def read_index_directory(path: str | os.PathLike[str], *, mmap: bool, verify: bool) -> StoredIndex:
    """Read an index directory, refusing (InputError) an unknown kind or metric, a data file whose size or
    checksum (``verify``) differs from the manifest, and rows or vectors that disagree with it.

    ``mmap=True`` maps IVF lists from disk read-only instead of reading them into memory."""
    directory = Path(path)
    manifest = storage.read_manifest(directory)
    kind, metric = str(manifest["kind"]), str(manifest["metric"])
    if kind not in INDEX_KINDS or metric not in METRICS:
        raise InputError(directory / storage.MANIFEST, f"unknown kind {kind!r} or metric {metric!r}")
    files = manifest["files"]
    index_path = storage.verify_file(directory, files.get("index", {}), checksum=verify)
    rows_path = storage.verify_file(directory, files.get("rows", {}), checksum=verify)
    faiss_index = _read_faiss(index_path, int(manifest["dimension"]), mmap)
    rows = _read_rows(rows_path, int(manifest["next_label"]))
    _check_counts(manifest, faiss_index, rows, index_path, rows_path)
    return StoredIndex(faiss_index, rows, manifest)


def _read_faiss(index_path: Path, dimension: int, mmap: bool) -> Any:
    flags = faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY if mmap else 0
    try:
        faiss_index = faiss.read_index(str(index_path), flags)
    except RuntimeError as error:
        raise InputError(
            index_path, f"FAISS cannot read the index ({_first_line_of(error, 'unreadable')})"
        ) from None
    if faiss_index.d != dimension:
        raise InputError(index_path, f"dimension {faiss_index.d} differs from the manifest's {dimension}")
    return faiss_index


def _read_rows(rows_path: Path, next_label: int) -> RowTable:
    """The rows file as a table of ``next_label`` labels; a line that does not parse, a label out of range
    or a repeated id is an InputError naming the line."""
    rows = RowTable.with_holes(next_label)
    with open(rows_path, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            try:
                row = json.loads(line)
                rows.put(int(row["label"]), str(row["id"]), row.get("text"), row.get("metadata") or {})
            except (ValueError, KeyError, TypeError) as error:
                raise InputError(rows_path, f"corrupted row ({error})", line=line_no) from None
    return rows


def _check_counts(
    manifest: dict[str, Any], faiss_index: Any, rows: RowTable, index_path: Path, rows_path: Path
) -> None:
    """Rows and vectors must match the manifest's counts; HNSW keeps removed vectors, which get masked."""
    count, next_label = int(manifest["count"]), int(manifest["next_label"])
    if len(rows) != count:
        raise InputError(rows_path, f"{len(rows)} rows, the manifest records {count}")
    if manifest["kind"] == "hnsw":
        if faiss_index.ntotal != next_label:
            raise InputError(index_path, f"{faiss_index.ntotal} vectors, the manifest records {next_label}")
        rows.mask_holes()
    elif faiss_index.ntotal != count:
        raise InputError(index_path, f"{faiss_index.ntotal} vectors, the manifest records {count}")
