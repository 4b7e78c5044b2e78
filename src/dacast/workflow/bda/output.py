"""What a BDA run leaves on disk: ``cycles.nc`` and ``summary.json`` (the checkpoint: `bda.checkpoint`).

* ``cycles.nc``: per-cycle RMSE and spread per variable (analysis, forecast,
  free run), observation counts, stage times, and the truth, analysis-mean and
  analysis-spread fields; extended-forecast threat scores by lead;
* ``summary.json``: ``rmse_analysis``, ``rmse_free_run``, ``threat_score_30dbz``,
  ``cycle_seconds`` (by stage), ``members``, ``grid`` and more.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import torch
import xarray as xr

import dacast
from dacast.workflow.bda.config import BDAConfig, bda_config_to_dict
from dacast.workflow.bda.forecast import VARS, CycleState, threat_scores

#: Stage names of ``cycle_seconds`` (the engine's ``analysis`` stage is the LETKF here).
STAGES = ("forecast", "observation", "letkf")


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


__all__ = ["STAGES", "summarise", "to_dataset"]
