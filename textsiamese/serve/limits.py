"""What one request may ask for, checked before any work: texts per request, characters per text, k.

Why characters as well as tokens: a text far past the tower's maximum costs tokenizer time and memory for
words the model never reads, so a hard character cap refuses it (422, naming the text). Below the cap, texts
longer than the tower's maximum are truncated as in the library, counted, and the reply says which.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from textsiamese.serve.errors import ApiError


@dataclass(frozen=True)
class RequestLimits:
    """Per-request bounds (the body-size bound is applied before JSON parsing, by the app's middleware)."""

    max_body_bytes: int = 1 << 20
    max_texts: int = 256  # texts (or pairs, or rows) in one request
    max_text_chars: int = 20_000
    max_k: int = 100

    def __post_init__(self) -> None:
        if min(self.max_body_bytes, self.max_texts, self.max_text_chars, self.max_k) < 1:
            raise ValueError("request limits must be at least 1")


def check_texts(texts: Sequence[str], field: str, limits: RequestLimits, per_item: int = 1) -> None:
    """Refuse an empty list, more than ``max_texts`` items, or a text longer than ``max_text_chars``.

    ``per_item``: texts per list entry (2 for pairs), so the message names ``pairs[3]`` and not a flat index.
    """
    count = len(texts) // per_item
    if count == 0:
        raise ApiError(422, "invalid_request", f"{field} must not be empty", field)
    if count > limits.max_texts:
        raise ApiError(
            413, "too_many_texts", f"{count} items in {field}; at most {limits.max_texts} per request", field
        )
    for position, text in enumerate(texts):
        if len(text) > limits.max_text_chars:
            where = f"{field}[{position // per_item}]" + (f"[{position % per_item}]" if per_item > 1 else "")
            raise ApiError(
                413,
                "text_too_long",
                f"{where} has {len(text)} characters; at most {limits.max_text_chars} per text",
                where,
            )


def check_k(k: int, rows: int, limits: RequestLimits) -> None:
    """``1 <= k <= min(max_k, rows)``; an empty index cannot be searched."""
    if rows == 0:
        raise ApiError(409, "empty_index", "the index is empty: add rows before searching", "index")
    top = min(limits.max_k, rows)
    if not 1 <= k <= top:
        raise ApiError(422, "invalid_request", f"k must be between 1 and {top}, got {k}", "k")
