"""Radar nowcasting, one module per pipeline stage (as pysteps).

* `dacast.nowcast.motion`: motion fields (`trec`, `optical_flow`, `smooth_motion`);
* `dacast.nowcast.extrapolation`: semi-Lagrangian `extrapolate`, `persistence`;
* `dacast.nowcast.nowcast`: `ExtrapolationConfig` and `extrapolation_nowcast`
  (rain rate in, rain rate out);
* `get_method(name)`: the registry for the CLI/workflow boundary.

Motion convention everywhere: shape ``(2, H, W)``, pixels per time step,
``u`` (+x, columns, east) first, ``v`` (+y, rows downward, south on a
north-up grid) second; a feature at ``(y, x)`` at time ``t`` is at
``(y + v, x + u)`` at ``t + 1``.
"""

from dacast.nowcast.extrapolation import displacements, extrapolate, persistence
from dacast.nowcast.motion import optical_flow, smooth_motion, trec
from dacast.nowcast.nowcast import (
    ExtrapolationConfig,
    OpticalFlowConfig,
    TRECConfig,
    estimate_motion,
    extrapolation_nowcast,
)
from dacast.nowcast.registry import get_method
from dacast.nowcast.transform import from_dbr, to_dbr

__all__ = [
    "ExtrapolationConfig",
    "OpticalFlowConfig",
    "TRECConfig",
    "displacements",
    "estimate_motion",
    "extrapolate",
    "extrapolation_nowcast",
    "from_dbr",
    "get_method",
    "optical_flow",
    "persistence",
    "smooth_motion",
    "to_dbr",
    "trec",
]
