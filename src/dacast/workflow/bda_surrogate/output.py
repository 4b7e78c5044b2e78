"""Outputs of a learned-regional-model run: ``bda_surrogate.nc`` (CF), ``summary.json`` and the comparison figures.

The summary states each issue target with its measured value and whether it is met:
rain analysis RMSE with the surrogate at most 1.2x the perfect-physics LETKF's and below the
imperfect physics'; the 30-min forecast's threat score at 30 dBZ above the imperfect physics'
and above persistence at every lead from 1 to 30 min; cost per member; free-run stability.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from dacast import __version__
from dacast.workflow.bda.forecast import VARS
from dacast.workflow.bda_surrogate.config import BDASurrogateConfig, bda_surrogate_config_to_dict
from dacast.workflow.bda_surrogate.plots import make_plots
from dacast.workflow.files import atomic_write, write_json

RAIN_RATIO_TARGET = 1.2


def _dataset(config: BDASurrogateConfig, out: Path, names: list[str]) -> xr.Dataset | None:
    """RMSE by cycle and threat score by lead of each experiment with a ``cycles.nc``, on an ``experiment`` axis."""
    parts = []
    for name in names:
        path = out / name / "cycles.nc"
        if not path.is_file():
            continue
        with xr.open_dataset(path) as ds:
            keep = [f"rmse_{k}_{v}" for k in ("analysis", "forecast", "free_run") for v in VARS]
            keep += [f"spread_analysis_{v}" for v in VARS] + ["threat_score_forecast", "threat_score_persistence"]
            keep += ["seconds_forecast", "seconds_cycle"]
            parts.append(ds[[k for k in keep if k in ds]].load().expand_dims(experiment=[name]))
    if not parts:
        return None
    ds = xr.concat(parts, dim="experiment", join="outer")
    names = [str(e) for e in ds["experiment"].values]
    ds = ds.assign_coords(experiment=np.arange(len(names)), experiment_name=("experiment", names))
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    ds.attrs = {
        "Conventions": "CF-1.10",
        "title": "dacast learned regional model in the 30-second LETKF",
        "source": f"dacast {__version__} (dacast.workflow.bda_surrogate), Wuersch-Craig twin, gridded LETKF",
        "history": f"{now} dacast {__version__}: dacast surrogate run {config.name}",
        "variables": "u, v: m/s; h: m; r: rain (dimensionless)",
        "experiments": ", ".join(names),
        "config": json.dumps(bda_surrogate_config_to_dict(config)),
        "dacast_version": __version__,
        "created": now,
    }
    ds["experiment"].attrs = {"long_name": "index of the experiment (the model that runs the ensemble)", "units": "1"}
    ds["experiment_name"].attrs = {"long_name": "model that runs the ensemble"}
    return ds


def _leads(values: list) -> np.ndarray:
    """Threat scores at leads 1..30 min as floats (JSON's null -> NaN)."""
    return np.asarray([np.nan if v is None else v for v in values[1:]], dtype=float)


def _targets(experiments: dict[str, dict], cost: dict, stability: dict) -> dict[str, Any]:
    """Each target of the issue with its measured value and ``met`` (None where an experiment is missing)."""
    rain = {  # JSON's null (a NaN written by an earlier session) -> NaN: never "met"
        k: float("nan") if v["rmse_analysis"]["r"] is None else v["rmse_analysis"]["r"]
        for k, v in experiments.items()
        if v.get("rmse_analysis")
    }
    ts = {k: v.get("threat_score_30dbz", {}) for k, v in experiments.items()}
    out: dict[str, Any] = {}
    if {"surrogate", "perfect"} <= rain.keys():
        ratio = rain["surrogate"] / rain["perfect"]
        out["rain_rmse_vs_perfect"] = {
            "ratio": ratio,
            "target": f"<= {RAIN_RATIO_TARGET}",
            "met": ratio <= RAIN_RATIO_TARGET,
        }
    if {"surrogate", "imperfect"} <= rain.keys():
        ratio = rain["surrogate"] / rain["imperfect"]
        out["rain_rmse_vs_imperfect"] = {"ratio": ratio, "target": "< 1", "met": ratio < 1}
    sur = ts.get("surrogate", {})
    if sur.get("forecast"):
        f = _leads(sur["forecast"])  # NaN (no event at a lead) counts as not above
        out["ts_above_persistence_every_lead"] = bool((f > _leads(sur["persistence"])).all())
        if ts.get("imperfect", {}).get("forecast"):
            out["ts_above_imperfect_every_lead"] = bool((f > _leads(ts["imperfect"]["forecast"])).all())
    ratio = cost["ratio_surrogate_to_physics"]
    out["cost"] = {"surrogate_over_physics": ratio, "target": "<= 0.1", "met": ratio <= 0.1}
    if stability["stable"] is not None:
        out["stable_free_run"] = {"cycles": stability["cycles"], "met": bool(stability["stable"])}
    return out


def _experiment_summary(s: dict) -> dict[str, Any]:
    keys = ("rmse_analysis", "rmse_free_run", "spread_analysis", "cycle_seconds", "diverged", "diverged_cycle")
    out = {k: s.get(k) for k in keys}
    out["diverged_reason"] = s.get("diverged_reason")
    ts = s.get("threat_score_30dbz") or {}
    if ts:
        out["threat_score_30dbz"] = {k: ts[k] for k in ("lead_minutes", "forecast", "persistence") if k in ts}
    return out


def write_outputs(
    config: BDASurrogateConfig,
    out: Path,
    *,
    surrogates: list[dict[str, Any]],
    stability: dict,
    cost: dict,
    experiments: dict[str, dict],
    plots: bool,
    wall: float,
) -> tuple[dict[str, Any], dict[str, Path]]:
    """Write ``bda_surrogate.nc``, the figures and (last) ``summary.json``; returns the summary and the paths."""
    exps = {k: _experiment_summary(v) for k, v in experiments.items()}
    summary: dict[str, Any] = {
        "name": config.name,
        "source": config.source,
        "base": config.net.base,
        "imperfect_physics": config.imperfect.describe(config.bda.model),
        "grid": [config.bda.grid, config.bda.grid],
        "members": config.bda.members,
        "cycles": config.bda.cycles,
        "surrogates": [{k: m.get(k) for k in _SURROGATE_KEYS} for m in surrogates],
        "experiments": exps,
        "targets": _targets(experiments, cost, stability),
        "cost": cost,
        "stability": {k: v for k, v in stability.items() if k != "series"},
        "wall_time_s": wall,
        "dacast_version": __version__,
    }
    paths: dict[str, Path] = {}
    ds = _dataset(config, out, list(config.experiments))
    if ds is not None:
        paths["dataset"] = atomic_write(out / "bda_surrogate.nc", ds.to_netcdf)
        if plots:
            paths |= make_plots(ds, out, stability, config)
    paths["summary"] = write_json(out / "summary.json", summary)
    return summary, paths


_SURROGATE_KEYS = (
    "iteration",
    "trained_on",
    "pairs",
    "initial_val_loss",
    "best_val_loss",
    "best_epoch",
    "wall_time_s",
    "device",
    "training_data_sha256",
    "training_da",
)

__all__ = ["RAIN_RATIO_TARGET", "write_outputs"]
