"""One model, many requests: a bounded queue whose jobs a single worker thread encodes in shared batches.

Why: a forward pass on 32 short texts costs a few times one on a single text, so concurrent requests gathered
into one pass multiply throughput; and one worker thread holds the only model copy, so the event loop never
waits on torch and memory stays flat. A batch closes when it holds ``max_batch_texts`` texts, when its padded
size (texts x longest tokens) would pass ``max_batch_tokens``, or ``max_wait_ms`` after its oldest job came in.
A job alone above the token budget still runs (never an endless wait, the TEI #723 trap), in forward passes of
as many texts as fit the budget. The queue is bounded in texts: past ``max_queue_texts`` a submission is
refused with :class:`QueueFull` (the service answers 503 with Retry-After) instead of growing without bound.

Jobs are grouped by ``group``, the name of the tower that encodes them: jobs of one group are interchangeable,
so a siamese model's query and document roles share a batch and the two towers of a pseudo-siamese model
do not. :meth:`Batcher.submit` returns a ``concurrent.futures.Future``, so
a caller on a worker thread blocks on ``result()`` and a coroutine awaits :meth:`Batcher.encode`; any later
endpoint (the OpenAI-style ``/v1/embeddings``) reuses the same queue through either.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

EncodeFn = Callable[[list[str], str, int], np.ndarray]
"""``encode(texts, role, batch_size) -> (N, D) float32``: the model call the worker makes."""


class QueueFull(Exception):
    """The queue holds ``max_queue_texts`` texts already: retry after ``retry_after`` seconds."""

    def __init__(self, queued: int, limit: int, retry_after: int = 1) -> None:
        self.queued, self.limit, self.retry_after = queued, limit, retry_after
        super().__init__(f"the encode queue is full ({queued} texts waiting, limit {limit}); retry shortly")


class BatcherClosed(Exception):
    """The batcher is shutting down or its worker thread has died; no new work is taken."""


@dataclass(frozen=True)
class BatchLimits:
    """How batches are formed and how much may wait."""

    max_batch_texts: int = 64
    max_batch_tokens: int = 8192  # padded tokens per forward pass: texts x the batch's longest text
    max_wait_ms: float = 2.0
    max_queue_texts: int = 2048

    def __post_init__(self) -> None:
        if self.max_batch_texts < 1 or self.max_batch_tokens < 1 or self.max_queue_texts < 1:
            raise ValueError("batch and queue limits must be at least 1")
        if self.max_wait_ms < 0:
            raise ValueError("max_wait_ms must not be negative")


@dataclass
class Job:
    """One request's texts, waiting for its vectors."""

    texts: list[str]
    role: str
    group: str
    longest: int  # tokens of the longest text (after truncation): the padded width it brings
    future: concurrent.futures.Future[np.ndarray] = field(default_factory=concurrent.futures.Future)
    enqueued: float = field(default_factory=time.monotonic)


@dataclass
class BatchRecord:
    """What one forward pass did, handed to the ``on_batch`` observer (metrics)."""

    texts: int
    jobs: int
    padded_tokens: int
    seconds: float
    waited: float  # the oldest job's time in the queue before its batch started


