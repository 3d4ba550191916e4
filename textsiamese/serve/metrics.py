"""Prometheus text exposition (format 0.0.4) written by hand: counters, histograms, gauges with labels.

Why not ``prometheus_client``: the service needs a dozen series, and a global default registry would make two
apps in one process (the tests) share counts. This keeps the series per app, thread-safe (the batcher's
worker thread records batches), and in the format every Prometheus scraper reads.
"""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Callable, Sequence

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)

LabelKey = tuple[tuple[str, str], ...]


def _labels(key: LabelKey, extra: tuple[tuple[str, str], ...] = ()) -> str:
    pairs = [*key, *extra]
    if not pairs:
        return ""
    escaped = (v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") for _, v in pairs)
    return "{" + ",".join(f'{k}="{v}"' for (k, _), v in zip(pairs, escaped, strict=True)) + "}"


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class Counter:
    """A monotonically increasing count per label set."""

    kind = "counter"

    def __init__(self, name: str, help: str) -> None:
        self.name, self.help = name, help
        self._values: dict[LabelKey, float] = {}
        self._lock = threading.Lock()

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: str) -> float:
        return self._values.get(tuple(sorted(labels.items())), 0.0)

    def samples(self) -> list[str]:
        with self._lock:
            return [f"{self.name}{_labels(k)} {_number(v)}" for k, v in sorted(self._values.items())]


class Histogram:
    """Observations counted into cumulative buckets, with their sum and count, per label set."""

    kind = "histogram"

    def __init__(self, name: str, help: str, buckets: Sequence[float]) -> None:
        self.name, self.help = name, help
        self.buckets = tuple(sorted(buckets))
        self._values: dict[LabelKey, tuple[list[int], float, int]] = {}
        self._lock = threading.Lock()

    def observe(self, value: float, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            counts, total, n = self._values.get(key) or ([0] * len(self.buckets), 0.0, 0)
            position = bisect.bisect_left(self.buckets, value)
            if position < len(counts):
                counts[position] += 1
            self._values[key] = (counts, total + value, n + 1)

    def samples(self) -> list[str]:
        lines = []
        with self._lock:
            for key, (counts, total, n) in sorted(self._values.items()):
                running = 0
                for bound, count in zip(self.buckets, counts, strict=True):
                    running += count
                    lines.append(f"{self.name}_bucket{_labels(key, (('le', _number(bound)),))} {running}")
                lines.append(f"{self.name}_bucket{_labels(key, (('le', '+Inf'),))} {n}")
                lines.append(f"{self.name}_sum{_labels(key)} {_number(total)}")
                lines.append(f"{self.name}_count{_labels(key)} {n}")
        return lines


class Gauge:
    """A value read when scraped (queue depth, worker alive, index rows), per label set."""

    kind = "gauge"

    def __init__(self, name: str, help: str, read: Callable[[], dict[LabelKey, float]]) -> None:
        self.name, self.help, self.read = name, help, read

    def samples(self) -> list[str]:
        return [f"{self.name}{_labels(k)} {_number(v)}" for k, v in sorted(self.read().items())]


class Registry:
    """The series of one app, rendered in registration order."""

    def __init__(self) -> None:
        self.series: list[Counter | Histogram | Gauge] = []

    def add(self, series: Counter | Histogram | Gauge) -> Counter | Histogram | Gauge:
        self.series.append(series)
        return series

    def render(self) -> str:
        """The exposition text a scraper reads from ``GET /metrics``."""
        lines = []
        for series in self.series:
            lines.append(f"# HELP {series.name} {series.help}")
            lines.append(f"# TYPE {series.name} {series.kind}")
            lines.extend(series.samples())
        return "\n".join(lines) + "\n"


class ServiceMetrics:
    """The service's series: requests by route and status, latencies, batch sizes, queue depth, rejections."""

    def __init__(self, queue_depth: Callable[[], float], worker_alive: Callable[[], bool]) -> None:
        self.registry = Registry()
        self.requests = Counter("textsiamese_requests_total", "HTTP requests by route and status code")
        self.latency = Histogram(
            "textsiamese_request_seconds", "time from request to response, by route", LATENCY_BUCKETS
        )
        self.batch_texts = Histogram("textsiamese_batch_texts", "texts per forward pass", BATCH_BUCKETS)
        self.batch_jobs = Histogram(
            "textsiamese_batch_requests", "encode jobs per forward pass", BATCH_BUCKETS
        )
        self.batch_seconds = Histogram(
            "textsiamese_batch_seconds", "time of one batch's encode", LATENCY_BUCKETS
        )
        self.queue_wait = Histogram(
            "textsiamese_queue_wait_seconds", "oldest job's wait before its batch started", LATENCY_BUCKETS
        )
        self.truncated = Counter(
            "textsiamese_truncated_texts_total", "texts cut at the tower's maximum length"
        )
        self.rejected = Counter("textsiamese_rejected_total", "requests refused before encoding, by reason")
        for series in (
            self.requests,
            self.latency,
            self.batch_texts,
            self.batch_jobs,
            self.batch_seconds,
            self.queue_wait,
            self.truncated,
            self.rejected,
        ):
            self.registry.add(series)
        self.registry.add(
            Gauge("textsiamese_queue_texts", "texts waiting for a batch", lambda: {(): float(queue_depth())})
        )
        self.registry.add(
            Gauge(
                "textsiamese_batcher_alive",
                "1 while the encode worker runs",
                lambda: {(): 1.0 if worker_alive() else 0.0},
            )
        )

    def render(self) -> str:
        return self.registry.render()
