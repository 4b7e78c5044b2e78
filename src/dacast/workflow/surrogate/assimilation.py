"""DA runs of the surrogate cycle on the shared engine: how each run starts, and what it records.

`assimilate` runs `dacast.workflow.cycle.cycle` with the truth and the
observations given from outside, so the forecast model can differ from the
truth (imperfect model, trained surrogate) and its state can differ in size
(a delay-embedded LSTM state, the 5-variable truth vs a 3-variable model).

A model's *physical view* (``view``) says which entries of its state are the
modelled variables ``(n_var,)``: ``arange(n_var)`` for a plain model, the
newest slot ``arange((w-1) n_var, w n_var)`` for a window-``w`` surrogate.
Observations are taken of that view, and RMSE is computed on it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from dacast.da import AdaptiveInflation, FilterConfig
from dacast.ml.surrogate import SurrogateNet
from dacast.models import Model
from dacast.obs import Grid, IndexObs, subset
from dacast.verify import rmse
from dacast.workflow.cycle import CycleStep, FilterAnalyser, array_observations, cycle, model_forecast
from dacast.workflow.runtime import progress as progress_bar
from dacast.workflow.runtime import torch_generator
from dacast.workflow.surrogate.config import SurrogateConfig
from dacast.workflow.surrogate.embedding import DelayEmbedded
from dacast.workflow.surrogate.truth import TruthData

#: A DA run whose analysis RMSE exceeds this many climatological standard deviations has diverged.
DIVERGENCE_FACTOR = 10.0
#: Cycles between two copies of the analysis means to the CPU (and divergence checks).
CHECK_EVERY = 200


@dataclass(frozen=True)
class CycleResult:
    """Analysis trajectory of one DA run, in the modelled variables.

    Attributes:
        analysis_mean: shape ``(cycles, n_var)``; rows before ``start`` hold the
            initial-window values the run started from.
        analysis_spread: ensemble standard deviation, shape ``(cycles, n_var)``.
        forecast_mean: prior mean, shape ``(cycles, n_var)`` (NaN before ``start``).
        smoothed_mean: fixed-lag smoothed mean, shape ``(cycles, n_var)``: row ``c``
            is the oldest slot of the analysis at ``c + lag`` (equal to
            ``analysis_mean`` without a ``lag_view``; the last ``lag`` rows are filtered values).
        diverged_cycle: first cycle with non-finite or exploding values, ``-1`` if none.
        window_mean: analysis mean of the last ``window`` slots of a delay-embedded
            state, shape ``(cycles, window * n_var)`` (oldest slot first); row ``c``
            uses observations up to ``c`` only. ``None`` without ``window``.
        inflation: covariance inflation factor used at each cycle, shape ``(cycles,)``
            (the square of the filter's anomaly inflation; NaN before ``start``).
    """

    analysis_mean: Tensor
    analysis_spread: Tensor
    forecast_mean: Tensor
    diverged_cycle: int
    smoothed_mean: Tensor
    window_mean: Tensor | None = None
    inflation: Tensor | None = None

    def mean_inflation(self, skip: int = 0) -> float:
        """Mean covariance inflation factor over the cycles from ``skip`` on (NaN rows left out; NaN if none)."""
        if self.inflation is None:
            return float("nan")
        infl = self.inflation[skip:]
        infl = infl[torch.isfinite(infl)]
        return float(infl.mean()) if infl.numel() else float("nan")


def view_operator(n_state: int, view: Tensor, obs_indices: list[int], error_std: float | Tensor) -> IndexObs:
    """Observation operator on a model state that observes ``view[obs_indices]``."""
    return subset(n_state, view[torch.as_tensor(obs_indices, dtype=torch.long)], error_std)


class _Trajectory:
    """The analysis trajectory of a run, recorded from the engine's steps (CPU float64, NaN where none).

    Analysis means are kept on the device and copied to the CPU every `CHECK_EVERY`
    cycles (one sync), where the divergence test runs too.
    """

    def __init__(self, n_cyc: int, view: Tensor, device: torch.device, lag_view: Tensor | None, window: int) -> None:
        n_var = int(view.numel())
        self.view = view.to(device)
        self.lag_view = None if lag_view is None else lag_view.to(device)
        self.lag = 0 if lag_view is None else int(view[0] - lag_view[0]) // n_var
        self.window = window
        self.n_var = n_var
        full = lambda width: torch.full((n_cyc, width), math.nan, dtype=torch.float64)  # noqa: E731
        self.a_mean, self.a_spread, self.f_mean, self.smooth = full(n_var), full(n_var), full(n_var), full(n_var)
        self.win_mean = full(window * n_var) if window else None
        self.infl = torch.full((n_cyc,), math.nan, dtype=torch.float64)
        self.pending: list[Tensor] = []
        self.diverged = -1

    def add(self, step: CycleStep, inflation: float) -> None:
        """Record one cycle (its analysis mean only into the pending block)."""
        c = step.cycle
        self.f_mean[c] = step.prior[:, self.view].mean(0).double().cpu()
        self.infl[c] = inflation
        if step.analysis is None:
            self.diverged = c
            return
        mean = step.analysis.mean
        self.pending.append(mean[self.view])
        if self.lag_view is not None and c - self.lag >= 0:
            self.smooth[c - self.lag] = mean[self.lag_view].double().cpu()
        if self.win_mean is not None:
            self.win_mean[c] = mean[mean.shape[-1] - self.window * self.n_var :].double().cpu()
        self.a_spread[c] = step.analysis.spread[self.view].double().cpu()

    def flush(self, c: int, truth: Tensor | None, threshold: float) -> None:
        """Copy the pending means (cycles up to ``c``) to the CPU and flag the first non-finite or exploding one."""
        chunk = torch.stack(self.pending).double().cpu()
        first = c + 1 - len(chunk)
        self.a_mean[first : c + 1] = chunk
        self.pending = []
        bad = ~torch.isfinite(chunk).all(-1)
        if truth is not None:
            bad |= rmse(chunk, truth[first : c + 1], dim=-1) > threshold
        if bool(bad.any()):
            self.diverged = first + int(torch.nonzero(bad)[0])

    def result(self) -> CycleResult:
        """The `CycleResult`; rows after a divergence are NaN."""
        n_cyc = self.a_mean.shape[0]
        if self.lag_view is None:
            self.smooth = self.a_mean.clone()
        else:
            self.smooth[n_cyc - self.lag :] = self.a_mean[n_cyc - self.lag :]
        if self.diverged >= 0:
            for tensor in (self.a_mean, self.a_spread, self.f_mean, self.smooth, self.win_mean, self.infl):
                if tensor is not None:
                    tensor[self.diverged + 1 :] = math.nan
        return CycleResult(
            self.a_mean, self.a_spread, self.f_mean, self.diverged, self.smooth, self.win_mean, self.infl
        )


def assimilate(
    model: Model,
    ensemble: Tensor,
    observations: Tensor,
    operator: IndexObs,
    filter_config: FilterConfig,
    *,
    view: Tensor,
    steps_per_cycle: int,
    dt: float,
    start: int = 0,
    grid: Grid | None = None,
    generator: torch.Generator,
    threshold: float = float("inf"),
    truth: Tensor | None = None,
    progress: bool = False,
    label: str = "DA",
    lag_view: Tensor | None = None,
    window: int = 0,
    adaptive: AdaptiveInflation | None = None,
) -> CycleResult:
    """Cycle ``model`` through observations ``observations[start:]`` on the shared engine.

    Args:
        model: forecast model (`Model` protocol), batched over members.
        ensemble: initial ensemble at analysis time ``start - 1`` (time 0 when
            ``start == 0``), shape ``(members, model.n_state)``.
        observations: shape ``(cycles, n_obs)``; row ``c`` is valid ``c + 1`` analysis intervals after time 0.
        operator: maps a model state to the observations (see `view_operator`).
        filter_config: the filter.
        view: indices of the modelled variables in the model state, shape ``(n_var,)``.
        steps_per_cycle: model steps of ``dt`` between analyses.
        dt: model step (model time units).
        start: first cycle to assimilate.
        grid: grid for the LETKF (``n_state`` a multiple of its points).
        generator: random source for the stochastic EnKF.
        threshold: an analysis RMSE above this (against ``truth``) stops the run as diverged.
        truth: modelled variables of the truth, shape ``(cycles, n_var)``; only for ``threshold``.
        progress: show a Rich progress bar.
        label: progress-bar label.
        lag_view: indices of the oldest slot of a delay-embedded state, shape
            ``(n_var,)``; with ``view`` ``lag`` slots later, the analysis of that
            slot is a fixed-lag smoother estimate (``lag = (view[0] - lag_view[0]) / n_var``).
        window: record the analysis mean of the last ``window`` slots of the state
            (``window * n_var <= n_state``; 0: do not record).
        adaptive: estimate the multiplicative inflation each cycle from the
            innovations (`AdaptiveInflation`), starting from the filter's
            ``inflation``; ``None``: the filter's fixed inflation.

    Returns:
        A `CycleResult`; after a divergence the remaining rows are NaN.
    """
    n_cyc = observations.shape[0]
    analyser = FilterAnalyser(filter_config, grid=grid, generator=generator, adaptive=adaptive)
    traj = _Trajectory(n_cyc, view, ensemble.device, lag_view, window)
    steps = cycle(
        ensemble,
        forecast=model_forecast(model, steps_per_cycle, dt),
        observations=array_observations(observations.to(device=ensemble.device, dtype=ensemble.dtype), operator),
        analyse=analyser,
        cycles=range(start, n_cyc),
    )
    with progress_bar(label, n_cyc - start, enabled=progress) as update:
        for step in steps:
            c = step.cycle
            traj.add(step, analyser.covariance_inflation)
            if traj.diverged < 0 and ((c - start) % CHECK_EVERY == CHECK_EVERY - 1 or c == n_cyc - 1):
                traj.flush(c, truth, threshold)
                update(c + 1 - start, "")
            if traj.diverged >= 0:
                break
    return traj.result()


def run_da(
    config: SurrogateConfig,
    data: TruthData,
    model: Model,
    iteration: int,
    previous: Tensor | None,
    *,
    progress: bool = False,
    perfect: bool = False,
) -> CycleResult:
    """One DA run with ``model``.

    Returns the `CycleResult`, with the rows before a surrogate's first analysis
    filled from ``previous`` and non-finite smoothed rows replaced by the filtered
    ones; ``window_mean`` (the analysed window of ``net.window`` past states at each
    cycle) only with ``config.train_target == "observation"``.

    With ``config.smoother_lag > 0`` the imperfect model runs on a delay-embedded
    state (`DelayEmbedded`), so the filter is also a fixed-lag smoother; a
    surrogate's window gives the same for free (lag ``min(window - 1, smoother_lag)``).

    A plain model starts from ``N(truth_0, initial_std^2)`` members at time 0. A
    window-``w`` surrogate starts at cycle ``w`` from the previous analysis
    trajectory's first ``w`` rows plus ``N(0, initial_std^2)`` noise per member;
    those rows are copied into the result (they lie in the burn-in).
    """
    start_ens = _start(config, data, model, iteration, previous, perfect)
    res = assimilate(
        start_ens.model,
        start_ens.ensemble,
        data.observations,
        view_operator(start_ens.model.n_state, start_ens.view, data.obs_indices, _std(config)),
        start_ens.filter,
        view=start_ens.view,
        steps_per_cycle=start_ens.steps,
        dt=start_ens.dt,
        start=start_ens.cycle,
        grid=Grid.ring(start_ens.model.n_state) if config.imperfect.name == "lorenz96" else None,
        generator=start_ens.generator,
        threshold=DIVERGENCE_FACTOR * data.clim_std,
        truth=data.truth[:, : config.n_var],
        progress=progress,
        label="DA perfect" if perfect else f"DA iter {iteration}",
        lag_view=start_ens.lag_view,
        window=start_ens.window,
        adaptive=config.adaptive_inflation,
    )
    _fill_start(config, res, start_ens.cycle, previous)
    return res


@dataclass(frozen=True)
class _Start:
    """How one DA run starts: the model it cycles (maybe delay-embedded), its ensemble, view and clock."""

    model: Model
    ensemble: Tensor
    view: Tensor
    cycle: int
    steps: int
    dt: float
    lag_view: Tensor | None
    filter: Any
    generator: torch.Generator
    window: int


def _start(
    config: SurrogateConfig, data: TruthData, model: Model, iteration: int, previous: Tensor | None, perfect: bool
) -> _Start:
    """The model, initial ensemble ``(members, n_state)``, view and clock of one DA run (see `run_da`)."""
    gen = torch_generator(config.seed, 2, iteration)
    k, n_var = config.members, config.n_var
    truth_mod = data.truth[:, :n_var]
    by_obs = config.train_target == "observation" and not perfect
    smoother = (config.smoother_lag > 0 or by_obs) and not perfect
    n_win = config.net.window if by_obs else 0
    if isinstance(model, SurrogateNet):
        assert previous is not None
        w = model.window
        noise = config.initial_std * torch.randn((k, w, n_var), generator=gen, dtype=torch.float64)
        lag_view = torch.arange(n_var) + (w - 1 - min(w - 1, config.smoother_lag)) * n_var
        ens = model.embed(previous[:w][None] + noise)
        return _Start(model, ens, model.view, w, 1, config.step, lag_view, config.filter_for_surrogate, gen, n_win)
    if smoother:
        w = max(config.smoother_lag + 1, n_win)
        embedded = DelayEmbedded(model, w, config.obs_every)
        x0 = truth_mod[0] + config.initial_std * torch.randn((k, n_var), generator=gen, dtype=torch.float64)
        lag_view = torch.arange(n_var) + (w - 1 - config.smoother_lag) * n_var
        return _Start(embedded, x0.repeat(1, w), embedded.view, 0, 1, config.step, lag_view, config.filter, gen, n_win)
    x0 = data.truth[0] if perfect else truth_mod[0]
    ens = x0 + config.initial_std * torch.randn((k, model.n_state), generator=gen, dtype=torch.float64)
    filt = (config.perfect_filter or config.filter) if perfect else config.filter
    return _Start(model, ens, torch.arange(n_var), 0, config.obs_every, config.dt, None, filt, gen, n_win)


def _fill_start(config: SurrogateConfig, res: CycleResult, start: int, previous: Tensor | None) -> None:
    """Rows before a surrogate's first analysis: the previous analyses; non-finite smoothed rows: the filtered ones."""
    mean, spread, smooth = res.analysis_mean, res.analysis_spread, res.smoothed_mean
    if start and previous is not None:
        mean[:start] = previous[:start]
        spread[:start] = config.initial_std
    bad = ~torch.isfinite(smooth).all(-1)
    smooth[bad] = mean[bad]
    if res.window_mean is not None and start and previous is not None:
        n_win = res.window_mean.shape[1] // config.n_var
        win = res.window_mean.view(-1, n_win, config.n_var)
        for c in range(start):  # the window before the first analysis: previous analyses
            lo = max(0, c + 1 - n_win)
            win[c, n_win - (c + 1 - lo) :] = previous[lo : c + 1]


def _std(config: SurrogateConfig) -> float | Tensor:
    e = config.obs.error_std
    return torch.tensor(e, dtype=torch.float64) if isinstance(e, tuple) and len(e) > 1 else float(np.ravel(e)[0])


__all__ = ["CHECK_EVERY", "DIVERGENCE_FACTOR", "CycleResult", "assimilate", "run_da", "view_operator"]
