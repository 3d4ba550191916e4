"""What runs a tower's batches when it is not the tower itself: its int8 copy or its ONNX Runtime stand-in.

Both are costly to build (a quantisation pass, an ONNX export and session), so a model keeps them in a
``RunnerCache`` and rebuilds one only when the tower's weights, buffers or settings changed. The cache is
never pickled or deep-copied (an ONNX Runtime session cannot be): a copy starts empty and rebuilds on use.
"""

from __future__ import annotations

from typing import Any

import torch

from textsiamese.inference.onnx import OnnxTower, onnx_tower
from textsiamese.inference.precision import quantize_dynamic_int8, weights_version
from textsiamese.towers import Tower


class RunnerCache:
    """Per model: the int8 and ONNX Runtime runners of its towers, keyed by tower name."""

    def __init__(self) -> None:
        self._int8: dict[str, tuple[Any, Tower]] = {}
        self._onnx: dict[str, tuple[Any, OnnxTower]] = {}

    def __reduce__(self) -> tuple[type[RunnerCache], tuple[()]]:
        return (RunnerCache, ())  # copied or unpickled empty

    def runner(self, name: str, tower: Tower, backend: str, precision: str) -> tuple[Any, str]:
        """What runs ``tower``'s batches and the autocast precision to run it under: the tower itself, its
        int8 copy, or its ONNX Runtime stand-in (under fp32: torch autocast has no say over ONNX Runtime)."""
        if backend == "onnx":
            return self.onnx(name, tower, precision), "fp32"
        if precision == "int8":
            return self.int8(name, tower), precision
        return tower, precision

    def int8(self, name: str, tower: Tower) -> Tower:
        """The int8 dynamically-quantised copy of ``tower``, rebuilt if its weights changed."""
        version = weights_version(tower)
        if name not in self._int8 or self._int8[name][0] != version:
            self._int8[name] = (version, quantize_dynamic_int8(tower))  # type: ignore[assignment]
        return self._int8[name][1]

    def onnx(self, name: str, tower: Tower, precision: str) -> OnnxTower:
        """The ONNX Runtime stand-in for ``tower`` at ``precision`` and torch's current thread count, rebuilt
        if its weights, buffers or settings changed."""
        key = f"{name}:{'int8' if precision == 'int8' else 'fp32'}:{torch.get_num_threads()}"
        # The graph bakes in the weights, buffers and pooling; in-place ``.data`` edits go unseen, as for int8.
        buffers = tuple((id(b), b._version) for b in tower.buffers())
        version = (weights_version(tower), buffers, repr(tower.config()))
        if key not in self._onnx or self._onnx[key][0] != version:
            self._onnx[key] = (version, onnx_tower(tower, precision))
        return self._onnx[key][1]
