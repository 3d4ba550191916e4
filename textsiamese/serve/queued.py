"""The model as a request sees it: ``encode`` goes through the shared batcher, everything else is the model's.

Why a stand-in rather than separate code paths: every route calls the library function the CLI calls
(``calibrated_scores`` for /score, ``OneShotClassifier.classify`` for /classify, ``SiameseModel.encode`` for
/embed), handing it a :class:`QueuedModel` in place of the model. Their arithmetic is then the library's own,
so the service and the CLI cannot drift, while every encode of every request lands in the one queue.
A :class:`QueuedModel` is made per request (it is light): it counts that request's truncated texts, which the
reply reports as the CLI warns, and its tokens (``/v1/embeddings`` reports them as ``usage``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np

from textsiamese.serve.batcher import Batcher


@dataclass
class Truncation:
    """Texts of one request cut at the tower's maximum length: how many, which, and the limit."""

    texts: int = 0
    rows: list[int] = field(default_factory=list)  # positions in the order the request's texts were encoded
    max_tokens: int = 0

    def report(self) -> dict[str, Any]:
        """The reply's ``truncation`` block (empty rows: nothing was cut)."""
        out: dict[str, Any] = {"truncated": len(self.rows), "of": self.texts, "rows": self.rows}
        if self.rows:
            out["warning"] = (
                f"{len(self.rows)} of {self.texts} texts were longer than {self.max_tokens} tokens "
                "and were truncated"
            )
        return out


@dataclass
class Prepared:
    """Texts measured before queueing: the padded width they bring and which of them were cut."""

    longest: int
    truncated_rows: list[int]
    max_tokens: int
    tokens: int  # all texts' tokens as the tower reads them: after truncation, special tokens included


def measure(model: Any, texts: Sequence[str], role: str) -> Prepared:
    """Tokenize ``texts`` with ``role``'s tower: the longest kept length (for the token budget), the rows
    longer than the tower's maximum and the total of kept tokens. Runs on the request's thread, so tokenizing
    never holds up the model."""
    tower = model.tower(role)
    tokens = tower.tokenize(list(texts))
    lengths = [len(row) for row in tokens.ids]
    cut: list[int] = []
    setting = getattr(model, "long_text", {}).get(role)
    if tokens.truncated and not (setting is not None and setting.chunked):  # chunking cuts nothing
        limit = tower.max_length
        cut = [i for i, n in enumerate(lengths) if n >= limit and tower.tokenize([texts[i]]).truncated]
    return Prepared(max(lengths, default=1), cut, int(tower.max_length), sum(lengths))


class QueuedModel:
    """A ``SiameseModel`` whose ``encode`` queues on the shared :class:`Batcher`; other attributes pass through.

    Use from a worker thread (FastAPI runs plain ``def`` routes on its thread pool): ``encode`` blocks that
    thread on the batch's future, never the event loop.
    """

    def __init__(self, model: Any, batcher: Batcher, fingerprint: str) -> None:
        self._model = model
        self._batcher = batcher
        self._fingerprint = fingerprint
        self.truncation = Truncation()
        self.tokens = 0  # tokens of every text this request encoded (see :class:`Prepared`)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def fingerprint(self) -> str:
        """The model's fingerprint, computed once at start-up (hashing the weights per request would cost)."""
        return self._fingerprint

    def encode(
        self,
        texts: str | Sequence[str],
        role: str = "query",
        batch_size: int | None = None,
        *args: Any,
        prompt: str | None = None,
        return_tokens: bool = False,
        **kwargs: Any,
    ) -> Any:
        """Vectors of ``texts`` from the shared batch (``batch_size`` and the rest are the batcher's to choose;
        vectors are the model's defaults: its normalisation and ``precision="auto"``). The role's prompt
        (or ``prompt``) is applied here, before measuring, as ``SiameseModel.encode`` applies it."""
        single = isinstance(texts, str)
        items = self._model.prompted([texts] if isinstance(texts, str) else list(texts), role, prompt)
        if not items:
            empty = np.zeros((0, int(self._model.dimension)), dtype=np.float32)
            return (empty, np.zeros(0, dtype=np.int64)) if return_tokens else empty
        prepared = measure(self._model, items, role)
        start = self.truncation.texts
        self.truncation.texts += len(items)
        self.truncation.rows += [start + i for i in prepared.truncated_rows]
        self.truncation.max_tokens = prepared.max_tokens
        self.tokens += prepared.tokens
        group = str(self._model.roles[role])
        setting = getattr(self._model, "long_text", {}).get(role)
        if setting is not None and setting.chunked:  # a shared tower's roles batch together only if alike
            group += f":{setting}"
        vectors = self._batcher.submit(items, role, group, prepared.longest).result()
        out = cast(np.ndarray, vectors[0] if single else vectors)
        if (
            return_tokens
        ):  # whole token counts, as ``SiameseModel.encode`` gives them (encode_pairs reads them)
            tokens = self._model.token_counts(items, role, prompt="")
            return out, int(tokens[0]) if single else tokens
        return out

    def encode_pairs(
        self,
        texts_a: Sequence[str],
        texts_b: Sequence[str],
        batch_size: int | None = None,
        show_progress: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``SiameseModel.encode_pairs`` itself, over the queued ``encode``."""
        from textsiamese.model import SiameseModel

        return SiameseModel.encode_pairs(cast(SiameseModel, self), texts_a, texts_b)

    def similarity(
        self,
        texts_a: Sequence[str],
        texts_b: Sequence[str],
        metric: str | None = None,
        batch_size: int | None = None,
        show_progress: bool = False,
    ) -> np.ndarray:
        """``SiameseModel.similarity`` itself, over the queued ``encode``."""
        from textsiamese.model import SiameseModel

        return SiameseModel.similarity(cast(SiameseModel, self), texts_a, texts_b, metric=metric)
