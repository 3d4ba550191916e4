"""ONNX Runtime as an encode backend for transformer towers on CPU (``encode(..., backend="onnx")``).

Why: on CPUs without VNNI or native bf16 (an AVX2-only Zen 3, for one), torch's fp32 kernels and its int8
dynamic quantisation (7-bit activations there) leave speed on the table; ONNX Runtime's CPU kernels ran the
same exported tower faster, and its per-channel int8 weights kept STS-B dev Spearman within 0.002 of fp32
(docs/benchmarks.md). The backend reuses everything else of the torch path: tokenization in chunks, length
sorting, padding per batch; only the tower's forward (encoder and pooling) runs in ONNX Runtime, on as many
batches at once as torch has threads.

The tower is exported with torch's TorchScript-based exporter (``dynamo=False``: no onnxscript needed) into
a temporary directory, loaded into an in-memory session and the files removed; ``int8`` quantises the
exported MatMul weights per output channel with ``onnxruntime.quantization.quantize_dynamic``. Needs the
``onnx`` extra: ``pip install "textsiamese[onnx]"`` (onnxruntime and onnx).
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

from textsiamese.errors import ConfigError
from textsiamese.towers import ProjectedTower, Tower, TransformerTower

BACKENDS = ("torch", "onnx")
ONNX_PRECISIONS = ("auto", "fp32", "int8")
OPSET = 17
_INPUTS = ("input_ids", "attention_mask")


def check_backend(backend: str, precision: str, device: torch.device) -> None:
    """Refuse an unknown backend, ONNX Runtime off the CPU, or a precision it does not offer."""
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "torch":
        return
    if device.type != "cpu":
        raise ConfigError(f"backend 'onnx' runs on CPU only; the model is on {device}")
    if precision not in ONNX_PRECISIONS:
        raise ConfigError(
            f"backend 'onnx' offers precision {', '.join(ONNX_PRECISIONS)} (auto is fp32), not {precision!r}"
        )


def _require_onnxruntime() -> Any:
    try:
        import onnx  # noqa: F401
        import onnxruntime
    except ImportError as error:
        raise ConfigError(
            f"backend 'onnx' needs onnxruntime and onnx ({error.name} is missing): "
            'pip install "textsiamese[onnx]"'
        ) from None
    return onnxruntime


class _ExportedTower(torch.nn.Module):
    """The tower's forward with positional tensors, the form the exporter traces."""

    def __init__(self, tower: Tower) -> None:
        super().__init__()
        self.tower = tower

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.tower({"input_ids": input_ids, "attention_mask": attention_mask})


def transformer_base(tower: Tower) -> TransformerTower:
    """The transformer under ``tower`` (itself, or the base of a ``ProjectedTower``); other kinds refused."""
    base = tower.base if isinstance(tower, ProjectedTower) else tower
    if not isinstance(base, TransformerTower):
        raise ConfigError(f"backend 'onnx' exports transformer towers only, not {type(base).__name__}")
    return base


def export_tower(tower: Tower, path: str | Path, int8: bool = False) -> Path:
    """Write ``tower`` (a transformer tower: encoder and pooling, and the Dense / Normalize head of a
    ``ProjectedTower``) as an ONNX graph with dynamic batch and length, inputs ``input_ids`` and
    ``attention_mask`` (int64), output ``embedding`` (float32; the model's own normalisation not applied).

    ``int8``: quantise the MatMul weights to int8 per output channel (activations quantised per batch at run
    time). The result runs in any ONNX Runtime, e.g. for serving without torch.
    """
    base = transformer_base(tower)
    _require_onnxruntime()
    path = Path(path)
    if any(p.device.type != "cpu" for p in tower.parameters()):
        raise ConfigError("ONNX export needs the model on the CPU")
    sample = torch.full((2, 8), int(base.pad_id) + 1, dtype=torch.long)
    axes = {name: {0: "batch", 1: "tokens"} for name in _INPUTS}
    was_training = tower.training
    tower.eval()
    with tempfile.TemporaryDirectory(prefix="textsiamese-onnx-") as folder:
        plain = Path(folder) / "fp32.onnx" if int8 else path
        try:
            # A caller's autocast would trace mixed-precision casts into the graph.
            with warnings.catch_warnings(), torch.no_grad(), torch.autocast("cpu", enabled=False):
                warnings.simplefilter(
                    "ignore"
                )  # the exporter's notes on traced control flow and deprecations
                torch.onnx.export(
                    _ExportedTower(tower),
                    (sample, torch.ones_like(sample)),
                    str(plain),
                    input_names=list(_INPUTS),
                    output_names=["embedding"],
                    dynamic_axes={**axes, "embedding": {0: "batch"}},
                    opset_version=OPSET,
                    dynamo=False,
                )
        finally:
            tower.train(was_training)
        if int8:
            _quantize(plain, path)
    return path


