"""Ensemble filters: pure functions returning a frozen `Analysis`."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from dacast.da.analysis import Analysis, AnalysisFailed, whiten
from dacast.da.enkf import EnKFConfig, enkf
from dacast.da.etkf import ETKFConfig, etkf
from dacast.da.gridded import GriddedLETKFConfig, gridded_letkf, gridded_neighbours, weight_grid
from dacast.da.gridded_dask import gridded_letkf_dask
from dacast.da.inflation import AdaptiveInflation, innovation_inflation, rtpp, rtps
from dacast.da.letkf import LETKFConfig, letkf, local_neighbours
from dacast.da.localization import Localization, gaspari_cohn, gaussian
from dacast.da.transform import transform_update
from dacast.geometry import Grid, Neighbours
from dacast.obs.operators import ObsOperator


@dataclass(frozen=True, kw_only=True)
class FreeRunConfig:
    """No assimilation: the ensemble runs freely (the baseline every filter must beat)."""


FilterConfig = EnKFConfig | ETKFConfig | LETKFConfig | FreeRunConfig

_FILTERS: dict[str, type] = {
    "enkf": EnKFConfig,
    "etkf": ETKFConfig,
    "letkf": LETKFConfig,
    "free": FreeRunConfig,
}


def get_filter(name: str) -> type:
    """The config class registered under ``name``; the error lists valid names."""
    try:
        return _FILTERS[name.lower()]
    except KeyError:
        raise KeyError(f"unknown filter {name!r}; choose one of: {', '.join(sorted(_FILTERS))}") from None


def analyse(
    config: FilterConfig,
    prior: Tensor,
    y: Tensor,
    operator: ObsOperator,
    *,
    grid: Grid | None = None,
    local: Neighbours | None = None,
    generator: torch.Generator | None = None,
) -> Analysis:
    """Dispatch one analysis to the filter that ``config`` describes.

    Args:
        config: one of the filter configs.
        prior: forecast ensemble, shape ``(k, n_state)``.
        y: observations, shape ``(n_obs,)``.
        operator: observation operator.
        grid: grid coordinates (LETKF only).
        local: precomputed neighbour table (LETKF only).
        generator: random source (stochastic EnKF only).
    """
    if isinstance(config, ETKFConfig):
        return etkf(prior, y, operator, config)
    if isinstance(config, LETKFConfig):
        if grid is None:
            raise ValueError("the LETKF needs the model grid for localization")
        return letkf(prior, y, operator, config, grid, local)
    if isinstance(config, EnKFConfig):
        if generator is None:
            raise ValueError("the stochastic EnKF needs a torch.Generator")
        return enkf(prior, y, operator, config, generator)
    if isinstance(config, FreeRunConfig):
        _, _, innovation = whiten(prior, y, operator)
        return Analysis.of(prior.clone(), innovation)
    raise TypeError(f"not a filter config: {type(config).__name__}")


__all__ = [
    "AdaptiveInflation",
    "Analysis",
    "AnalysisFailed",
    "EnKFConfig",
    "ETKFConfig",
    "FilterConfig",
    "FreeRunConfig",
    "GriddedLETKFConfig",
    "LETKFConfig",
    "Localization",
    "analyse",
    "enkf",
    "etkf",
    "gaspari_cohn",
    "gaussian",
    "get_filter",
    "gridded_letkf",
    "gridded_letkf_dask",
    "gridded_neighbours",
    "innovation_inflation",
    "letkf",
    "local_neighbours",
    "rtpp",
    "rtps",
    "transform_update",
    "weight_grid",
    "whiten",
]
