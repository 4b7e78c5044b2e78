"""Name -> model constructor registry, for the configuration boundary (library code takes model objects).

Every constructor takes its parameters as keywords and returns an object that
meets the `Model` protocol, e.g. ``get_model("lorenz96")(n_state=40, forcing=8.0)``.
"""

from __future__ import annotations

from collections.abc import Callable

from dacast.models.base import Model
from dacast.models.coupled_lorenz63 import CoupledLorenz63
from dacast.models.lorenz63 import Lorenz63
from dacast.models.lorenz96 import Lorenz96

MODELS: dict[str, Callable[..., Model]] = {
    "lorenz63": Lorenz63,
    "lorenz96": Lorenz96,
    "coupled_lorenz63": CoupledLorenz63,
}


def get_model(name: str) -> Callable[..., Model]:
    """The constructor registered under ``name`` (case-insensitive); the `KeyError` lists the valid names."""
    try:
        return MODELS[name.lower()]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}") from None


__all__ = ["MODELS", "get_model"]
