"""Name -> method registry, for the CLI/workflow boundary (library code takes functions).

Every motion method is called as ``f(frames) -> motion``: frames ``(T, H, W)``
in a log scale, motion ``(2, H, W)`` in pixels per step. Every nowcast method
is called as ``f(frame, motion, n_leads) -> (n_leads, H, W)``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from torch import Tensor

from dacast.nowcast.extrapolation import extrapolate, persistence
from dacast.nowcast.motion.block_matching import trec
from dacast.nowcast.motion.opencv_flow import optical_flow


def _persistence(frame: Tensor, motion: Tensor | None, n_leads: int) -> Tensor:
    """Persistence with the nowcast-method signature (the motion is ignored)."""
    return persistence(frame, n_leads)


MOTION_METHODS: dict[str, Callable[..., Tensor]] = {
    "trec": trec,
    "farneback": partial(optical_flow, method="farneback"),
    "dis": partial(optical_flow, method="dis"),
}
NOWCAST_METHODS: dict[str, Callable[..., Tensor]] = {
    "extrapolation": extrapolate,
    "persistence": _persistence,
}


def get_method(name: str) -> Callable[..., Tensor]:
    """The motion or nowcast method registered under ``name`` (case-insensitive).

    Motion: ``"trec"``, ``"farneback"``, ``"dis"``; nowcast: ``"extrapolation"``,
    ``"persistence"``. The error message lists the valid names.
    """
    key = name.lower()
    if key in MOTION_METHODS:
        return MOTION_METHODS[key]
    if key in NOWCAST_METHODS:
        return NOWCAST_METHODS[key]
    raise KeyError(
        f"unknown method {name!r}; choose one of: motion: {', '.join(sorted(MOTION_METHODS))}; "
        f"nowcast: {', '.join(sorted(NOWCAST_METHODS))}"
    )
