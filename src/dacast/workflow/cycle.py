"""The one data-assimilation cycle: forecast -> observe -> analyse, for any model, observations and filter.

Every application (twin, surrogate cycle, radar BDA cycle, and the ones to
come) hands its pieces to `cycle` and records what it yields::

    analyser = FilterAnalyser(ETKFConfig(inflation=1.02))
    forecast = model_forecast(model, steps=5, dt=0.01)
    for step in cycle(ensemble, forecast=forecast, observations=stream, analyse=analyser, cycles=range(100)):
        record(step)                 # scores, checkpoints, forecasts from the analysis
        if diverged(step):
            break

The loop is DAPPER's ``assimilate`` and dynamax's one filter loop: written
once, on member-first tensors ``(members, *state)``, never modifying its
inputs. What an application adds is a *hook* in one of three places: the
forecast callable (Dask member chunks, a delay-embedded state), the analyser
(adaptive inflation, a gridded LETKF on tiles), or the record loop (scores,
divergence, checkpoints, extended forecasts). A cycle whose analysis raises
`torch.linalg.LinAlgError` (a non-finite ensemble) or `AnalysisFailed` (a
filter that says why, e.g. a diffusion sampler returning NaN) yields a step with
``failure`` set and stops.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import torch
from torch import Tensor

from dacast.da import (
    AdaptiveInflation,
    Analysis,
    AnalysisFailed,
    EnKFConfig,
    ETKFConfig,
    FilterConfig,
    GriddedLETKFConfig,
    LETKFConfig,
    analyse,
    gridded_letkf,
    gridded_letkf_dask,
    innovation_inflation,
    local_neighbours,
    whiten,
)
from dacast.models import Model, advance
from dacast.obs import Grid, Neighbours, ObsOperator
from dacast.workflow.runtime import sync

STAGES = ("forecast", "observation", "analysis")


@dataclass(frozen=True)
class Observation:
    """The observations valid at one analysis time.

    Attributes:
        y: observed values, shape ``(n_obs,)`` (observation units).
        operator: maps a flattened ensemble ``(members, n_state)`` to ``(members, n_obs)``;
            carries the locations and error standard deviations.
    """

    y: Tensor
    operator: ObsOperator


@dataclass(frozen=True)
class CycleStep:
    """What one cycle produced.

    Attributes:
        cycle: 0-based index of the analysis time.
        prior: forecast ensemble, shape ``(members, *state)``.
        observation: the observations, ``None`` when there were none (an outage): no analysis.
        analysis: the filter's result (its ``ensemble`` has the shape of ``prior``);
            ``None`` without observations or when the analysis failed.
        seconds: wall time of the stages ``forecast``, ``observation`` (H(x) of the
            prior when precomputed), ``analysis`` (s); receiving the observations is not counted.
        failure: why the analysis failed (empty when it did not); the cycle stops after this step.
    """

    cycle: int
    prior: Tensor
    observation: Observation | None
    analysis: Analysis | None
    seconds: dict[str, float] = field(default_factory=dict)
    failure: str = ""

    @property
    def posterior(self) -> Tensor:
        """The ensemble the next forecast starts from: the analysis, or the prior without one."""
        return self.prior if self.analysis is None else self.analysis.ensemble


#: ``forecast(ensemble, cycle)``: the ensemble valid at analysis time ``cycle`` from the one valid at ``cycle - 1``.
Forecast = Callable[[Tensor, int], Tensor]
#: ``observations(cycle)``: the observations valid at analysis time ``cycle``, ``None`` when there are none.
Observations = Callable[[int], Observation | None]
#: ``analyse(prior, observation, hx, cycle)``: the analysis; ``hx`` is H(prior) ``(members, n_obs)`` or ``None``.
Analyser = Callable[[Tensor, Observation, Tensor | None, int], Analysis]


def cycle(
    ensemble: Tensor,
    *,
    forecast: Forecast,
    observations: Observations,
    analyse: Analyser,
    cycles: Iterable[int],
    precompute_hx: bool = False,
) -> Iterator[CycleStep]:
    """Run forecast -> observe -> analyse over ``cycles`` and yield every step.

    Args:
        ensemble: the ensemble valid before the first cycle, shape ``(members, *state)``; not modified.
        forecast: advances an ensemble to the next analysis time (see `model_forecast`).
        observations: the observation stream (arrays, a simulated radar, an inbox).
        analyse: the filter (see `FilterAnalyser`).
        cycles: the analysis times to run (e.g. ``range(start, n)`` to resume).
        precompute_hx: compute ``H(prior)`` once here (timed as the ``observation``
            stage) and pass it to ``analyse``; otherwise ``hx`` is ``None``.

    Yields:
        One `CycleStep` per cycle; the next forecast starts from ``step.posterior``.
        The caller may stop early (divergence, interruption) by leaving the loop.
    """
    device = ensemble.device
    start = [ensemble]  # the next forecast's start, held here only until that forecast has run (a GB at 1000 members)
    del ensemble
    for c in cycles:
        sync(device)
        t0 = time.perf_counter()
        prior = forecast(start.pop(), c)
        sync(device)
        t1 = time.perf_counter()
        obs = observations(c)
        t2 = time.perf_counter()
        hx = None
        if obs is not None and precompute_hx:
            hx = obs.operator(prior.reshape(prior.shape[0], -1))
            sync(device)
        t3 = time.perf_counter()
        result, failure = None, ""
        if obs is not None:
            try:
                result = analyse(prior, obs, hx, c)
            except torch.linalg.LinAlgError:
                failure = "the analysis failed (non-finite ensemble)"
            except AnalysisFailed as exc:
                failure = f"the analysis failed: {exc}"
            sync(device)
        seconds = {"forecast": t1 - t0, "observation": t3 - t2, "analysis": time.perf_counter() - t3}
        step = CycleStep(cycle=c, prior=prior, observation=obs, analysis=result, seconds=seconds, failure=failure)
        yield step
        if failure:
            return
        start.append(step.posterior)
        del step, prior, result, hx, obs  # this cycle's forecast is not held through the next one


def model_forecast(model: Model, steps: int, dt: float) -> Forecast:
    """The forecast of a `Model`: ``steps`` steps of ``dt`` per cycle; cycle ``c`` starts at time ``c * steps * dt``."""

    def run(ensemble: Tensor, c: int) -> Tensor:
        return advance(model, ensemble, steps, dt, t0=c * steps * dt)

    return run


@dataclass
class FilterAnalyser:
    """The analyser of the point filters (EnKF, ETKF, LETKF, free run), with optional adaptive inflation.

    Attributes:
        config: the filter.
        grid: grid-point coordinates (LETKF only); the neighbour table is built at
            the first analysis and reused (the observation network is fixed).
        generator: random source (stochastic EnKF only).
        adaptive: estimate the multiplicative inflation each cycle from the
            innovations (Li, Kalnay & Miyoshi 2009), starting from ``config.inflation``.
        covariance_inflation: the covariance inflation factor (the square of the
            anomaly inflation) of the latest analysis.
    """

    config: FilterConfig
    grid: Grid | None = None
    generator: torch.Generator | None = None
    adaptive: AdaptiveInflation | None = None
    covariance_inflation: float = 1.0
    local: Neighbours | None = None

    def __post_init__(self) -> None:
        inflated = isinstance(self.config, EnKFConfig | ETKFConfig | LETKFConfig)
        if self.adaptive is not None and not inflated:
            raise ValueError(f"adaptive inflation needs an inflating filter, got {type(self.config).__name__}")
        if inflated:
            self.covariance_inflation = self.config.inflation**2  # type: ignore[union-attr]
        if isinstance(self.config, LETKFConfig) and self.grid is None:
            raise ValueError("the LETKF needs a grid")

    def __call__(self, prior: Tensor, obs: Observation, hx: Tensor | None, cycle: int) -> Analysis:
        """The analysis of ``prior`` ``(members, n_state)`` given ``obs``."""
        config = self.config
        if self.adaptive is not None:
            y_anom, d, _ = whiten(prior, obs.y, obs.operator, hx)
            self.covariance_inflation = self.adaptive.update(self.covariance_inflation, innovation_inflation(y_anom, d))
            config = dataclasses.replace(config, inflation=math.sqrt(self.covariance_inflation))  # type: ignore[type-var]
        if isinstance(config, LETKFConfig) and self.local is None:
            assert self.grid is not None
            self.local = local_neighbours(self.grid, obs.operator, config.localization)
        return analyse(config, prior, obs.y, obs.operator, grid=self.grid, local=self.local, generator=self.generator)


@dataclass
class GriddedAnalyser:
    """The analyser of gridded ensembles ``(members, var, y, x)``: the gridded LETKF, on Dask tiles with a client.

    An observation set without observations returns the prior unchanged.
    """

    config: GriddedLETKFConfig
    dx_km: float
    client: object | None = None

    def __call__(self, prior: Tensor, obs: Observation, hx: Tensor | None, cycle: int) -> Analysis:
        """The analysis of ``prior`` ``(members, var, y, x)``; ``hx`` is H(prior) ``(members, n_obs)`` or ``None``."""
        if obs.operator.n_obs == 0:
            return Analysis.of(prior, prior.new_zeros(0))
        y = obs.y.to(device=prior.device, dtype=prior.dtype)
        if self.client is not None:
            return gridded_letkf_dask(self.client, prior, y, obs.operator, self.config, dx_km=self.dx_km, hx=hx)
        return gridded_letkf(prior, y, obs.operator, self.config, dx_km=self.dx_km, hx=hx)


def array_observations(y: Tensor, operator: ObsOperator) -> Observations:
    """The stream of a twin: row ``c`` of ``y`` ``(cycles, n_obs)`` with one fixed operator."""

    def stream(c: int) -> Observation:
        return Observation(y=y[c], operator=operator)

    return stream


__all__ = [
    "STAGES",
    "Analyser",
    "CycleStep",
    "FilterAnalyser",
    "Forecast",
    "GriddedAnalyser",
    "Observation",
    "Observations",
    "array_observations",
    "cycle",
    "model_forecast",
]
