"""A tower with a head: Dense layers (and L2 normalisations) applied to another tower's vectors.

This is how sentence-transformers' ``Dense`` and ``Normalize`` modules after ``Pooling`` live in textsiamese:
``ProjectedTower(base, layers)`` runs ``base`` (tokenizer, encoder, pooling: all of it unchanged) and then
each layer in order. A ``DenseLayer`` is ``activation(linear(x))`` plus an optional residual, as
sentence-transformers' ``Dense``; an ``L2Normalize`` is its ``Normalize`` in the middle of a chain (a final
normalisation of every role is the model's own ``normalize`` instead). Saved in textsiamese's format too: the
base tower's settings nest under ``base`` in the config, its assets share the tower folder, and the head's
weights sit in ``model.safetensors`` under ``layers.N``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from textsiamese.errors import ConfigError, ModelError
from textsiamese.towers.base import Tokenized, Tower

# Activation name in a textsiamese config → torch.nn class name (sentence-transformers saves the class's full
# path, ``torch.nn.modules.activation.Tanh``; ``Identity`` lives in ``torch.nn.modules.linear``).
ACTIVATIONS = {
    "identity": "Identity",
    "tanh": "Tanh",
    "relu": "ReLU",
    "gelu": "GELU",
    "sigmoid": "Sigmoid",
    "silu": "SiLU",
    "elu": "ELU",
    "leaky_relu": "LeakyReLU",
    "softplus": "Softplus",
    "mish": "Mish",
    "hardtanh": "Hardtanh",
    "softsign": "Softsign",
}


def activation_module(name: str) -> nn.Module:
    """The parameter-free torch activation registered under ``name`` (see ``ACTIVATIONS``)."""
    if name not in ACTIVATIONS:
        raise ConfigError(f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}")
    module = getattr(nn, ACTIVATIONS[name])()
    assert isinstance(module, nn.Module)
    return module


def activation_path(name: str) -> str:
    """sentence-transformers' spelling of activation ``name``: the torch class's module path and name."""
    module = activation_module(name)
    return f"{type(module).__module__}.{type(module).__name__}"


class DenseLayer(nn.Module):
    """``activation(linear(x))`` (+ ``x``, or a bias-free projection of it, with ``residual``)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        activation: str = "tanh",
        residual: bool = False,
    ) -> None:
        super().__init__()
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.bias, self.activation_name, self.use_residual = bool(bias), activation, bool(residual)
        self.linear = nn.Linear(self.in_features, self.out_features, bias=self.bias)
        self.activation = activation_module(activation)
        if residual and self.in_features != self.out_features:
            # named as in sentence-transformers' Dense, so its weights load by name
            self.residual = nn.Linear(self.in_features, self.out_features, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.activation(self.linear(x))
        if self.use_residual:
            out = out + (self.residual(x) if self.in_features != self.out_features else x)
        return out

    def config(self) -> dict[str, Any]:
        return {
            "type": "dense",
            "in_features": self.in_features,
            "out_features": self.out_features,
            "bias": self.bias,
            "activation": self.activation_name,
            "residual": self.use_residual,
        }


class L2Normalize(nn.Module):
    """Scales each vector to unit L2 norm (sentence-transformers' ``Normalize``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(x, p=2, dim=-1)

    def config(self) -> dict[str, Any]:
        return {"type": "normalize"}


def build_layer(spec: dict[str, Any]) -> nn.Module:
    """A head layer from its config (``{"type": "dense", ...}`` or ``{"type": "normalize"}``)."""
    kind = spec.get("type") if isinstance(spec, dict) else None
    if kind == "normalize":
        return L2Normalize()
    if kind == "dense":
        try:
            return DenseLayer(
                spec["in_features"],
                spec["out_features"],
                bias=spec.get("bias", True),
                activation=spec.get("activation", "tanh"),
                residual=spec.get("residual", False),
            )
        except KeyError as error:
            raise ModelError(f"dense layer {spec!r} lacks {error}") from None
    raise ModelError(f"unknown head layer {spec!r}; expected type 'dense' or 'normalize'")


class ProjectedTower(Tower):
    """``base`` tower → head layers; tokenizing, padding and long-text handling are the base tower's.

    >>> tower = ProjectedTower(base, [DenseLayer(384, 128, activation="identity")])  # doctest: +SKIP
    >>> tower.dimension                                                             # doctest: +SKIP
    128
    """

    kind: ClassVar[str] = "projected"

    def __init__(self, base: Tower, layers: Sequence[nn.Module]) -> None:
        super().__init__()
        if isinstance(base, ProjectedTower):  # one head: stack the layers instead of nesting towers
            inner: Tower = base.base
            layers = [*base.head_layers(), *layers]
            base = inner
        self.base: Tower = base
        self.layers: nn.ModuleList = nn.ModuleList(layers)
        width = base.dimension
        for number, layer in enumerate(self.layers):
            if isinstance(layer, DenseLayer):
                if layer.in_features != width:
                    raise ConfigError(
                        f"head layer {number} (dense) takes {layer.in_features}-d vectors but gets {width}-d"
                    )
                width = layer.out_features
            elif not isinstance(layer, L2Normalize):
                raise ConfigError(f"head layer {number}: {type(layer).__name__} is not a head layer")
        self._dimension = width

    def head_layers(self) -> list[nn.Module]:
        """The head's layers, in order."""
        return list(self.layers)

    @property
    def dimension(self) -> int:
        return self._dimension

    @property
    def max_length(self) -> int:
        return self.base.max_length

    def tokenize(self, texts: Sequence[str]) -> Tokenized:
        return self.base.tokenize(texts)

    def content_ids(self, texts: Sequence[str]) -> list[list[int]]:
        return self.base.content_ids(texts)

    def special_ids(self) -> tuple[list[int], list[int]]:
        return self.base.special_ids()

    def collate(self, ids: Sequence[Sequence[int]]) -> dict[str, torch.Tensor]:
        return self.base.collate(ids)

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        vectors = self.base(features)
        for layer in self.layers:
            vectors = layer(vectors)
        return vectors

    def config(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "base": self.base.config(),
            "layers": [layer.config() for layer in self.layers],  # type: ignore[operator]
        }

    def save_assets(self, directory: Path) -> None:
        self.base.save_assets(directory)

    @classmethod
    def from_assets(cls, config: dict[str, Any], directory: Path) -> ProjectedTower:
        from textsiamese.towers import tower_class

        base_config = config.get("base")
        if not isinstance(base_config, dict) or base_config.get("kind") == cls.kind:
            raise ModelError(f"{directory}: a projected tower needs a base tower config, not {base_config!r}")
        base = tower_class(str(base_config.get("kind", ""))).from_assets(base_config, directory)
        layers = config.get("layers")
        if not isinstance(layers, list):
            raise ModelError(f"{directory}: a projected tower's layers must be a list, not {layers!r}")
        return cls(base, [build_layer(spec) for spec in layers])
