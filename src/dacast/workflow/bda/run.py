"""The Big Data Assimilation twin on the cycle engine: radar volumes every 30 s, a gridded LETKF, forecasts.

One cycle (mission S4, after SCALE-LETKF's 30-second cycle), as `dacast.workflow.cycle.cycle` runs it:

1. the ensemble runs 30 s from the last analysis (each member its own noise; member
   chunks on Dask with a client);
2. the truth runs 30 s (its own triggering noise) and the radar scans it
   (reflectivity and Doppler velocity, superobbed to the grid): `RadarTwin`, the
   observation stream; in a radar outage it says so and there is no analysis;
3. H(x) of the prior, then the gridded LETKF (`GriddedAnalyser`, Dask tiles with a client);
4. this module records RMSE and spread against the truth, runs the free ensemble, and
   every ``forecast_every`` cycles a 30-minute forecast from the analysis
   (`dacast.workflow.bda.forecast.extended_forecast`).

A run restarted from its checkpoint continues exactly as if never interrupted.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
import xarray as xr
from torch import Tensor

from dacast.ml.grid_surrogate import NonFiniteForecast
from dacast.models import TriggeredWurschCraig, WurschCraig, advance
from dacast.obs.radar import RadarOperator, observe_radar
from dacast.verify import ensemble_spread, rmse
from dacast.workflow.bda.checkpoint import CHECKPOINT, TILED_CHECKPOINT, load_checkpoint, save_checkpoint
from dacast.workflow.bda.config import BDAConfig, BDAPreset
from dacast.workflow.bda.forecast import (
    CycleState,
    EnsembleModel,
    Forecaster,
    Seeds,
    extended_forecast,
    initial_state,
    obs_generator,
)
from dacast.workflow.bda.output import summarise, to_dataset
from dacast.workflow.bda.plots import make_bda_plots
from dacast.workflow.cycle import Analyser, CycleStep, GriddedAnalyser, Observation, cycle
from dacast.workflow.files import atomic_write, run_folder, write_json
from dacast.workflow.runtime import Say, quiet, resolve_device
from dacast.workflow.runtime import progress as progress_bar
from dacast.workflow.schema import ConfigError


class RadarTwin:
    """The observation stream of the twin: advances the truth to cycle ``c`` and scans it with the radar.

    Returns ``None`` (and says so) for the cycles in ``config.outage_cycles``;
    ``volume`` is the latest radar volume ``(y, operator)`` (persistence and plots use it).
    """

    def __init__(self, config: BDAConfig, model: WurschCraig, seeds: Seeds, state: CycleState, say: Say) -> None:
        self.config, self.seeds, self.state, self.say = config, seeds, state, say
        self.truth_model = TriggeredWurschCraig(model, seed=seeds.truth)  # the truth's own triggering noise
        self.volume: tuple[Tensor, RadarOperator] | None = None

    def __call__(self, c: int) -> Observation | None:
        """The radar volume valid at the end of cycle ``c`` (0-based), or ``None`` in an outage."""
        cfg, state = self.config, self.state
        start = c * cfg.steps_per_cycle
        state.truth = advance(self.truth_model, state.truth, cfg.steps_per_cycle, cfg.model.dt, t0=start * cfg.model.dt)
        if c in cfg.outage_cycles:
            self.say(f"cycle {c + 1}: no radar data (outage) - forecast only, no analysis")
            return None
        y, op = observe_radar(state.truth[0], cfg.model, cfg.radar, obs_generator(self.seeds.obs, c))
        self.volume = (y, op)
        return Observation(y=y, operator=op)


def _by_var(values: Tensor) -> list[float]:
    return values.double().cpu().tolist()


def _posterior_mean(step: CycleStep) -> Tensor:
    """Mean ``(4, ny, nx)`` of the ensemble the next cycle starts from, computed once (the analysis caches it)."""
    return step.prior.mean(0) if step.analysis is None else step.analysis.mean


def _record(config: BDAConfig, step: CycleStep, state: CycleState) -> dict:
    """Per-cycle diagnostics of ``step`` against the truth in ``state`` (after the free run's forecast)."""
    truth, prior, posterior = state.truth[0], step.prior, step.posterior
    op = None if step.observation is None else step.observation.operator
    dims = (-2, -1)
    record = {
        "cycle": step.cycle + 1,
        "time_s": (step.cycle + 1) * config.cycle_seconds,
        "outage": step.observation is None,
        "n_obs_dbz": 0 if op is None else op.n_dbz,
        "n_obs_vr": 0 if op is None else op.n_vr,
        "rmse_forecast": _by_var(rmse(prior.mean(0), truth, dims)),
        "rmse_analysis": _by_var(rmse(_posterior_mean(step), truth, dims)),
        "rmse_free_run": _by_var(rmse(state.free.mean(0), truth, dims)),
        "spread_forecast": _by_var(ensemble_spread(prior, dims)),
        "spread_analysis": _by_var(ensemble_spread(posterior, dims)),
        "seconds_forecast": step.seconds["forecast"],
        # Simulating the radar volume is the twin's stand-in for receiving it and
        # is not part of the cycle: the stage time is H(x) of the ensemble.
        "seconds_observation": step.seconds["observation"],
        "seconds_letkf": step.seconds["analysis"],
    }
    record["seconds_cycle"] = record["seconds_forecast"] + record["seconds_observation"] + record["seconds_letkf"]
    return record


def run_cycles(
    config: BDAConfig,
    *,
    state: CycleState | None = None,
    client: object | None = None,
    on_cycle: Callable[[CycleState], None] | None = None,
    say: Say = quiet,
    ensemble_model: EnsembleModel | None = None,
    analyser: Analyser | None = None,
) -> CycleState:
    """Cycle from ``state`` (or from the spun-up initial state) to ``config.cycles``.

    Args:
        config: run settings.
        state: a state loaded from a checkpoint; None starts afresh.
        client: optional ``dask.distributed.Client`` (member-chunk forecasts, LETKF tiles).
        on_cycle: called after every completed cycle (progress, checkpoints).
        say: receives one-line notes (radar outages).
        ensemble_model: what runs the ensemble, the free run and the forecasts (an imperfect
            physics model, a learned surrogate); None: the truth's model. The truth and the
            initial ensemble always come from ``config.model``. A surrogate's non-finite output
            (`NonFiniteForecast`) ends the run like a diverged filter, naming the cycle.
        analyser: what makes the analysis (a diffusion filter, ...); None: the gridded LETKF of
            ``config.letkf`` (on Dask tiles with a client). Its failure (`AnalysisFailed`) ends the run.

    Returns:
        The final `CycleState`.
    """
    device = resolve_device(config.device)
    model = WurschCraig(config.model)
    seeds = Seeds.of(config.seed)
    if state is None:
        state = initial_state(config, model, Forecaster(model, client), device)
    state.truth, state.ensemble, state.free = (t.to(device) for t in (state.truth, state.ensemble, state.free))
    forecaster = Forecaster(ensemble_model or model, client)
    spc = config.steps_per_cycle
    radar = RadarTwin(config, model, seeds, state, say)

    def forecast(ensemble: Tensor, c: int) -> Tensor:
        return forecaster(ensemble, config.cycle_seconds, seed=seeds.pool, start_step=c * spc)

    steps = cycle(
        state.ensemble,
        forecast=forecast,
        observations=radar,
        analyse=analyser or GriddedAnalyser(config.letkf, config.dx_km, client),
        cycles=range(state.cycle, config.cycles),
        precompute_hx=True,
    )
    try:
        record_cycles(config, steps, state, model, forecaster, radar, seeds, on_cycle, say)
    except NonFiniteForecast as err:
        state.diverged_cycle, state.diverged_reason = state.cycle + 1, str(err)
        say(f"cycle {state.cycle + 1}: {err}; the run stops after {state.cycle} cycles")
    return state


def record_cycles(
    config: BDAConfig,
    steps: Iterable[CycleStep],
    state: CycleState,
    model: WurschCraig,
    forecaster: Forecaster,
    radar: RadarTwin,
    seeds: Seeds,
    on_cycle: Callable[[CycleState], None] | None,
    say: Say,
) -> None:
    """Record every step of the cycle into ``state``: scores, free run, extended forecasts; stop at divergence."""
    spc = config.steps_per_cycle
    for step in steps:
        c = step.cycle
        reason = divergence_reason(step)
        if reason:
            state.diverged_cycle, state.diverged_reason = c + 1, reason
            say(f"cycle {c + 1}: the filter diverged ({reason}); the run stops after {c} cycles")
            break
        state.free = forecaster(state.free, config.cycle_seconds, seed=seeds.pool, start_step=c * spc)
        state.ensemble = posterior = step.posterior
        state.records.append(_record(config, step, state))
        spread = posterior.std(0) if step.analysis is None else step.analysis.spread
        state.fields.append(
            (state.truth[0].float().cpu(), _posterior_mean(step).float().cpu(), spread.float().cpu())  # type: ignore[arg-type]
        )
        if config.forecast_due(c):
            state.forecasts.append(
                extended_forecast(config, model, forecaster, state, volume=radar.volume, cycle=c, seeds=seeds)
            )
        state.cycle = c + 1
        if on_cycle is not None:
            on_cycle(state)
        del step, posterior  # not held through the next cycle's forecast and analysis


def divergence_reason(step: CycleStep) -> str:
    """Why the analysis of ``step`` cannot be cycled on (empty when it can): a failure or non-finite values."""
    if step.failure:
        return step.failure
    if step.analysis is not None and not bool(torch.isfinite(step.analysis.mean).all()):
        return "non-finite values in the analysis ensemble"
    if step.analysis is None and not bool(torch.isfinite(step.prior.mean(0)).all()):
        return "non-finite values in the forecast ensemble"
    return ""


@dataclass(frozen=True)
class BDAResult:
    """What `run_bda_experiment` produced (``dataset`` is ``None`` when the filter diverged in the first cycle)."""

    summary: dict
    dataset: xr.Dataset | None
    out_dir: Path
    plots: tuple[Path, ...]


def run_bda_experiment(
    config: BDAConfig,
    out_dir: str | Path,
    *,
    preset: BDAPreset | None = None,
    resume: bool = False,
    client: object | None = None,
    progress: bool = True,
    plots: bool = True,
    say: Say = quiet,
    ensemble_model: EnsembleModel | None = None,
    tiles: tuple[int, int] | None = None,
) -> BDAResult:
    """Run (or resume) the twin; write checkpoint, ``cycles.nc``, ``summary.json`` and plots to ``out_dir``.

    Args:
        config: run settings.
        out_dir: output directory (created).
        preset: the preset ``config`` came from, recorded in the summary.
        resume: continue from ``out_dir/checkpoint.pt`` (`ConfigError` when absent or of other settings).
        client: optional ``dask.distributed.Client``.
        progress: show a Rich progress bar.
        plots: write PNG figures.
        say: receives one-line notes (outages, resume point).
        ensemble_model: what runs the ensemble (see `run_cycles`); None: the truth's model.
        tiles: keep the ensemble as ``tiles[0] x tiles[1]`` spatial tiles on the workers of ``client``
            (`dacast.workflow.bda.tiled_run`); None: in this process.
    """
    if tiles is not None and (client is None or ensemble_model is not None):
        raise ConfigError("a tiled run needs a Dask client and the physics model")
    with run_folder(out_dir, resume=resume, keep=(CHECKPOINT, TILED_CHECKPOINT)) as out:
        state, wall = _cycle_with_checkpoints(
            config,
            out,
            resume=resume,
            client=client,
            progress=progress,
            say=say,
            ensemble_model=ensemble_model,
            tiles=tiles,
        )
        summary = _summary(state, config, wall)
        if preset is not None:
            summary["preset"] = preset.name
        if tiles is not None:
            summary["tiles"] = list(tiles)
        ds = to_dataset(state, config) if state.records else None
        if ds is not None:
            atomic_write(out / "cycles.nc", ds.to_netcdf)
        figures: tuple[Path, ...] = ()
        if plots and ds is not None:
            figures = make_bda_plots(ds, state.forecasts, out)
        write_json(out / "summary.json", summary)  # last: a folder with a summary is a finished run
    return BDAResult(summary=summary, dataset=ds, out_dir=out, plots=figures)


def _cycle_with_checkpoints(
    config: BDAConfig,
    out: Path,
    *,
    resume: bool,
    client: object | None,
    progress: bool,
    say: Say,
    ensemble_model: EnsembleModel | None = None,
    tiles: tuple[int, int] | None = None,
) -> tuple[CycleState, float]:
    """Run (or resume) the cycles, checkpointing every ``checkpoint_every`` cycles; the state and wall time (s)."""
    from dacast.workflow.bda import tiled_run as tiled  # it builds on this module's cycle pieces

    ckpt = out / CHECKPOINT
    save: Callable[[CycleState], object] = partial(save_checkpoint, config=config, path=ckpt)
    run = partial(run_cycles, client=client, ensemble_model=ensemble_model)
    if tiles is not None:
        save = partial(tiled.save_tiled_checkpoint, config=config, tiles=tiles, out=out)
        run = partial(tiled.run_tiled_cycles, client=client, tiles=tiles)
    state = None
    if resume:
        if tiles is None:
            state = load_checkpoint(ckpt, config)
        else:
            state = tiled.load_tiled_checkpoint(out, config, tiles, client)
        say(f"resuming after cycle {state.cycle} of {config.cycles}")
    wall0 = time.perf_counter()
    with progress_bar("cycles", config.cycles, enabled=progress, completed=state.cycle if state else 0) as update:

        def on_cycle(s: CycleState) -> None:
            h, r = s.records[-1]["rmse_analysis"][2:]
            update(s.cycle, f"rmse.a h={h:.3g} r={r:.3g}  {s.records[-1]['seconds_cycle']:.2f} s")
            if s.cycle % config.checkpoint_every == 0 or s.cycle == config.cycles:
                save(s)

        state = run(config, state=state, on_cycle=on_cycle, say=say)
    return state, time.perf_counter() - wall0


def _summary(state: CycleState, config: BDAConfig, wall: float) -> dict:
    """``summary.json``: `summarise` of the completed cycles, and whether (where, why) the filter diverged."""
    device = str(resolve_device(config.device))
    if state.records:
        summary = summarise(state, config, wall, device)
    else:  # diverged in the first cycle: nothing to average
        summary = {"members": config.members, "grid": [config.grid, config.grid], "cycles": 0, "device": device}
        summary["wall_time_s"] = wall
    summary["diverged"] = state.diverged_cycle > 0
    summary["diverged_cycle"] = state.diverged_cycle or None
    summary["diverged_reason"] = state.diverged_reason or None
    return summary


__all__ = ["BDAResult", "RadarTwin", "divergence_reason", "record_cycles", "run_bda_experiment", "run_cycles"]