def _quantize(source: Path, target: Path) -> None:
    import logging

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quiet = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)  # its advice to run shape pre-processing first
    try:
        quantize_dynamic(
            source,
            target,
            weight_type=QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=["MatMul"],  # the weight products only, whatever a version's defaults
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    finally:
        logging.getLogger().setLevel(quiet)


MAX_WORKERS = 4


class OnnxTower:
    """Stands in for a transformer tower in ``encode``: same tokenizer, padding and dimension (taken from the
    torch tower), forward run by ONNX Runtime.

    Calling it runs one batch on ``session``, which has all of torch's threads (a single query, the last
    batch of a chunk). ``concurrent`` runs a batch on ``shared``, a session with fewer intra-op threads that
    ``workers`` threads run at once (ONNX Runtime's ``run`` is thread-safe); ``encode`` does that whenever a
    chunk has several batches. On the 2-core Zen 3, two batches at a time on one thread each encoded about
    1.2x faster than one batch at a time on two threads (docs/benchmarks.md): batches of 16 short sentences
    are too small to split well across threads. The two sessions hold a copy of the weights each.
    """

    def __init__(self, tower: Tower, session: Any, shared: Any | None = None, workers: int = 1) -> None:
        self._tower = tower
        self._session = session
        self._shared = shared if shared is not None else session
        self.workers = workers

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("_tower", "_session", "_shared", "workers"):  # copy / unpickling
            raise AttributeError(name)
        return getattr(self._tower, name)

    def collate(self, ids: Any) -> dict[str, torch.Tensor]:
        return self._tower.collate(ids)

    def __call__(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        return _run(self._session, features)

    def concurrent(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """One batch on the session meant for ``workers`` threads at once."""
        return _run(self._shared, features)


def _run(session: Any, features: dict[str, torch.Tensor]) -> torch.Tensor:
    feeds = {name: features[name].numpy() for name in _INPUTS}
    return torch.from_numpy(session.run(None, feeds)[0])


def cpu_session(graph: bytes, threads: int | None = None) -> Any:
    """An ONNX Runtime CPU session over a serialised graph with ``threads`` intra-op threads (default: torch's
    current thread count) and all graph optimisations; ONNX Runtime's own warnings are silenced."""
    onnxruntime = _require_onnxruntime()
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(graph, options, providers=["CPUExecutionProvider"])


def onnx_tower(tower: Tower, precision: str) -> OnnxTower:
    """An ONNX Runtime stand-in for ``tower`` at ``precision`` (``auto`` / ``fp32``, or ``int8``) for torch's
    current thread count T: a T-thread session for lone batches and, when T > 1, a session run by
    min(T, ``MAX_WORKERS``) workers at once with T // workers threads each (see ``OnnxTower``; only T = 2 was
    measured)."""
    threads = torch.get_num_threads()
    workers = min(threads, MAX_WORKERS)
    with tempfile.TemporaryDirectory(prefix="textsiamese-onnx-") as folder:
        path = export_tower(tower, Path(folder) / "tower.onnx", int8=precision == "int8")  # refuses non-BERT
        graph = path.read_bytes()
    session = cpu_session(graph, threads=threads)
    shared = cpu_session(graph, threads=threads // workers) if workers > 1 else None
    return OnnxTower(tower, session, shared, workers=workers)
