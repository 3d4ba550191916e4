"""The shard directory: fixed-size shards of vectors tied to a model fingerprint, and a manifest written last.

A shard is two files. ``shard-NNNNN.npy`` holds the float32 vectors of rows ``first_row`` to
``first_row + count - 1`` of the corpus; ``shard-NNNNN.json`` (its record) holds those rows' ids, texts and
metadata, the model fingerprint, a digest of the input rows, and the size and SHA-256 of the ``.npy``. Both are
written under a temporary name and renamed, the vectors first, so a record exists only for a complete shard;
a crash leaves at worst an orphan ``.npy`` that a resumed run overwrites. ``manifest.json`` is written after
every shard is done: its presence means the directory is complete.

A resumed run keeps a shard only when its record matches the model fingerprint, the input rows and the
``.npy`` on disk (:func:`finished`); anything else (another model, an edited corpus, a torn or altered file)
is encoded again.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from textsiamese.data.writers import atomic_open
from textsiamese.errors import InputError
from textsiamese.search.storage import sha256_file, write_json_atomic

MANIFEST = "manifest.json"
FORMAT = "textsiamese-shards"
FORMAT_VERSION = 1


def shard_stem(shard: int) -> str:
    return f"shard-{shard:05d}"


def input_digest(ids: list[str], texts: list[str], metadata: dict[str, list[str]]) -> str:
    """SHA-256 of a shard's input rows: a resumed run redoes a shard whose rows changed."""
    payload = json.dumps([ids, texts, metadata], ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def save_npy_atomic(path: Path, array: np.ndarray) -> None:
    """``numpy.save`` under a temporary name beside ``path``, flushed, then renamed into place."""
    with atomic_open(path, "wb") as handle:
        np.save(handle, np.ascontiguousarray(array, dtype=np.float32))


def write_shard(
    directory: Path,
    shard: int,
    first_row: int,
    rows: dict[str, Any],
    vectors: np.ndarray,
    fingerprint: str,
) -> dict[str, Any]:
    """Write one shard (vectors, then its record) and return the record. ``rows``: ``ids``, ``texts``,
    ``metadata`` and their ``input_sha256``."""
    stem = shard_stem(shard)
    npy = directory / f"{stem}.npy"
    save_npy_atomic(npy, vectors)
    record = {
        "shard": shard,
        "first_row": first_row,
        "count": int(vectors.shape[0]),
        "dimension": int(vectors.shape[1]),
        "model_fingerprint": fingerprint,
        "input_sha256": rows["input_sha256"],
        "vectors": {"name": npy.name, "bytes": npy.stat().st_size, "sha256": sha256_file(npy)},
        "ids": rows["ids"],
        "texts": rows["texts"],
        "metadata": rows["metadata"],
    }
    write_json_atomic(directory / f"{stem}.json", record)
    return record


def read_record(directory: Path, shard: int) -> dict[str, Any] | None:
    """A shard's record, or None when it is missing or not readable JSON (a torn shard)."""
    try:
        record = json.loads((directory / f"{shard_stem(shard)}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def finished(directory: Path, shard: int, fingerprint: str, digest: str) -> tuple[bool, str]:
    """(True, "") when shard ``shard`` is complete for this model and these input rows, else (False, why)."""
    record = read_record(directory, shard)
    if record is None:
        return False, "no record"
    if record.get("model_fingerprint") != fingerprint:
        return False, "encoded by another model"
    if record.get("input_sha256") != digest:
        return False, "its input rows changed"
    entry = record.get("vectors") or {}
    npy = directory / str(entry.get("name", ""))
    if not npy.is_file() or npy.stat().st_size != entry.get("bytes"):
        return False, "vectors file missing or torn (size differs)"
    if sha256_file(npy) != entry.get("sha256"):
        return False, "vectors file corrupted (checksum differs)"
    return True, ""


def write_manifest(directory: Path, description: dict[str, Any], records: list[dict[str, Any]]) -> Path:
    """The manifest, written last: the model, the corpus, and each shard's name, first row and count."""
    shards = [
        {"name": shard_stem(r["shard"]), "first_row": r["first_row"], "count": r["count"]}
        for r in sorted(records, key=lambda r: r["shard"])
    ]
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        **description,
        "count": sum(s["count"] for s in shards),
        "shards": shards,
    }
    path = directory / MANIFEST
    write_json_atomic(path, manifest)
    return path


@dataclass
class Shard:
    """One shard read back: its rows' ids, texts and metadata and its (count, D) vectors."""

    ids: list[str]
    texts: list[str]
    metadata: dict[str, list[str]]
    vectors: np.ndarray


class ShardSet:
    """A complete shard directory (one with a manifest), read shard by shard and checked as it goes."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        path = self.directory / MANIFEST
        if not path.is_file():
            raise InputError(
                self.directory, f"not a complete shard directory (no {MANIFEST}); finish it with --resume"
            )
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise InputError(path, f"unreadable manifest ({error})") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise InputError(path, f"not a shard manifest (format is not {FORMAT!r})")
        self.manifest: dict[str, Any] = manifest

    @property
    def fingerprint(self) -> str:
        return str(self.manifest["model_fingerprint"])

    @property
    def dimension(self) -> int:
        return int(self.manifest["dimension"])

    def __len__(self) -> int:
        return int(self.manifest["count"])

    def __iter__(self) -> Iterator[Shard]:
        for entry in self.manifest["shards"]:
            yield self.read(entry)

    def read(self, entry: dict[str, Any]) -> Shard:
        """One shard, refused (InputError naming the file) if it disagrees with the manifest or its record."""
        record_path = self.directory / f"{entry['name']}.json"
        try:
            record = json.loads(record_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise InputError(record_path, f"unreadable shard record ({error})") from None
        npy = self.directory / record["vectors"]["name"]
        if not npy.is_file() or npy.stat().st_size != record["vectors"]["bytes"]:
            raise InputError(npy, "missing or torn (size differs from its record)")
        vectors = np.load(npy, mmap_mode="r", allow_pickle=False)
        if record["model_fingerprint"] != self.fingerprint or vectors.shape != (
            entry["count"],
            self.dimension,
        ):
            raise InputError(npy, "shard disagrees with the manifest (model or shape)")
        return Shard(record["ids"], record["texts"], record["metadata"], vectors)

    def vectors(self) -> np.ndarray:
        """Every vector in row order, in memory: for tests and small corpora only."""
        return np.concatenate([np.asarray(s.vectors) for s in self]) if len(self) else np.zeros((0, 0))

    def ids(self) -> list[str]:
        """Every id in row order."""
        return [i for shard in self for i in shard.ids]
