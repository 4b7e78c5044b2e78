"""`run_bda_experiment`: the 30-second cycle with checkpoints, netCDF, summary.json and plots.

Files written to the output directory:

* ``checkpoint.pt``: the state after the last completed checkpoint cycle
  (written atomically; ``resume=True`` continues from it);
* ``cycles.nc``: per-cycle RMSE and spread per variable (analysis, forecast,
  free run), observation counts, stage times, and the truth, analysis-mean and
  analysis-spread fields; extended-forecast threat scores by lead;
* ``summary.json``: ``rmse_analysis``, ``rmse_free_run``, ``threat_score_30dbz``,
  ``cycle_seconds`` (by stage), ``members``, ``grid`` and more;
* ``*.png``: RMSE/spread per cycle, threat score by lead, probability maps.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
import xarray as xr
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

import dacast
from dacast.workflow.bda.cycle import STAGES, VARS, CycleState, run_cycles, threat_scores
from dacast.workflow.bda.config import BDAConfig, BDAPreset, bda_config_to_dict
from dacast.workflow.twin.config import ConfigError, resolve_device

CHECKPOINT = "checkpoint.pt"


@dataclass(frozen=True)
class BDAResult:
    """What `run_bda_experiment` produced."""

    summary: dict
    dataset: xr.Dataset
    out_dir: Path
    plots: tuple[Path, ...]


@contextlib.contextmanager
def dask_client(scheduler: str | None = None, workers: int = 2) -> Iterator[object]:
    """A ``dask.distributed.Client``: to ``scheduler`` when given, else on a new LocalCluster of ``workers``.

    The LocalCluster (one thread per worker process) is closed on exit.
    """
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError as err:  # pragma: no cover - dask is a dependency
        raise ConfigError(f"--dask needs dask.distributed: {err}") from None
    if scheduler:
        try:
            client = Client(scheduler, timeout="10s")
        except (OSError, TimeoutError, ValueError) as err:
            raise ConfigError(f"cannot connect to the Dask scheduler at {scheduler}: {err}") from None
        try:
            yield client
        finally:
            client.close()
        return
    with (
        LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        yield client


def save_checkpoint(state: CycleState, config: BDAConfig, path: Path) -> None:
    """Write ``state`` atomically (temporary file, then rename)."""
    tmp = path.with_suffix(".tmp")
    torch.save(
        {
            "config": bda_config_to_dict(config),
            "cycle": state.cycle,
            "truth": state.truth.cpu(),
            "ensemble": state.ensemble.cpu(),
            "free": state.free.cpu(),
            "records": state.records,
            "forecasts": state.forecasts,
            "fields": state.fields,
        },
        tmp,
    )
    os.replace(tmp, path)


def load_checkpoint(path: Path, config: BDAConfig) -> CycleState:
    """The state in ``path``; `ConfigError` when it belongs to other settings."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=False)
    except (OSError, RuntimeError, EOFError) as err:
        raise ConfigError(f"cannot read checkpoint {path}: {err}") from None
    saved, now = dict(data["config"]), bda_config_to_dict(config)
    # The number of cycles may grow on resume; everything else must match.
    saved.pop("cycles", None)
    now.pop("cycles", None)
    if saved != now:
        diff = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
        raise ConfigError(f"checkpoint {path} was written with other settings (differ: {', '.join(diff)})")
    return CycleState(
        cycle=int(data["cycle"]),
        truth=data["truth"],
        ensemble=data["ensemble"],
        free=data["free"],
        records=list(data["records"]),
        forecasts=list(data["forecasts"]),
        fields=list(data["fields"]),
    )


def to_dataset(state: CycleState, config: BDAConfig) -> xr.Dataset:
    """Per-cycle diagnostics and fields of ``state`` as an `xarray.Dataset`."""
    recs = state.records
    cycle = [r["cycle"] for r in recs]
    n = config.grid
    coords = {
        "cycle": cycle,
        "var": list(VARS),
        "y": np.arange(n) * config.dx_km,
        "x": np.arange(n) * config.dx_km,
    }
    data: dict[str, tuple] = {}
    for key in ("rmse_analysis", "rmse_forecast", "rmse_free_run", "spread_analysis", "spread_forecast"):
        data[key] = (("cycle", "var"), np.array([r[key] for r in recs], dtype=np.float64).reshape(len(recs), 4))
    for key in ("n_obs_dbz", "n_obs_vr"):
        data[key] = (("cycle",), np.array([r[key] for r in recs], dtype=np.int64))
    data["outage"] = (("cycle",), np.array([r["outage"] for r in recs], dtype=np.int8))
    for stage in (*STAGES, "cycle"):
        data[f"seconds_{stage}"] = (("cycle",), np.array([r[f"seconds_{stage}"] for r in recs]))
    if state.fields:
        for i, name in enumerate(("truth", "analysis_mean", "analysis_spread")):
            stack = torch.stack([f[i] for f in state.fields]).numpy()
            data[name] = (("cycle", "var", "y", "x"), stack)
    ts = threat_scores(state.forecasts)
    if ts:
        coords["lead"] = ts["lead_minutes"]
        for name in ("forecast", "persistence", "ensemble_prob"):
            data[f"threat_score_{name}"] = (("lead",), np.array(ts[name]))
    ds = xr.Dataset(data, coords=coords)
    ds["y"].attrs["units"] = ds["x"].attrs["units"] = "km"
    if "lead" in ds.coords:
        ds["lead"].attrs["units"] = "min"
    ds.attrs.update(
        title="dacast Big Data Assimilation twin",
        variables="u, v: m/s; h: m (fluid height); r: rain (dimensionless)",
        members=config.members,
        dacast_version=dacast.__version__,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        config=json.dumps(bda_config_to_dict(config)),
    )
    return ds


