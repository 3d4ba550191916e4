"""Faster inference paths for ``SiameseModel.encode``: precision choice and int8 dynamic quantisation.

``encode(..., precision=...)`` picks one of:

- ``"auto"`` (default): fp32 on CPU, bf16 autocast on CUDA.
- ``"fp32"``: full precision everywhere (reproduces sentence-transformers' vectors).
- ``"bf16"``: bf16 autocast (matrix products in bf16, layer norm and softmax in fp32). On a CPU with
  ``avx512_bf16`` / AMX, oneDNN runs these products natively; elsewhere it may be slower than fp32.
- ``"int8"``: CPU only. Every ``nn.Linear`` (and ``nn.LSTM``) of the tower is replaced by its dynamically
  quantised version (``torch.ao.quantization.quantize_dynamic``: int8 weights per output channel,
  activations quantised per batch at run time, fbgemm kernels, VNNI where the CPU has it). The quantised
  copy is built on first use and cached on the model (not saved, not part of its fingerprint); it is
  rebuilt when the weights change.

The quality cost of each path on STS-B dev is measured by ``benchmarks/bench_encode.py`` and reported in
``docs/benchmarks.md``.
"""

from __future__ import annotations

import contextlib
import copy
import os
import warnings
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from textsiamese.errors import ConfigError

PRECISIONS = ("auto", "fp32", "bf16", "int8")


def check_precision(precision: str, device: torch.device) -> None:
    """Refuse an unknown precision, or int8 on a non-CPU device."""
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision == "int8" and device.type != "cpu":
        raise ConfigError(
            f"precision 'int8' (dynamic quantisation) runs on CPU only; the model is on {device}"
        )


def autocast_for(precision: str, device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """The autocast context of ``precision`` on ``device`` (a null context for fp32 and int8)."""
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def quantize_dynamic_int8(module: nn.Module) -> nn.Module:
    """An int8 dynamically-quantised CPU copy of ``module`` (Linear and LSTM layers); the original is kept.

    Weights are quantised per output channel, which keeps the cosine to the fp32 embeddings far closer than
    one scale per tensor does for MiniLM's feed-forward layers.
    """
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    if any(p.device.type != "cpu" for p in module.parameters()):
        raise ConfigError("int8 dynamic quantisation needs the model on the CPU")
    duplicate = copy.deepcopy(module)
    duplicate.eval()
    spec = {
        name: per_channel_dynamic_qconfig
        for name, child in duplicate.named_modules()
        if isinstance(child, nn.Linear | nn.LSTM)
    }
    with warnings.catch_warnings():
        # torch marks eager-mode quantisation deprecated in favour of torchao; it is still the one
        # dependency-free path with fbgemm int8 kernels.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        with torch.no_grad():
            return quantize_dynamic(duplicate, spec, dtype=torch.qint8)


def weights_version(module: nn.Module) -> tuple[tuple[int, int], ...]:
    """Identity and in-place version counter of every parameter: changes when training updates them."""
    return tuple((id(p), p._version) for p in module.parameters())


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, not the machine's total)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS / Windows
        return max(1, os.cpu_count() or 1)


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run with ``threads`` intra-op threads (None: leave torch's setting), restoring it afterwards."""
    if threads is None:
        yield
        return
    if threads < 1:
        raise ConfigError("threads must be at least 1")
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
