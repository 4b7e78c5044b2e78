"""Observation operators, synthetic observations, grids and neighbour search."""

from dacast.obs.grid import Grid, Neighbours, neighbours, pairwise_distances
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
from dacast.obs.synthetic import observe

__all__ = [
    "Grid",
    "IndexObs",
    "MatrixObs",
    "Neighbours",
    "ObsOperator",
    "SquareObs",
    "every_kth",
    "identity",
    "matrix",
    "neighbours",
    "observe",
    "pairwise_distances",
    "subset",
]