class Batcher:
    """A bounded queue of encode jobs and the one worker thread that runs them in batches.

    >>> batcher = Batcher(lambda texts, role, n: model.encode(texts, role=role, batch_size=n))  # doctest: +SKIP
    >>> batcher.start()                                                                       # doctest: +SKIP
    >>> batcher.submit(["a text"], "query", "shared", longest=4).result().shape               # doctest: +SKIP
    (1, 384)
    """

    def __init__(
        self,
        encode: EncodeFn,
        limits: BatchLimits | None = None,
        on_batch: Callable[[BatchRecord], None] | None = None,
    ) -> None:
        self.encode_fn = encode
        self.limits = limits or BatchLimits()
        self.on_batch = on_batch
        self._queue: collections.deque[Job] = collections.deque()
        self._queued_texts = 0
        self._cond = threading.Condition()
        self._closing = False
        self._thread: threading.Thread | None = None
        self.batches = 0
        self.failed_batches = 0
        self.last_error: str | None = None
        self.busy_since: float | None = None  # monotonic start of the batch now running
        self.death: str | None = None  # why the worker thread ended abnormally

    # ------------------------------------------------------------------ life cycle

    def start(self) -> None:
        """Start the worker thread (once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="textsiamese-batcher", daemon=True)
            self._thread.start()

    @property
    def alive(self) -> bool:
        """True while the worker thread runs and takes work."""
        return self._thread is not None and self._thread.is_alive() and self.death is None

    def close(self, timeout: float | None = 30.0) -> None:
        """Take no new jobs, finish every queued one, then stop the worker (graceful shutdown)."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    # ------------------------------------------------------------------ submitting

    @property
    def queued_texts(self) -> int:
        """Texts waiting (not yet in a running batch)."""
        return self._queued_texts

    def submit(self, texts: Sequence[str], role: str, group: str, longest: int) -> concurrent.futures.Future:
        """Queue ``texts`` for ``role``; the future gets their (N, D) vectors. Thread-safe, never blocks.

        Raises :class:`QueueFull` past the queue bound and :class:`BatcherClosed` when shutting down or dead.
        """
        job = Job(list(texts), role, group, max(1, int(longest)))
        if not job.texts:
            job.future.set_result(np.zeros((0, 0), dtype=np.float32))
            return job.future
        with self._cond:
            if self._closing or not self.alive:
                raise BatcherClosed(self.death or "the service is shutting down")
            if self._queued_texts and self._queued_texts + len(job.texts) > self.limits.max_queue_texts:
                raise QueueFull(self._queued_texts, self.limits.max_queue_texts)
            self._queue.append(job)
            self._queued_texts += len(job.texts)
            self._cond.notify_all()
        return job.future

    async def encode(self, texts: Sequence[str], role: str, group: str, longest: int) -> np.ndarray:
        """:meth:`submit` for a coroutine: awaits the vectors without blocking the event loop."""
        return await asyncio.wrap_future(self.submit(texts, role, group, longest))

    # ------------------------------------------------------------------ the worker

    def _fits(self, count: int, longest: int) -> bool:
        limits = self.limits
        return count <= limits.max_batch_texts and count * longest <= limits.max_batch_tokens

    def _take(self) -> list[Job]:
        """The next batch: the oldest job, then later jobs of its group in order while the batch fits."""
        first = self._queue[0]
        batch = [first]
        count, longest = len(first.texts), first.longest
        for job in list(self._queue)[1:]:
            if job.group != first.group:
                continue
            if not self._fits(count + len(job.texts), max(longest, job.longest)):
                break
            batch.append(job)
            count, longest = count + len(job.texts), max(longest, job.longest)
        for job in batch:
            self._queue.remove(job)
            self._queued_texts -= len(job.texts)
        return batch

    def _full(self) -> bool:
        """Whether the queued jobs of the oldest's group already fill a batch (no reason to wait)."""
        first = self._queue[0]
        count, longest = 0, 0
        for job in self._queue:
            if job.group != first.group:
                continue
            count, longest = count + len(job.texts), max(longest, job.longest)
            if count >= self.limits.max_batch_texts or count * longest >= self.limits.max_batch_tokens:
                return True
        return False

    def _next_batch(self) -> list[Job] | None:
        with self._cond:
            while not self._queue:
                if self._closing:
                    return None
                self._cond.wait()
            deadline = self._queue[0].enqueued + self.limits.max_wait_ms / 1000
            while not self._closing and not self._full():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            return self._take()

    def _run(self) -> None:
        try:
            while True:
                batch = self._next_batch()
                if batch is None:
                    return
                self._run_batch(batch)
        except BaseException as error:  # the thread is ending: say why, and fail everything still waiting
            self.death = _death(error)
            with self._cond:
                waiting = list(self._queue)
                self._queue.clear()
                self._queued_texts = 0
            for job in waiting:
                if not job.future.done():
                    job.future.set_exception(BatcherClosed(self.death))
            raise

    def _run_batch(self, batch: list[Job]) -> None:
        texts = [text for job in batch for text in job.texts]
        longest = max(job.longest for job in batch)
        # One forward pass when the batch fits the budget; an oversized lone job runs in budget-sized passes.
        per_pass = max(
            1, min(len(texts), self.limits.max_batch_texts, self.limits.max_batch_tokens // longest)
        )
        started = time.monotonic()
        self.busy_since = started
        try:
            # A group is one tower, so every job's role encodes alike: the oldest job's role stands for all.
            vectors = self.encode_fn(texts, batch[0].role, per_pass)
        except BaseException as error:
            self.failed_batches += 1
            self.last_error = f"{type(error).__name__}: {error}"
            fatal = not isinstance(error, Exception)  # SystemExit, KeyboardInterrupt…: the worker ends
            failure = BatcherClosed(_death(error)) if fatal else error
            for job in batch:
                job.future.set_exception(failure)
            if fatal:
                raise
            return
        finally:
            self.busy_since = None
        seconds = time.monotonic() - started
        self.batches += 1
        offset = 0
        for job in batch:
            job.future.set_result(vectors[offset : offset + len(job.texts)])
            offset += len(job.texts)
        if self.on_batch is not None:
            waited = started - batch[0].enqueued
            self.on_batch(BatchRecord(len(texts), len(batch), len(texts) * longest, seconds, waited))

    def health(self) -> dict[str, object]:
        """The worker's state as it is: alive or dead (and why), queue depth, batches, the last failure."""
        busy = self.busy_since
        return {
            "alive": self.alive,
            "closing": self._closing,
            "death": self.death,
            "queued_texts": self._queued_texts,
            "busy_for_s": round(time.monotonic() - busy, 3) if busy is not None else 0.0,
            "batches": self.batches,
            "failed_batches": self.failed_batches,
            "last_error": self.last_error,
        }


def _death(error: BaseException) -> str:
    return f"the batcher worker died: {type(error).__name__}: {error}"
