"""DA runs of the surrogate cycle on the shared engine, and free forecasts from true states.

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

import torch
from torch import Tensor

from dacast.da import AdaptiveInflation, FilterConfig
from dacast.models import Model, advance
from dacast.obs import Grid, IndexObs, subset
from dacast.verify import rmse
from dacast.workflow.cycle import CycleStep, FilterAnalyser, array_observations, cycle, model_forecast
from dacast.workflow.runtime import progress as progress_bar

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


@dataclass(frozen=True, eq=False)
class DelayEmbedded:
    """A physical model run on a delay-embedded state (the same layout as an LSTM surrogate's).

    The state ``(*batch, window * n_var)`` holds the last ``window`` states,
    oldest first; ``step`` advances the newest by ``steps`` steps of ``dt / steps``
    with ``model`` and shifts the window. Filtering this state is a fixed-lag
    smoother of lag ``window - 1`` for the physical model.
    """

    model: Model
    window: int
    steps: int = 1

    @property
    def n_var(self) -> int:
        """Variables per slot."""
        return self.model.n_state

    @property
    def n_state(self) -> int:  # type: ignore[override]
        """``window * n_var``."""
        return self.window * self.model.n_state

    @property
    def view(self) -> Tensor:
        """Indices of the newest slot, shape ``(n_var,)``."""
        return torch.arange(self.n_state - self.n_var, self.n_state)

    def step(self, x: Tensor, t: float, dt: float) -> Tensor:
        """Advance the newest slot by ``dt`` (in ``steps`` sub-steps) and shift the window."""
        hist = x.reshape(*x.shape[:-1], self.window, self.n_var)
        new = advance(self.model, hist[..., -1, :], self.steps, dt / self.steps, t0=t)
        return torch.cat((hist[..., 1:, :], new[..., None, :]), dim=-2).reshape(x.shape)


def free_forecasts(model: Model, initial: Tensor, n_leads: int, *, steps_per_lead: int, dt: float) -> Tensor:
    """Free forecasts from a batch of initial states.

    Args:
        model: forecast model.
        initial: shape ``(starts, model.n_state)``.
        n_leads: number of leads (each ``steps_per_lead`` model steps of ``dt``).

    Returns:
        States at leads ``1..n_leads``, shape ``(n_leads, starts, model.n_state)``.
    """
    out = []
    x = initial
    with torch.no_grad():
        for lead in range(n_leads):
            x = advance(model, x, steps_per_lead, dt, t0=lead * steps_per_lead * dt)
            out.append(x)
    return torch.stack(out)


__all__ = ["CHECK_EVERY", "CycleResult", "DelayEmbedded", "assimilate", "free_forecasts", "view_operator"]
