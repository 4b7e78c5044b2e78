"""What a BDA run leaves on disk: ``cycles.nc`` and ``summary.json`` (the checkpoint: `bda.checkpoint`).

* ``cycles.nc`` (CF-1.10): per-cycle RMSE and spread of each model variable,
  one netCDF variable per quantity (``rmse_analysis_u`` ... ``rmse_analysis_r``,
  likewise ``rmse_forecast_*``, ``rmse_free_run_*``, ``spread_analysis_*``,
  ``spread_forecast_*``), observation counts, stage times, and the truth,
  analysis-mean and analysis-spread fields (``truth_u``, ``analysis_mean_h``,
  ``analysis_spread_r``, ...); extended-forecast threat scores by lead;
* ``summary.json``: ``rmse_analysis``, ``rmse_free_run``, ``threat_score_30dbz``,
  ``cycle_seconds`` (by stage), ``members``, ``grid`` and more.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import numpy as np
import torch
import xarray as xr

import dacast
from dacast.workflow.bda.config import BDAConfig, bda_config_to_dict
from dacast.workflow.bda.forecast import THRESHOLD_DBZ, VARS, CycleState, threat_scores

#: Stage names of ``cycle_seconds`` (the engine's ``analysis`` stage is the LETKF here).
STAGES = ("forecast", "observation", "letkf")

CONVENTIONS = "CF-1.10"

#: Per model variable: units, long name and CF standard name (None where the table has none).
#: The grid is a periodic Cartesian plane, so the winds are grid-relative (``x_wind``, ``y_wind``).
VARIABLES: dict[str, tuple[str, str, str | None]] = {
    "u": ("m s-1", "x-ward wind (east face of the cell)", "x_wind"),
    "v": ("m s-1", "y-ward wind (north face of the cell)", "y_wind"),
    "h": ("m", "fluid height", None),
    "r": ("1", "rain mass (dimensionless)", None),
}

#: Per-cycle series: record key -> long-name prefix.
SERIES = {
    "rmse_analysis": "RMSE of the analysis mean against the truth",
    "rmse_forecast": "RMSE of the forecast (prior) mean against the truth",
    "rmse_free_run": "RMSE of the free run (no assimilation) mean against the truth",
    "spread_analysis": "analysis ensemble spread",
    "spread_forecast": "forecast (prior) ensemble spread",
}

#: Fields: name -> (long-name prefix, CF cell_methods over the ensemble or None).
FIELDS = {
    "truth": ("true", None),
    "analysis_mean": ("analysis ensemble mean of the", "realization: mean"),
    "analysis_spread": ("analysis ensemble spread of the", "realization: standard_deviation"),
}


def _attrs(units: str, long_name: str, standard_name: str | None = None, **extra: Any) -> dict[str, Any]:
    out = {"long_name": long_name, "units": units, **extra}
    if standard_name is not None:
        out["standard_name"] = standard_name
    return out


def _coords(state: CycleState, config: BDAConfig) -> dict[str, tuple]:
    recs = state.records
    cycle = np.array([r["cycle"] for r in recs], dtype=np.int64)
    time_s = np.array([r.get("time_s", r["cycle"] * config.cycle_seconds) for r in recs], dtype=np.float64)
    km = np.arange(config.grid) * config.dx_km
    return {
        "cycle": ("cycle", cycle, _attrs("1", "analysis cycle number (1-based)")),
        "time_s": ("cycle", time_s, _attrs("s", "time of the analysis since the start of cycling")),
        "y": (
            "y",
            km,
            _attrs("km", "y of the cell (cell index times the grid spacing)", "projection_y_coordinate", axis="Y"),
        ),
        "x": (
            "x",
            km,
            _attrs("km", "x of the cell (cell index times the grid spacing)", "projection_x_coordinate", axis="X"),
        ),
    }


def _per_variable(state: CycleState) -> dict[str, tuple]:
    """RMSE and spread series and the fields, one variable per model variable and quantity."""
    recs = state.records
    data: dict[str, tuple] = {}
    for key, about in SERIES.items():
        values = np.array([r[key] for r in recs], dtype=np.float64).reshape(len(recs), len(VARS))
        for i, var in enumerate(VARS):
            units, name, _ = VARIABLES[var]
            data[f"{key}_{var}"] = (("cycle",), values[:, i], _attrs(units, f"{about}: {name}"))
    for i, (key, (about, method)) in enumerate(FIELDS.items()):
        if not state.fields:
            break
        stack = torch.stack([f[i] for f in state.fields]).numpy()
        extra = {} if method is None else {"cell_methods": method}
        for j, var in enumerate(VARS):
            units, name, standard = VARIABLES[var]
            data[f"{key}_{var}"] = (
                ("cycle", "y", "x"),
                stack[:, j],
                _attrs(units, f"{about} {name}", standard, **extra),
            )
    return data


def _per_cycle(state: CycleState) -> dict[str, tuple]:
    """Observation counts, outages and stage wall-clock times."""
    recs = state.records
    counts = {"n_obs_dbz": "reflectivity", "n_obs_vr": "radial-velocity"}
    data: dict[str, tuple] = {
        key: (
            ("cycle",),
            np.array([r[key] for r in recs], dtype=np.int64),
            _attrs("1", f"number of {what} observations assimilated"),
        )
        for key, what in counts.items()
    }
    flags = {"flag_values": np.array([0, 1], dtype=np.int8), "flag_meanings": "assimilated radar_outage"}
    outage = np.array([r["outage"] for r in recs], dtype=np.int8)
    data["outage"] = (("cycle",), outage, _attrs("1", "radar outage (forecast only, nothing assimilated)", **flags))
    for stage in (*STAGES, "cycle"):
        what = "whole cycle" if stage == "cycle" else f"{stage} stage"
        seconds = np.array([r[f"seconds_{stage}"] for r in recs], dtype=np.float64)
        data[f"seconds_{stage}"] = (("cycle",), seconds, _attrs("s", f"wall-clock time of the {what}"))
    return data


def to_dataset(state: CycleState, config: BDAConfig) -> xr.Dataset:
    """Per-cycle diagnostics and fields of ``state`` as a CF-1.10 `xarray.Dataset` (one variable per quantity)."""
    coords = _coords(state, config)
    data = {**_per_variable(state), **_per_cycle(state)}
    ts = threat_scores(state.forecasts)
    if ts:
        lead = _attrs("min", "lead time of the extended forecast", "forecast_period")
        coords["lead"] = ("lead", np.asarray(ts["lead_minutes"], dtype=np.float64), lead)
        about = {
            "forecast": "forecast from the analysis mean",
            "persistence": "persistence of the observed reflectivity",
            "ensemble_prob": "ensemble probability of exceedance >= 0.5",
        }
        for name, what in about.items():
            long_name = f"threat score (CSI) at {THRESHOLD_DBZ:g} dBZ, {what}, pooled over the forecasts"
            data[f"threat_score_{name}"] = (("lead",), np.array(ts[name], dtype=np.float64), _attrs("1", long_name))
    created = datetime.now(UTC).isoformat(timespec="seconds")
    attrs = {
        "Conventions": CONVENTIONS,
        "title": "dacast Big Data Assimilation twin",
        "source": f"dacast {dacast.__version__} (dacast.workflow.bda), Wuersch-Craig model, gridded LETKF",
        "history": f"{created} dacast {dacast.__version__}: dacast.workflow.bda.run_bda_experiment",
        "variables": "u, v: m/s; h: m (fluid height); r: rain (dimensionless)",
        "members": config.members,
        "dacast_version": dacast.__version__,
        "created": created,
        "config": json.dumps(bda_config_to_dict(config)),
    }
    return xr.Dataset(data, coords=coords, attrs=attrs)


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
