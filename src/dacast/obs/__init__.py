"""Observation operators and synthetic observations; grids and neighbour search re-exported from `dacast.geometry`."""

from dacast.geometry import Grid, Neighbours, neighbours, pairwise_distances
from dacast.obs.operators import (
    IndexObs,
    MatrixObs,
    ObsOperator,
    SquareObs,
    every_kth,
    identity,
    matrix,
    subset,
)
from dacast.obs.radar import (
    RadarConfig,
    RadarOperator,
    observe_radar,
    radar_mask,
    radar_operator,
    radial_velocity,
    reflectivity_dbz,
)
from dacast.obs.synthetic import observe

__all__ = [
    "Grid",
    "IndexObs",
    "MatrixObs",
    "Neighbours",
    "ObsOperator",
    "RadarConfig",
    "RadarOperator",
    "SquareObs",
    "every_kth",
    "identity",
    "matrix",
    "neighbours",
    "observe",
    "observe_radar",
    "pairwise_distances",
    "radar_mask",
    "radar_operator",
    "radial_velocity",
    "reflectivity_dbz",
    "subset",
]
