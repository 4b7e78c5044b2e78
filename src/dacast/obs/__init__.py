"""Observation operators and synthetic observations; grids and neighbour search re-exported from `dacast.geometry`."""

from dacast.geometry import Grid, Neighbours, neighbours, pairwise_distances
from dacast.obs.microwave import (
    AMSUA_CHANNELS,
    AbsorptionTables,
    MicrowaveOperator,
    brightness_temperature,
    load_amsua_tables,
    peak_pressure,
    weighting_functions,
)
from dacast.obs.operators import (
    ArctanObs,
    IndexObs,
    MatrixObs,
    ObsOperator,
    SquareObs,
    StackedObs,
    every_kth,
    identity,
    matrix,
    stacked,
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
    "ArctanObs",
    "AMSUA_CHANNELS",
    "AbsorptionTables",
    "Grid",
    "IndexObs",
    "MatrixObs",
    "MicrowaveOperator",
    "Neighbours",
    "ObsOperator",
    "RadarConfig",
    "RadarOperator",
    "SquareObs",
    "StackedObs",
    "brightness_temperature",
    "every_kth",
    "identity",
    "load_amsua_tables",
    "matrix",
    "neighbours",
    "observe",
    "observe_radar",
    "pairwise_distances",
    "peak_pressure",
    "radar_mask",
    "radar_operator",
    "radial_velocity",
    "reflectivity_dbz",
    "stacked",
    "subset",
    "weighting_functions",
]