def _mean_by_var(recs: list[dict], key: str, skip: int) -> dict[str, float]:
    use = recs[skip:] or recs
    arr = np.array([r[key] for r in use], dtype=np.float64)
    return {v: float(x) for v, x in zip(VARS, arr.mean(0), strict=True)}


def summarise(state: CycleState, config: BDAConfig, wall: float, device: str) -> dict:
    """The ``summary.json`` content: time means over cycles after the first quarter (spin-up of the filter)."""
    recs = state.records
    skip = len(recs) // 4
    assimilated = [r for r in recs if not r["outage"]]
    stage = {s: float(np.mean([r[f"seconds_{s}"] for r in recs])) for s in STAGES}
    stage["total"] = float(np.mean([r["seconds_cycle"] for r in recs]))
    ts = threat_scores(state.forecasts)
    return {
        "members": config.members,
        "grid": [config.grid, config.grid],
        "dx_m": config.model.dx,
        "cycles": len(recs),
        "variables": list(VARS),
        "rmse_analysis": _mean_by_var(recs, "rmse_analysis", skip),
        "rmse_forecast": _mean_by_var(recs, "rmse_forecast", skip),
        "rmse_free_run": _mean_by_var(recs, "rmse_free_run", skip),
        "spread_analysis": _mean_by_var(recs, "spread_analysis", skip),
        "rmse_analysis_final": dict(zip(VARS, recs[-1]["rmse_analysis"], strict=True)),
        "rmse_free_run_final": dict(zip(VARS, recs[-1]["rmse_free_run"], strict=True)),
        "threat_score_30dbz": {
            "lead_minutes": ts.get("lead_minutes", []),
            "forecast": ts.get("forecast", []),
            "persistence": ts.get("persistence", []),
            "ensemble_probability": ts.get("ensemble_prob", []),
            "forecasts_pooled": len(state.forecasts),
        },
        "cycle_seconds": stage,
        "obs_per_cycle": {
            "dbz": float(np.mean([r["n_obs_dbz"] for r in assimilated])) if assimilated else 0.0,
            "vr": float(np.mean([r["n_obs_vr"] for r in assimilated])) if assimilated else 0.0,
        },
        "outage_cycles": [r["cycle"] for r in recs if r["outage"]],
        "weight_stride": config.letkf.weight_stride,
        "device": device,
        "dtype": config.dtype,
        "wall_time_s": wall,
        "dacast_version": dacast.__version__,
    }


def run_bda_experiment(
    config: BDAConfig,
    out_dir: str | Path,
    *,
    preset: BDAPreset | None = None,
    resume: bool = False,
    client: object | None = None,
    progress: bool = True,
    plots: bool = True,
    say: Callable[[str], None] = print,
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
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / CHECKPOINT
    state = None
    if resume:
        if not ckpt.is_file():
            raise ConfigError(f"nothing to resume: {ckpt} does not exist")
        state = load_checkpoint(ckpt, config)
        say(f"resuming after cycle {state.cycle} of {config.cycles}")
    device = resolve_device(config.device)
    wall0 = time.perf_counter()
    with _progress(progress, config.cycles, state.cycle if state else 0) as advance:

        def on_cycle(s: CycleState) -> None:
            advance(s)
            if s.cycle % config.checkpoint_every == 0 or s.cycle == config.cycles:
                save_checkpoint(s, config, ckpt)

        state = run_cycles(config, state=state, client=client, on_cycle=on_cycle, say=say)
    wall = time.perf_counter() - wall0
    ds = to_dataset(state, config)
    ds.to_netcdf(out / "cycles.nc")
    summary = summarise(state, config, wall, str(device))
    if preset is not None:
        summary["preset"] = preset.name
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    figures: tuple[Path, ...] = ()
    if plots:
        from dacast.workflow.bda.plots import make_bda_plots

        figures = make_bda_plots(ds, state.forecasts, out)
    return BDAResult(summary=summary, dataset=ds, out_dir=out, plots=figures)


@contextlib.contextmanager
def _progress(enabled: bool, total: int, done: int) -> Iterator[Callable[[CycleState], None]]:
    if not enabled:
        yield lambda _s: None
        return
    columns = (
        TextColumn("[bold]cycles"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[info]}"),
    )
    with Progress(*columns, transient=False) as bar:
        task = bar.add_task("cycles", total=total, completed=done, info="spin-up")

        def advance(s: CycleState) -> None:
            r = s.records[-1]
            info = f"rmse.a h={r['rmse_analysis'][2]:.3g} r={r['rmse_analysis'][3]:.3g}  {r['seconds_cycle']:.2f} s"
            bar.update(task, completed=s.cycle, info=info)

        yield advance
