"""The forecast/analysis cycle for any `Model`, and forecast verification against a truth run.

`assimilate` is the cycle of `dacast.workflow.run_twin` with the truth and the
observations given from outside, so the forecast model can differ from the
truth (imperfect model, trained surrogate) and its state can differ in size
(a delay-embedded LSTM state, the 5-variable truth vs a 3-variable model).

A model's *physical view* (``view``) says which entries of its state are the
modelled variables ``(n_var,)``: ``arange(n_var)`` for a plain model, the
newest slot ``arange((w-1) n_var, w n_var)`` for a window-``w`` surrogate.
Observations are taken of that view, and RMSE is computed on it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch import Tensor

from dacast.da import (
    AdaptiveInflation,
    EnKFConfig,
    ETKFConfig,
    FilterConfig,
    LETKFConfig,
    analyse,
    innovation_inflation,
    local_neighbours,
    whiten,
)
from dacast.models import Model
from dacast.obs import Grid, IndexObs, subset


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
    """Cycle ``model`` through observations ``observations[start:]``.

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
    n_var = int(view.numel())
    dtype, device = ensemble.dtype, ensemble.device
    nan = float("nan")
    a_mean = torch.full((n_cyc, n_var), nan, dtype=torch.float64)
    a_spread = torch.full((n_cyc, n_var), nan, dtype=torch.float64)
    f_mean = torch.full((n_cyc, n_var), nan, dtype=torch.float64)
    local = None
    if isinstance(filter_config, LETKFConfig):
        if grid is None:
            raise ValueError("the LETKF needs a grid")
        local = local_neighbours(grid, operator, filter_config.localization)
    obs_d = observations.to(device=device, dtype=dtype)
    view_d = view.to(device)
    ens = ensemble
    diverged = -1
    t = start * steps_per_cycle * dt
    a_means: list[Tensor] = []
    lag = 0 if lag_view is None else int(view[0] - lag_view[0]) // n_var
    smooth = torch.full((n_cyc, n_var), nan, dtype=torch.float64)
    lag_d = None if lag_view is None else lag_view.to(device)
    n_state = ensemble.shape[-1]
    win_mean = torch.full((n_cyc, window * n_var), nan, dtype=torch.float64) if window else None
    infl = torch.full((n_cyc,), nan, dtype=torch.float64)
    inflated = isinstance(filter_config, (EnKFConfig, ETKFConfig, LETKFConfig))
    if adaptive is not None and not inflated:
        raise ValueError(f"adaptive inflation needs an inflating filter, got {type(filter_config).__name__}")
    lam = filter_config.inflation**2 if inflated else 1.0  # type: ignore[union-attr]
    with _progress(progress, label) as bar:
        task = bar.add_task("", total=n_cyc - start)
        for c in range(start, n_cyc):
            for _ in range(steps_per_cycle):
                ens = model.step(ens, t, dt)
                t += dt
            f_mean[c] = ens[:, view_d].mean(0).double().cpu()
            config_c = filter_config
            if adaptive is not None:
                y_anom, d, _ = whiten(ens, obs_d[c], operator)
                lam = adaptive.update(lam, innovation_inflation(y_anom, d))
                config_c = dataclasses.replace(filter_config, inflation=math.sqrt(lam))  # type: ignore[type-var]
            infl[c] = lam
            try:
                result = analyse(config_c, ens, obs_d[c], operator, grid=grid, local=local, generator=generator)
            except torch.linalg.LinAlgError:
                diverged = c
                break
            ens = result.ensemble
            a_means.append(result.mean[view_d])
            if lag_d is not None and c - lag >= 0:
                smooth[c - lag] = result.mean[lag_d].double().cpu()
            if win_mean is not None:
                win_mean[c] = result.mean[n_state - window * n_var :].double().cpu()
            a_spread[c] = result.spread[view_d].double().cpu()
            if (c - start) % 200 == 199 or c == n_cyc - 1:
                chunk = torch.stack(a_means).double().cpu()
                a_mean[c + 1 - len(a_means) : c + 1] = chunk
                a_means = []
                bad = ~torch.isfinite(chunk).all(-1)
                if truth is not None:
                    err = (chunk - truth[c + 1 - len(chunk) : c + 1]).pow(2).mean(-1).sqrt()
                    bad |= err > threshold
                if bool(bad.any()):
                    diverged = c + 1 - len(chunk) + int(torch.nonzero(bad)[0])
                    break
                bar.update(task, completed=c + 1 - start)
    if lag_d is None:
        smooth = a_mean.clone()
    else:
        smooth[n_cyc - lag :] = a_mean[n_cyc - lag :]
    if diverged >= 0:
        for tensor in (a_mean, a_spread, f_mean, smooth, win_mean, infl):
            if tensor is not None:
                tensor[diverged + 1 :] = nan
    return CycleResult(a_mean, a_spread, f_mean, diverged, smooth, win_mean, infl)


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
        new = hist[..., -1, :]
        h = dt / self.steps
        for i in range(self.steps):
            new = self.model.step(new, t + i * h, h)
        return torch.cat((hist[..., 1:, :], new[..., None, :]), dim=-2).reshape(x.shape)


@contextmanager
def cpu_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch CPU threads (``None``: unchanged), then restore the old count.

    The cycle's tensors are tiny (tens of members by a few dozen variables);
    on a shared CPU one thread is much faster than several (no thread hand-off).
    """
    old = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _progress(enabled: bool, label: str) -> Progress:
    return Progress(
        TextColumn(f"[bold]{label}[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        disable=not enabled,
    )


def time_mean_rmse(estimate: Tensor, truth: Tensor, skip: int) -> float:
    """``mean_t sqrt(mean_var (estimate - truth)**2)`` over rows ``skip:``; NaN if any row is NaN."""
    err = (estimate[skip:] - truth[skip:]).pow(2).mean(-1).sqrt()
    return float(err.mean())


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
    t = 0.0
    with torch.no_grad():
        for _ in range(n_leads):
            for _ in range(steps_per_lead):
                x = model.step(x, t, dt)
                t += dt
            out.append(x)
    return torch.stack(out)


def valid_time(normalized_rmse: np.ndarray, lead_time: float, threshold: float = 0.5) -> float:
    """Time until ``normalized_rmse`` (one value per lead ``1, 2, ...``) first exceeds ``threshold``.

    Returns ``n_leads * lead_time`` when it never does (a lower bound).
    """
    above = np.nonzero(~(normalized_rmse <= threshold))[0]
    return float((above[0] if above.size else normalized_rmse.size) * lead_time)


__all__ = [
    "CycleResult",
    "DelayEmbedded",
    "assimilate",
    "cpu_threads",
    "free_forecasts",
    "time_mean_rmse",
    "valid_time",
    "view_operator",
]
