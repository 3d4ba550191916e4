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
import functools
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


def quantize_dynamic_int8(module: nn.Module, full_range: bool | None = None) -> nn.Module:
    """An int8 dynamically-quantised CPU copy of ``module`` (Linear and LSTM layers); the original is kept.

    Weights are quantised per output channel, which keeps the cosine to the fp32 embeddings far closer than
    one scale per tensor does for MiniLM's feed-forward layers. ``full_range`` quantises activations to
    8 bits instead of torch's default 7 (default: when the CPU has VNNI, where this cannot saturate).
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
            quantized = quantize_dynamic(duplicate, spec, dtype=torch.qint8)
    if full_range is None:
        full_range = cpu_has_vnni()
    if full_range:
        from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

        full_range_class = _full_range_linear_class()
        for child in quantized.modules():
            if type(child) is DynamicLinear:
                child.__class__ = full_range_class  # type: ignore[assignment]
    return quantized


@functools.cache
def _full_range_linear_class() -> type[nn.Module]:
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    class FullRangeDynamicLinear(DynamicLinear):
        """Dynamic int8 linear quantising activations to all 8 bits (torch's default uses 7).

        torch keeps one bit in reserve because AVX2's 8-bit multiply-add saturates at 16 bits; VNNI
        (``vpdpbusd``) accumulates in 32 bits, so the bit is free precision there.
        """

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = torch.ops.quantized.linear_dynamic(x, self._packed_params._packed_params, reduce_range=False)
            return y.to(x.dtype)

        def _get_name(self) -> str:
            return "FullRangeDynamicQuantizedLinear"

    return FullRangeDynamicLinear


def cpu_has_vnni() -> bool:
    """Whether this CPU has 8-bit dot products accumulating in 32 bits (AVX512-VNNI or AVX-VNNI)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_vnni", "avx_vnni", "amx_int8"})
    except OSError:
        pass
    return False


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
