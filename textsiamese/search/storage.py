"""Files of an index directory: atomic writes, checksums and the manifest's integrity checks.

An index directory holds ``manifest.json`` plus one FAISS file and one rows file whose names carry a
generation token (``index-<gen>.faiss``, ``rows-<gen>.jsonl``). A save writes the new generation's files
first and then replaces the manifest with ``os.replace``: the manifest is the single commit point, so a
reader sees either the old index or the new one, never a mix, and a crash mid-save leaves the old index
intact. The manifest records each file's size and SHA-256, so truncation and corruption are caught before
FAISS parses anything.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from textsiamese.errors import InputError

MANIFEST = "manifest.json"
FORMAT = "textsiamese-index"
FORMAT_VERSION = 1


def sha256_file(path: Path, chunk: int = 8 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks so a multi-GB index never sits twice in memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def fsync_path(path: Path) -> None:
    """Flush a written file (or directory entry) to disk, where the platform allows it."""
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) if path.is_dir() else os.O_RDONLY
    try:
        fd = os.open(path, flags)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def file_entry(path: Path) -> dict[str, Any]:
    """The manifest's record of a data file: name, size and checksum."""
    return {"name": path.name, "bytes": path.stat().st_size, "sha256": sha256_file(path)}


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    """Write JSON to a temporary file in the same directory, flush it, then ``os.replace`` it into place."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(payload, handle, indent=2, sort_keys=False)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    fsync_path(path.parent)


def read_manifest(directory: Path) -> dict[str, Any]:
    """Read and sanity-check ``manifest.json``; every problem is an :class:`InputError` naming the file."""
    if not directory.is_dir():
        raise InputError(directory, "no such index directory")
    path = directory / MANIFEST
    if not path.is_file():
        raise InputError(directory, f"not an index directory (no {MANIFEST})")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputError(path, f"corrupted manifest, not valid JSON ({error})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise InputError(path, f"not a textsiamese index manifest (format is not {FORMAT!r})")
    version = manifest.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise InputError(
            path, f"index format version {version!r} is newer than this textsiamese reads ({FORMAT_VERSION})"
        )
    for key in ("dimension", "metric", "kind", "params", "count", "next_label", "files"):
        if key not in manifest:
            raise InputError(path, f"corrupted manifest: missing {key!r}")
    return manifest


def verify_file(directory: Path, entry: dict[str, Any], *, checksum: bool = True) -> Path:
    """Check a data file against its manifest entry (present, same size, same SHA-256) and return its path."""
    name = str(entry.get("name", ""))
    if not name or "/" in name or name.startswith("."):
        raise InputError(directory / MANIFEST, f"corrupted manifest: bad file name {name!r}")
    path = directory / name
    if not path.is_file():
        raise InputError(path, "missing: the index directory is incomplete")
    size = path.stat().st_size
    expected = int(entry.get("bytes", -1))
    if size != expected:
        what = "truncated" if size < expected else "altered (larger than recorded)"
        raise InputError(path, f"{what}: {size} bytes, the manifest records {expected}")
    if checksum and sha256_file(path) != entry.get("sha256"):
        raise InputError(path, "corrupted: SHA-256 differs from the manifest's checksum")
    return path


def remove_stale(directory: Path, keep: set[str]) -> None:
    """Delete data files of earlier generations (and temp files of interrupted saves) from the directory."""
    for path in directory.iterdir():
        name = path.name
        stale_data = (name.startswith("index-") and name.endswith(".faiss")) or (
            name.startswith("rows-") and name.endswith(".jsonl")
        )
        stale_tmp = name.startswith(".") and name.endswith(".tmp")
        if (stale_data or stale_tmp) and name not in keep:
            with contextlib.suppress(OSError):
                path.unlink()
