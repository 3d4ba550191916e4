"""What one service holds: the model (one copy), its batcher, the indexes by name, the references, metrics.

Loaded once at start-up, so a bad model, index or reference directory fails ``textsiamese serve`` with the
same one-line error the CLI gives, before the port opens. Each index has a lock: FAISS searches run side by
side with each other, but an add or remove must not run while a search reads the same structure.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from textsiamese.errors import ConfigError, ModelError
from textsiamese.serve.batcher import Batcher, BatchLimits, BatchRecord
from textsiamese.serve.limits import RequestLimits
from textsiamese.serve.metrics import ServiceMetrics
from textsiamese.serve.queued import QueuedModel


@dataclass
class ServedIndex:
    """One index directory, its name in requests, and the lock that orders its searches and writes."""

    name: str
    path: Path
    index: Any
    lock: threading.RLock = field(default_factory=threading.RLock)


EMBEDDED_MODEL_NAME = "all-MiniLM-L6-v2"


def default_model_name(model: Any) -> str:
    """The name the OpenAI-compatible routes serve ``model`` under when ``--model-name`` is not given: the
    model directory's name, ``all-MiniLM-L6-v2`` for the embedded default (its directory is just ``model``)."""
    source = str(getattr(model, "source", "") or "")
    if not source or source == "<memory>":
        return "textsiamese"
    from textsiamese.model.loading import default_model_path

    try:
        if Path(source).resolve() == default_model_path().resolve():
            return EMBEDDED_MODEL_NAME
    except ModelError:  # the embedded model's package is optional
        pass
    return Path(source.rstrip("/")).name or "textsiamese"


def check_model_name(name: str) -> str:
    """``name`` if it can be a model id: not empty, no whitespace, no ``:`` (``NAME:query`` picks a role)."""
    if not name or any(c.isspace() for c in name) or ":" in name:
        raise ConfigError(f"--model-name must be non-empty, without spaces or ':', got {name!r}")
    return name


def index_name(spec: str) -> tuple[str, Path]:
    """``NAME=DIR`` or ``DIR`` (named after the directory, a ``.index`` suffix dropped) → (name, path)."""
    name, sep, path = spec.partition("=")
    if not sep:
        path = spec
        name = Path(spec.rstrip("/")).name.removesuffix(".index")
    if not name or not path:
        raise ConfigError(f"--index expects DIR or NAME=DIR, got {spec!r}")
    return name, Path(path)


class ServiceState:
    """The model, batcher, indexes and references of one running service."""

    def __init__(
        self,
        model: Any,
        *,
        indexes: dict[str, ServedIndex] | None = None,
        classifier: Any = None,
        allow_writes: bool = False,
        limits: RequestLimits | None = None,
        batch_limits: BatchLimits | None = None,
        precision: str = "auto",
        model_name: str | None = None,
        api_key: str | None = None,
    ) -> None:
        self.model = model
        self.precision = precision
        self.model_name = check_model_name(model_name or default_model_name(model))
        if api_key is not None and not api_key:
            raise ConfigError("the API key must not be empty")
        self.api_key = api_key  # never logged, echoed or reported (health says only whether one is set)
        self.fingerprint = str(model.fingerprint())
        self.indexes = indexes or {}
        self.classifier = classifier
        self.allow_writes = allow_writes
        self.limits = limits or RequestLimits()
        self.started = time.time()
        self.batcher = Batcher(self._encode, batch_limits, on_batch=self._record_batch)
        self.metrics = ServiceMetrics(lambda: self.batcher.queued_texts, lambda: self.batcher.alive)

    def _encode(self, texts: list[str], role: str, batch_size: int) -> Any:
        # Texts arrive with their prompt already applied (``QueuedModel.encode``): jobs of two roles share a
        # batch when one tower serves both, so the batch cannot apply a role's prompt itself.
        return self.model.encode(texts, role=role, batch_size=batch_size, precision=self.precision, prompt="")

    def _record_batch(self, record: BatchRecord) -> None:
        self.metrics.batch_texts.observe(record.texts)
        self.metrics.batch_jobs.observe(record.jobs)
        self.metrics.batch_seconds.observe(record.seconds)
        self.metrics.queue_wait.observe(record.waited)

    def queued_model(self) -> QueuedModel:
        """A per-request stand-in for the model whose encodes go through the batcher."""
        return QueuedModel(self.model, self.batcher, self.fingerprint)

    def start(self) -> None:
        self.batcher.start()

    def close(self) -> None:
        """Finish queued work and stop the worker (called after the server stopped taking requests)."""
        self.batcher.close()

    @classmethod
    def load(
        cls,
        model_path: str | None = None,
        index_specs: list[str] | None = None,
        references: str | None = None,
        *,
        device: str | None = None,
        backend: str = "torch",
        **options: Any,
    ) -> ServiceState:
        """Load the model, then each index (checked against the model's fingerprint) and the references."""
        from textsiamese.model.loading import load
        from textsiamese.search import Index

        model = load(model_path, device=device, backend=backend)
        indexes: dict[str, ServedIndex] = {}
        for spec in index_specs or []:
            name, path = index_name(spec)
            if name in indexes:
                raise ConfigError(f"two indexes are named {name!r}; name them with --index NAME=DIR")
            indexes[name] = ServedIndex(name, path, Index.load(path, model))
        classifier = None
        if references:
            from textsiamese.decisions.oneshot import OneShotClassifier

            classifier = OneShotClassifier.load(references, model)
        return cls(model, indexes=indexes, classifier=classifier, **options)

    def health(self) -> dict[str, Any]:
        """The truth about the service: worker alive, queue, model, indexes, versions. ``ok`` is False when the
        worker is dead (then /health answers 503)."""
        import faiss
        import torch

        from textsiamese import __version__

        worker = self.batcher.health()
        indexes = {
            name: {"rows": len(served.index), "kind": served.index.kind, "metric": served.index.metric}
            for name, served in self.indexes.items()
        }
        status = "ok" if worker["alive"] else ("shutting down" if worker["closing"] else "worker dead")
        return {
            "status": status,
            "ok": bool(worker["alive"]),
            "batcher": worker,
            "model": {
                "fingerprint": self.fingerprint,
                "name": self.model_name,
                "source": str(getattr(self.model, "source", "")),
                "dimension": int(self.model.dimension),
                "calibrated": bool(self.model.calibration),
                "device": str(self.model.device),
                "precision": self.precision,
            },
            "indexes": indexes,
            "references": None
            if self.classifier is None
            else {"classes": len(self.classifier.classes), "references": len(self.classifier)},
            "allow_writes": self.allow_writes,
            "api_key_required": self.api_key is not None,
            "uptime_s": round(time.time() - self.started, 1),
            "versions": {"textsiamese": __version__, "torch": torch.__version__, "faiss": faiss.__version__},
        }
