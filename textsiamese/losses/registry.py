"""Building a component by its registered name, shared by every pluggable family (losses, miners, …).

A name in a recipe, on the command line and in code is the same key; unknown names and options fail with a
``ConfigError`` listing what is accepted, instead of a ``TypeError`` from deep inside a constructor.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any, TypeVar

from textsiamese.errors import ConfigError

T = TypeVar("T")


def build(family: str, registry: Mapping[str, type[T]], name: str, **kwargs: Any) -> T:
    """Instantiate ``registry[name](**kwargs)``, checking the name and the option names first."""
    try:
        cls = registry[name]
    except KeyError:
        raise ConfigError(f"unknown {family} {name!r}; choose one of {', '.join(registry)}") from None
    try:
        inspect.signature(cls).bind(**kwargs)
    except TypeError:
        accepted = ", ".join(inspect.signature(cls).parameters) or "none"
        raise ConfigError(
            f"{family} {name!r} does not take options {sorted(kwargs)}; it accepts: {accepted}"
        ) from None
    return cls(**kwargs)
