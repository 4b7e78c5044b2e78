"""The twin experiment: truth run, synthetic observations, the cycle, and files on disk.

`run_twin` is DAPPER's ``HMM.simulate`` followed by ``xp.assimilate`` for one
method, batched over members (and, in the LETKF, over grid points). It never
raises on a diverging filter: the run stops, is flagged ``diverged`` and the
remaining analysis times hold NaN.

Randomness comes from three `torch.Generator`s spawned from ``config.seed``
(`numpy.random.SeedSequence`): initial states, observation noise and filter
perturbations. The truth and the observations are computed on the CPU in
float64, so they are identical for every filter, ensemble size, device and
dtype that share a seed.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch import Tensor

from dacast.models import Model, advance
from dacast.obs import observe
from dacast.verify import rms, rmse
from dacast.workflow.cycle import CycleStep, FilterAnalyser, array_observations, cycle, model_forecast
from dacast.workflow.files import run_folder
from dacast.workflow.runtime import progress as progress_bar
from dacast.workflow.runtime import resolve_device, spawn_seeds
from dacast.workflow.twin.config import (
    TwinConfig,
    build_model,
    build_operator,
    default_divergence_threshold,
    model_grid,
)
from dacast.workflow.twin.output import OutputPaths, attach_preset, twin_dataset, write_results
from dacast.workflow.twin.plots import make_plots
from dacast.workflow.twin.presets import Preset


def generators(seed: int) -> tuple[torch.Generator, torch.Generator, torch.Generator]:
    """Independent CPU generators ``(initial, observations, filter)`` spawned from ``seed``."""
    states = spawn_seeds(seed, n=3)
    return tuple(torch.Generator().manual_seed(s & 0x7FFF_FFFF_FFFF_FFFF) for s in states)  # type: ignore[return-value]


def initial_states(config: TwinConfig, model: Model, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Truth and ensemble drawn from ``N(mean, initial_std**2 I)`` (DAPPER's ``X0``).

    Returns:
        ``(truth0, ensemble0)`` of shapes ``(n_state,)`` and ``(members, n_state)``, CPU float64.
    """
    if config.initial_mean is not None:
        mean = torch.tensor(config.initial_mean, dtype=torch.float64)
    else:
        mean = model.default_initial_state(dtype=torch.float64)  # type: ignore[attr-defined]
    n = config.n_state
    truth0 = mean + config.initial_std * torch.randn(n, generator=generator, dtype=torch.float64)
    ens0 = mean + config.initial_std * torch.randn((config.members, n), generator=generator, dtype=torch.float64)
    return truth0, ens0


def simulate_truth(config: TwinConfig, model: Model, truth0: Tensor) -> Tensor:
    """The true state at every analysis time, shape ``(cycles, n_state)`` (CPU float64).

    The truth is integrated ``obs_every`` steps of ``dt`` between analyses; the
    initial state (time 0) is not an analysis time.
    """
    out = torch.empty((config.cycles, config.n_state), dtype=torch.float64)
    x = truth0
    for c in range(config.cycles):
        x = advance(model, x, config.obs_every, config.dt, t0=c * config.obs_every * config.dt)
        out[c] = x
    return out


#: An analysis spread below this fraction of the analysis RMSE is a collapsed ensemble (a healthy filter
#: keeps the two within a factor of a few); it is flagged as divergence, since no later analysis can recover.
COLLAPSE_RATIO = 1e-3


class _Record:
    """The per-cycle arrays of a twin run, filled from the engine's steps (NaN where no step reached)."""

    def __init__(self, config: TwinConfig, n_obs: int, dtype: torch.dtype, device: torch.device) -> None:
        n_cyc, n = config.cycles, config.n_state
        self.fields = {
            name: torch.full((n_cyc, n), math.nan, dtype=dtype, device=device)
            for name in ("forecast_mean", "forecast_spread", "analysis_mean", "analysis_spread")
        }
        self.innovation = torch.full((n_cyc, n_obs), math.nan, dtype=dtype, device=device)
        # rmse_f, rmse_a, spread_f, spread_a
        self.series = torch.full((n_cyc, 4), math.nan, dtype=torch.float64, device=device)
        self.diverged_cycle = -1
        self.reason = ""

    def add(self, step: CycleStep, truth: Tensor, threshold: float) -> float:
        """Record ``step`` against the truth ``(n_state,)``; returns the analysis RMSE; flags divergence."""
        c = step.cycle
        f_mean = self.fields["forecast_mean"][c] = step.prior.mean(0)
        f_spread = self.fields["forecast_spread"][c] = step.prior.std(0)
        if step.analysis is None:
            self.diverged_cycle, self.reason = c, step.failure
            self.series[c, 0] = rmse(f_mean, truth)
            return math.nan
        result = step.analysis
        self.fields["analysis_mean"][c] = result.mean
        self.fields["analysis_spread"][c] = result.spread
        self.innovation[c] = result.innovation
        stats = torch.stack((rmse(f_mean, truth), rmse(result.mean, truth), rms(f_spread), rms(result.spread)))
        self.series[c] = stats.double()
        rmse_f, rmse_a, _, spread_a = self.series[c].tolist()  # the one device sync per cycle
        if not (np.isfinite(rmse_f) and np.isfinite(rmse_a) and bool(torch.isfinite(result.ensemble).all())):
            self.diverged_cycle, self.reason = c, "non-finite values in the ensemble or the truth"
        elif (worst := max(rmse_f, rmse_a)) > threshold:
            self.diverged_cycle, self.reason = c, f"RMSE {worst:.3g} exceeds the threshold {threshold:.3g}"
        elif spread_a < COLLAPSE_RATIO * rmse_a:
            self.diverged_cycle = c
            self.reason = f"the ensemble collapsed: spread {spread_a:.2g} < {COLLAPSE_RATIO:g} x RMSE {rmse_a:.3g}"
        return rmse_a

    def close(self) -> None:
        """Rows after a divergence stay NaN; the failing row keeps what was computed."""
        if self.diverged_cycle >= 0:
            for tensor in (*self.fields.values(), self.innovation):
                tensor[self.diverged_cycle + 1 :] = math.nan


