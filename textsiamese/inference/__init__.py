"""Encoding speed: everything between a list of texts and its vectors that decides how fast they come.

``pipeline`` is the batched encode loop (tokenizing in length-sorted chunks on a worker thread, padding
from flat id arrays, CUDA staging, concurrent ONNX batches, the output array and progress bar);
``precision`` chooses the arithmetic (``auto`` / ``fp32`` / ``bf16`` autocast, ``int8`` dynamic
quantisation) and the default batch size per device; ``onnx`` runs a transformer tower's forward in ONNX
Runtime on CPU instead of torch. ``SiameseModel.encode`` resolves its arguments and hands the work to
``pipeline``; nothing here changes what a model is, what it computes, or how it is trained.
"""

from __future__ import annotations

from textsiamese.inference.onnx import (
    BACKENDS,
    ONNX_PRECISIONS,
    OnnxTower,
    check_backend,
    cpu_session,
    export_tower,
    onnx_tower,
)
from textsiamese.inference.pipeline import ENCODE_CHUNK, encode_into, output_array, progress_bar
from textsiamese.inference.precision import (
    PRECISIONS,
    autocast_for,
    available_cores,
    check_precision,
    cpu_flags,
    cpu_has_native_bf16,
    cpu_has_vnni,
    default_batch_size,
    parse_cpu_flags,
    quantize_dynamic_int8,
    resolve_precision,
    torch_threads,
    weights_version,
)

__all__ = [
    "BACKENDS",
    "ENCODE_CHUNK",
    "ONNX_PRECISIONS",
    "PRECISIONS",
    "OnnxTower",
    "autocast_for",
    "available_cores",
    "check_backend",
    "check_precision",
    "cpu_flags",
    "cpu_has_native_bf16",
    "cpu_has_vnni",
    "cpu_session",
    "default_batch_size",
    "encode_into",
    "export_tower",
    "onnx_tower",
    "output_array",
    "parse_cpu_flags",
    "progress_bar",
    "quantize_dynamic_int8",
    "resolve_precision",
    "torch_threads",
    "weights_version",
]
