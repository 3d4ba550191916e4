"""Texts longer than a tower reads: truncate them (the default) or encode them whole, chunk-then-pool.

``LongText`` is the setting, per role in the model config (``ModelConfig.long_text``, e.g. ``{"document":
{"mode": "chunk", "chunk_length": 256, "overlap": 32, "pooling": "mean"}}``) or per call
(``encode(..., long_text="chunk")`` or ``long_text=LongText(...)``).

Chunking, in ``windows``: a text is tokenized whole, without special tokens; a text whose tokens (with its
special tokens) fit in ``chunk_length`` is one row, exactly as when truncating. A longer one is cut into
windows of ``chunk_length - specials`` content tokens, ``overlap`` tokens shared by neighbours, the last
window moved back to end at the text's last token (so every window of a long text is full and none is a
stub of a few tokens), and each window wrapped in the tower's own special tokens ([CLS] … [SEP]). The
windows go through the same length-sorted batches as every other row (``inference.pipeline``), and
``pool`` folds each text's window vectors into one: ``mean``, ``max`` (per dimension) or ``first``.

Normalisation: for a normalising encode, each window vector is L2-normalised before pooling
(``NORMALIZE_CHUNKS``) and the pooled vector again after, so every window weighs the same in the mean
whatever its norm; docs/benchmarks.md ("Long texts") measured both orders.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from textsiamese.errors import ConfigError

MODES = ("truncate", "chunk")
CHUNK_POOLINGS = ("mean", "max", "first")
DEFAULT_OVERLAP = 32
# Window vectors are L2-normalised before pooling when the encode normalises (see the module docstring).
NORMALIZE_CHUNKS = True


@dataclass(frozen=True)
class LongText:
    """How a text longer than the tower's maximum is encoded.

    ``mode``: ``"truncate"`` (cut at the maximum; the default) or ``"chunk"``. ``chunk_length``: tokens per
    window, special tokens included (default: the tower's maximum; at most that). ``overlap``: tokens shared
    by neighbouring windows (default: 32, or a quarter of a window's own tokens when that is less).
    ``pooling``: how window vectors become one (``mean``, ``max``, ``first``).
    """

    mode: str = "truncate"
    chunk_length: int | None = None
    overlap: int | None = None
    pooling: str = "mean"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"long_text mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        if self.pooling not in CHUNK_POOLINGS:
            raise ConfigError(
                f"chunk pooling must be one of {', '.join(CHUNK_POOLINGS)}, not {self.pooling!r}"
            )
        if self.chunk_length is not None and self.chunk_length < 1:
            raise ConfigError(f"chunk_length must be at least 1, not {self.chunk_length}")
        if self.overlap is not None and self.overlap < 0:
            raise ConfigError(f"chunk overlap must be 0 or more, not {self.overlap}")

    @property
    def chunked(self) -> bool:
        return self.mode == "chunk"

    def to_dict(self) -> dict[str, Any]:
        """The JSON form saved in the model config."""
        return asdict(self)

    @classmethod
    def of(cls, value: str | Mapping[str, Any] | LongText | None) -> LongText:
        """A setting from a mode name, a config dict, a ``LongText`` or ``None`` (truncate)."""
        if value is None:
            return cls()
        if isinstance(value, LongText):
            return value
        if isinstance(value, str):
            return cls(mode=value)
        if isinstance(value, Mapping):
            unknown = sorted(set(value) - set(cls.__dataclass_fields__))
            if unknown:
                raise ConfigError(
                    f"unknown long_text settings {unknown}; known: mode, chunk_length, overlap, pooling"
                )
            return cls(**value)
        raise ConfigError(
            f"long_text must be 'truncate', 'chunk', a dict or a LongText, not {type(value).__name__}"
        )

    def for_tower(self, max_length: int, specials: int) -> LongText:
        """This setting with ``chunk_length`` resolved against a tower (its maximum and its count of special
        tokens per sequence), refusing windows that would not fit or would not advance."""
        length = self.chunk_length or max_length
        if length > max_length:
            raise ConfigError(f"chunk_length {length} is longer than the tower reads ({max_length} tokens)")
        room = length - specials
        overlap = min(DEFAULT_OVERLAP, room // 4) if self.overlap is None else self.overlap
        if room < 1 or overlap >= room:
            raise ConfigError(
                f"chunk_length {length} leaves {max(room, 0)} tokens per window after {specials} special "
                f"tokens; the overlap ({overlap}) must be smaller than that"
            )
        return replace(self, chunk_length=length, overlap=overlap)


def window_starts(length: int, room: int, overlap: int) -> list[int]:
    """Where each window of ``room`` content tokens starts in a text of ``length`` content tokens: every
    ``room - overlap`` tokens, the last one moved back to end at the text's end."""
    if length <= room:
        return [0]
    stride = room - overlap
    count = 1 + -(-(length - room) // stride)  # ceil
    return [min(i * stride, length - room) for i in range(count)]


def windows(
    content: Sequence[Sequence[int]], prefix: Sequence[int], suffix: Sequence[int], setting: LongText
) -> tuple[list[list[int]], np.ndarray]:
    """The rows to encode for texts whose content token ids (no special tokens, not truncated) are
    ``content``, and ``starts`` (len + 1): text ``i`` owns rows ``starts[i]:starts[i + 1]``.

    ``setting`` must have its ``chunk_length`` and ``overlap`` resolved (``LongText.for_tower``)."""
    assert setting.chunk_length is not None and setting.overlap is not None
    room = setting.chunk_length - len(prefix) - len(suffix)
    head, tail = list(prefix), list(suffix)
    rows: list[list[int]] = []
    starts = np.zeros(len(content) + 1, dtype=np.int64)
    for i, ids in enumerate(content):
        ids = list(ids)
        for start in window_starts(len(ids), room, setting.overlap):
            rows.append(head + ids[start : start + room] + tail)
        starts[i + 1] = len(rows)
    return rows, starts


def pool(vectors: np.ndarray, starts: np.ndarray, pooling: str, normalize: bool) -> np.ndarray:
    """One vector per text from its window vectors (rows ``starts[i]:starts[i + 1]`` of ``vectors``)."""
    if normalize and NORMALIZE_CHUNKS:
        vectors = _l2(vectors)
    firsts = starts[:-1]
    if pooling == "first":
        pooled = vectors[firsts]
    elif pooling == "max":
        pooled = np.maximum.reduceat(vectors, firsts, axis=0)
    else:
        counts = np.diff(starts).astype(np.float32)[:, None]
        pooled = np.add.reduceat(vectors, firsts, axis=0) / counts
    return _l2(pooled) if normalize else pooled.astype(np.float32, copy=False)


SHOWN_ROWS = 5


def truncation_message(truncated: int, texts: int, limit: int | str, rows: Sequence[int], what: str) -> str:
    """``"3 of 10 texts were longer than 256 tokens and were truncated (indexes 2, 5, 9)"``: the count and the
    first ``SHOWN_ROWS`` of ``rows``, named ``what`` (indexes in the library, lines in the CLI)."""
    message = f"{truncated} of {texts} texts were longer than {limit} tokens and were truncated"
    if rows:
        shown = ", ".join(str(row) for row in rows[:SHOWN_ROWS])
        message += f" ({what} {shown}{', …' if len(rows) > SHOWN_ROWS else ''})"
    return message


def pair_truncation_message(cut_a: np.ndarray, cut_b: np.ndarray, limit: str) -> str:
    """The warning for aligned pairs (``encode_pairs``): texts cut on either side, named by pair index."""
    count = int(cut_a.sum() + cut_b.sum())
    return truncation_message(count, 2 * len(cut_a), limit, np.flatnonzero(cut_a | cut_b).tolist(), "pairs")


def _l2(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)