def run_twin(config: TwinConfig, *, progress: bool = True) -> xr.Dataset:
    """Run one twin experiment and return every result as an `xarray.Dataset`.

    Args:
        config: the experiment.
        progress: show a Rich progress bar over the cycles.

    Returns:
        Dataset with dimensions ``time`` (analysis times, ``cycles``), ``state``
        and ``obs``: ``truth``, ``observations``, ``forecast_mean``,
        ``forecast_spread``, ``analysis_mean``, ``analysis_spread`` (time, state),
        ``innovation`` (time, obs), and the time series ``rmse_forecast``,
        ``rmse_analysis``, ``spread_forecast``, ``spread_analysis`` (time).
        RMSE is ``sqrt(mean_state((ensemble mean - truth)**2))``; spread is
        ``sqrt(mean_state(ensemble variance, ddof=1))`` (DAPPER's ``rmv``).
        The settings, divergence flag, wall time and provenance are attributes.

    Raises:
        ConfigError: only for a device that is not available.
    """
    start = time.perf_counter()
    device = resolve_device(config.device)
    dtype = getattr(torch, config.dtype)
    model = build_model(config.model)
    operator = build_operator(config)
    gen_init, gen_obs, gen_filter = generators(config.seed)
    threshold = config.divergence_threshold or default_divergence_threshold(config.model)

    truth0, ens0 = initial_states(config, model, gen_init)
    truth = simulate_truth(config, model, truth0)
    obs = observe(truth, operator, gen_obs)
    truth_d = truth.to(device=device, dtype=dtype)
    record = _Record(config, operator.n_obs, dtype, device)
    steps = cycle(
        ens0.to(device=device, dtype=dtype),
        forecast=model_forecast(model, config.obs_every, config.dt),
        observations=array_observations(obs.to(device=device, dtype=dtype), operator),
        analyse=FilterAnalyser(config.filter, grid=model_grid(config.model), generator=gen_filter),
        cycles=range(config.cycles),
    )
    with progress_bar("cycling", config.cycles, enabled=progress) as update:
        for step in steps:
            rmse_a = record.add(step, truth_d[step.cycle], threshold)
            update(step.cycle + 1, f"rmse.a {rmse_a:.3g}")
            if record.diverged_cycle >= 0:
                break
    record.close()
    wall = time.perf_counter() - start
    return twin_dataset(
        config,
        operator,
        truth,
        obs,
        record.fields,
        record.innovation,
        record.series,
        threshold=threshold,
        diverged_cycle=record.diverged_cycle,
        reason=record.reason,
        wall=wall,
        device=device,
    )


@dataclass(frozen=True, kw_only=True)
class ExperimentResult:
    """What `run_experiment` produced.

    Attributes:
        dataset: the results (see `run_twin`), with preset attributes when given.
        summary: the content of ``summary.json``.
        paths: the files written.
        total_time_s: wall time including writing and plotting (seconds).
    """

    dataset: xr.Dataset
    summary: dict[str, Any]
    paths: OutputPaths
    total_time_s: float


def run_experiment(
    config: TwinConfig,
    out_dir: str | Path,
    *,
    preset: Preset | None = None,
    progress: bool = True,
    plots: bool = True,
) -> ExperimentResult:
    """Run ``config``, then write ``results.nc``, ``summary.json`` and the PNG plots into ``out_dir``.

    Args:
        config: the experiment.
        out_dir: output directory (created if needed; existing files are replaced).
        preset: the preset the run came from; adds its expected RMSE and source.
        progress: show a progress bar over the cycles.
        plots: write the PNG figures.
    """
    start = time.perf_counter()
    ds = attach_preset(run_twin(config, progress=progress), preset)
    with run_folder(out_dir):
        figures = make_plots(ds, out_dir) if plots else ()
        results, summary_path, summary = write_results(ds, out_dir)
    paths = OutputPaths(directory=Path(out_dir), results=results, summary=summary_path, plots=figures)
    return ExperimentResult(dataset=ds, summary=summary, paths=paths, total_time_s=time.perf_counter() - start)


__all__ = ["ExperimentResult", "generators", "initial_states", "run_experiment", "run_twin", "simulate_truth"]
