"""Faster inference paths for ``SiameseModel.encode``: precision choice and int8 dynamic quantisation.

``encode(..., precision=...)`` picks one of:

- ``"auto"`` (default): bf16 autocast on CUDA and on CPUs with native bf16 arithmetic (``avx512_bf16`` or
  ``amx_bf16`` among the ``/proc/cpuinfo`` flags), fp32 on every other CPU. On the 2-core AVX512-BF16 EPYC
  of ``docs/benchmarks.md`` bf16 autocast encodes at about 2x sentence-transformers' speed against fp32's
  1.3x, with STS-B dev Spearman within 0.0001 of fp32 (the matrix products are compute-bound there, so only
  cheaper arithmetic gives more). Without native bf16 the products are emulated: on a Zen 3 (AVX2 only)
  bf16 autocast was 5.6x slower than fp32, which is why ``auto`` reads the flags instead of assuming.
  ``resolve_precision`` says which one ``auto`` means on a given device.
- ``"fp32"``: full precision everywhere (reproduces sentence-transformers' vectors to 1e-6). Parity checks
  and anything that must match another library's vectors pass it explicitly.
- ``"bf16"``: bf16 autocast (matrix products in bf16, layer norm and softmax in fp32). On a CPU with
  ``avx512_bf16`` / AMX, oneDNN runs these products natively; elsewhere it may be slower than fp32.
- ``"int8"``: CPU only. Every ``nn.Linear`` (and ``nn.LSTM``) of the tower is replaced by its dynamically
  quantised version (``torch.ao.quantization.quantize_dynamic``: int8 weights per output channel,
  activations quantised per batch at run time, fbgemm kernels, VNNI where the CPU has it). The quantised
  copy is built on first use and cached on the model (not saved, not part of its fingerprint); it is
  rebuilt when the weights change.

Only ``encode`` (and what calls it: evaluation, search, mining) resolves ``auto``; training runs the towers
directly under its own autocast setting, so the choice never changes training numerics.

The quality cost of each path on STS-B dev is measured by ``benchmarks/bench_encode.py`` and reported in
``docs/benchmarks.md``.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import os
import warnings
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import nn

from textsiamese.errors import ConfigError

PRECISIONS = ("auto", "fp32", "bf16", "int8")
# /proc/cpuinfo flags of CPUs that multiply bf16 natively (Zen 4 and Cooper Lake on: avx512_bf16;
# Sapphire Rapids on: amx_bf16).
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
# ... and of CPUs with 8-bit dot products accumulating in 32 bits.
VNNI_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})


def check_precision(precision: str, device: torch.device) -> None:
    """Refuse an unknown precision, or int8 on a non-CPU device."""
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision == "int8" and device.type != "cpu":
        raise ConfigError(
            f"precision 'int8' (dynamic quantisation) runs on CPU only; the model is on {device}"
        )


def resolve_precision(precision: str, device: torch.device, flags: Iterable[str] | None = None) -> str:
    """The concrete precision ``precision`` means on ``device``: ``auto`` becomes ``bf16`` on CUDA and on a
    CPU with native bf16 arithmetic, ``fp32`` on any other CPU; the others are returned unchanged.

    ``flags``: the CPU feature flags to decide by (default: this machine's, from ``/proc/cpuinfo``).
    """
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16"
    if device.type == "cpu" and cpu_has_native_bf16(flags):
        return "bf16"
    return "fp32"


CPU_BATCH_SIZE = 16
ACCELERATOR_BATCH_SIZE = 64


def default_batch_size(device: torch.device) -> int:
    """Texts per forward pass when the caller gives none: 16 on CPU, 64 on an accelerator.

    On CPU a small batch's activations stay in cache: the packaged MiniLM encoded faster at 16 than at 64
    (1.21x against 0.94x sentence-transformers' default, docs/benchmarks.md); a GPU wants larger batches.
    """
    return CPU_BATCH_SIZE if device.type == "cpu" else ACCELERATOR_BATCH_SIZE


def autocast_for(precision: str, device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """The autocast context of ``precision`` on ``device`` (a null context for fp32 and int8)."""
    if resolve_precision(precision, device) == "bf16":
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


def parse_cpu_flags(cpuinfo: str) -> frozenset[str]:
    """The feature flags in the text of ``/proc/cpuinfo`` (its first ``flags`` line; empty if there is none)."""
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


@functools.cache
def cpu_flags() -> frozenset[str]:
    """This machine's CPU feature flags, read once from ``/proc/cpuinfo`` (empty where it cannot be read,
    e.g. macOS or Windows, so every check below then answers no)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            return parse_cpu_flags(handle.read())
    except OSError:
        return frozenset()


def cpu_has_native_bf16(flags: Iterable[str] | None = None) -> bool:
    """Whether the CPU multiplies bf16 natively (AVX512-BF16 or AMX-BF16); ``flags`` default to this CPU's.

    /proc/cpuinfo is read rather than ``torch.ops.mkldnn._is_mkldnn_bf16_supported()``: torch's check
    answers on AVX512 support (core, VL, BW, DQ), which CPUs without the bf16 instructions also have.
    """
    return _has_any(NATIVE_BF16_FLAGS, flags)


def cpu_has_vnni(flags: Iterable[str] | None = None) -> bool:
    """Whether the CPU has 8-bit dot products accumulating in 32 bits (AVX512-VNNI, AVX-VNNI or AMX-INT8);
    ``flags`` default to this CPU's."""
    return _has_any(VNNI_FLAGS, flags)


def _has_any(wanted: frozenset[str], flags: Iterable[str] | None) -> bool:
    """Whether ``flags`` (default: this CPU's) include any of ``wanted``."""
    return bool(wanted & frozenset(cpu_flags() if flags is None else flags))


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
