"""``train.compile``: the towers' forwards through ``torch.compile`` for training, falling back to eager.

Compiling is an optimisation, never a requirement: a machine without a C++ compiler (the CPU backend needs
one), an unsupported Python or an operation dynamo cannot trace must still train, so a failure to compile
warns once and the tower runs uncompiled.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch

from textsiamese.model import SiameseModel

Tower = Callable[[dict[str, torch.Tensor]], torch.Tensor]


class CompiledTower:
    """A tower's forward compiled with ``torch.compile`` (``dynamic=True``: batch lengths vary) for training.

    Compilation happens at the first call; if it fails (no C++ compiler for the CPU backend, an unsupported
    platform or operation) a one-line warning says so and the tower runs uncompiled from then on. Only
    compilation errors fall back; an error of the forward itself propagates.
    """

    def __init__(self, tower: torch.nn.Module) -> None:
        self.tower = tower
        self.compiled: Callable[..., torch.Tensor] | None = None
        try:
            self.compiled = torch.compile(tower, dynamic=True)
        except RuntimeError as error:  # e.g. torch.compile unsupported on this Python
            self._fall_back(error)

    def __call__(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.compiled is not None:
            try:
                return self.compiled(features)
            except torch._dynamo.exc.TorchDynamoException as error:
                self._fall_back(error)
        return self.tower(features)

    def _fall_back(self, error: BaseException) -> None:
        self.compiled = None
        reason = (str(error).strip().splitlines() or [""])[0][:200]
        warnings.warn(
            f"train.compile: torch.compile is unavailable here ({type(error).__name__}: {reason}); "
            "training runs uncompiled",
            RuntimeWarning,
            stacklevel=3,
        )


def training_towers(model: SiameseModel, compile: bool) -> dict[str, Tower]:
    """The forward of each of ``model``'s towers, by tower name, as the training step calls it: the towers
    themselves, or (``compile``) each wrapped in a ``CompiledTower``. The model keeps its plain towers, so
    what is saved and evaluated is never a compiled wrapper."""
    if compile:
        return {name: CompiledTower(tower) for name, tower in model.towers.items()}
    return dict(model.towers.items())
