"""Results of a surrogate <-> DA run as data (netCDF, JSON) and figures (PNG).

Figures are drawn from the `xarray.Dataset` that `surrogate_dataset` builds,
so they can be regenerated from ``surrogate_run.nc``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

import dacast
from dacast.workflow import files
from dacast.workflow.surrogate.config import LYAPUNOV_TIME_L96, surrogate_config_to_dict
from dacast.workflow.surrogate.plots import best_fixed_inflation, plot_surrogate
from dacast.workflow.surrogate.truth import N_LEADS

if TYPE_CHECKING:
    from dacast.workflow.surrogate.run import SurrogateRun


CONVENTIONS = "CF-1.10"
#: The Lorenz models are non-dimensional: states, errors, losses and model time all have units "1".
NONDIM = "1"


def _attrs(long_name: str, units: str = NONDIM) -> dict[str, str]:
    return {"long_name": long_name, "units": units}


def _data_vars(run: SurrogateRun, files: list[Any]) -> dict[str, tuple]:
    """Per-iteration results: name -> (dims, values, attrs)."""
    recs = run.records

    def rec(key: str) -> np.ndarray:
        return np.array([r[key] for r in recs])

    def npz(key: str) -> np.ndarray:
        return np.stack([f[key] for f in files])

    field = ("iteration", "time", "variable")
    table: dict[str, tuple[Any, np.ndarray, str]] = {
        "analysis_mean": (field, npz("analysis_mean"), "analysis ensemble mean of the modelled variables"),
        "analysis_spread": (field, npz("analysis_spread"), "analysis ensemble spread of the modelled variables"),
        "rmse_analysis": (
            "iteration",
            rec("rmse_analysis"),
            "RMSE of the analysis mean against the truth after burn-in",
        ),
        "forecast_rmse": (
            ("iteration", "lead"),
            rec("forecast_rmse_steps_1_4"),
            "RMSE of forecasts from true test states, by lead (1-4 analysis intervals)",
        ),
        "forecast_error": (
            ("iteration", "start", "lead"),
            npz("forecast_error"),
            "RMSE over the variables of the forecast from each test start, by lead",
        ),
        "start_state": (("start", "variable"), files[0]["start_state"], "true state at each test start"),
        "nrmse_free": (
            ("iteration", "free_lead"),
            rec("nrmse_free"),
            "RMSE of the free forecast divided by the climatological standard deviation",
        ),
        "valid_time": (
            "iteration",
            rec("valid_time"),
            "valid time of the free forecast (normalised RMSE below 0.5), model time units",
        ),
        "train_loss": (
            "iteration",
            _losses(recs, "train_loss"),
            "training loss of the surrogate at its best epoch (normalised increments)",
        ),
        "val_loss": (
            "iteration",
            _losses(recs, "val_loss"),
            "best validation loss of the surrogate (normalised increments)",
        ),
        "inflation": (
            "iteration",
            np.array([r.get("inflation", np.nan) for r in recs], dtype=float),
            "mean covariance inflation factor of the DA run",
        ),
    }
    return {name: (dims, values, _attrs(long_name)) for name, (dims, values, long_name) in table.items()}


def _coords(run: SurrogateRun) -> dict[str, tuple]:
    """Iterations (with the model of each), analysis times, variables and leads."""
    cfg, step = run.config, run.config.step
    return {
        "iteration": (
            "iteration",
            np.arange(len(run.records)),
            _attrs("iteration (0: imperfect model, n: surrogate n-1)"),
        ),
        "model_name": (
            "iteration",
            [r["model"] for r in run.records],
            {"long_name": "forecast model of the iteration"},
        ),
        "time": ("time", np.arange(1, cfg.cycles + 1) * step, _attrs("analysis time, model time units")),
        "variable": ("variable", np.arange(cfg.n_var), _attrs("index of the modelled variable")),
        "lead": ("lead", np.arange(1, N_LEADS + 1), _attrs("forecast lead in analysis intervals")),
        "free_lead_time": (
            "free_lead",
            np.arange(1, cfg.free_leads + 1) * step,
            _attrs("lead time of the free forecast, model time units"),
        ),
    }


def surrogate_dataset(run: SurrogateRun) -> xr.Dataset:
    """All per-iteration results of ``run`` as one CF-1.10 dataset.

    Dimensions: ``iteration`` (0 = imperfect model, n >= 1 = surrogate n - 1),
    ``time`` (analysis times), ``variable`` (modelled variables), ``lead``
    (1-4 analysis intervals), ``free_lead`` and ``start`` (forecast start times).
    Every quantity is non-dimensional (units "1"), model time included.
    """
    cfg = run.config
    files = [np.load(run.out_dir / f"iteration_{i:02d}.npz") for i in range(len(run.records))]
    created = datetime.now(UTC).isoformat(timespec="seconds")
    attrs = {
        "Conventions": CONVENTIONS,
        "title": "dacast surrogate <-> DA cycle",
        "source": f"dacast {dacast.__version__} (dacast.workflow.surrogate), {cfg.truth.name} twin",
        "history": f"{created} dacast {dacast.__version__}: dacast.workflow.surrogate.run_surrogate",
        "experiment": cfg.name,
        "rmse_analysis_perfect": run.perfect_rmse,
        "stopped": run.stopped,
        "wall_time_s": run.wall_time_s,
        "settings": json.dumps(surrogate_config_to_dict(cfg)),
        "rmse_analysis_fixed_inflation": json.dumps(run.tuning or {}),
        "dacast_version": dacast.__version__,
        "created": created,
    }
    return xr.Dataset(data_vars=_data_vars(run, files), coords=_coords(run), attrs=attrs)


def _losses(records: list[dict[str, Any]], key: str) -> np.ndarray:
    return np.array([np.nan if r[key] is None else r[key] for r in records], dtype=float)


def summarise_surrogate(run: SurrogateRun) -> dict[str, Any]:
    """The ``summary.json`` content."""
    recs = run.records
    final = recs[-1]
    valid = {r["model"]: r["valid_time"] for r in recs}
    out: dict[str, Any] = {
        "experiment": run.config.name,
        "rmse_analysis_per_iteration": [r["rmse_analysis"] for r in recs],
        "rmse_analysis_imperfect": recs[0]["rmse_analysis"],
        "rmse_analysis_perfect": run.perfect_rmse,
        "rmse_analysis_final": final["rmse_analysis"],
        "rmse_analysis_reduction": 1.0 - final["rmse_analysis"] / recs[0]["rmse_analysis"],
        "inflation_per_iteration": [r.get("inflation") for r in recs],
        "final_model": final["model"],
        "forecast_rmse_steps_1_4": {r["model"]: r["forecast_rmse_steps_1_4"] for r in recs},
        "valid_time": valid,
        "train_loss_per_iteration": [r["train_loss"] for r in recs],
        "iterations_completed": len(recs) - 1,
        "stopped": run.stopped,
        "diverged": "diverged" in run.stopped,
        "diverged_reason": run.stopped if "diverged" in run.stopped else None,
        "wall_time_s": run.wall_time_s,
    }
    if run.tuning:
        picks = {name: best_fixed_inflation(by) for name, by in run.tuning.items()}
        best = {name: pick[1] for name, pick in picks.items() if pick is not None}
        out["rmse_analysis_fixed_inflation"] = run.tuning
        out["rmse_analysis_best_fixed_inflation"] = best
        if final["model"] in best and "imperfect" in best:
            out["rmse_analysis_reduction_best_fixed_inflation"] = 1.0 - best[final["model"]] / best["imperfect"]
    if run.config.truth.name == "lorenz96":
        out["valid_time_lyapunov"] = {k: v / LYAPUNOV_TIME_L96 for k, v in valid.items()}
    return out


def write_surrogate_outputs(run: SurrogateRun, *, plots: bool = True) -> dict[str, Path]:
    """Write ``surrogate_run.nc``, ``summary.json`` and (optionally) the PNGs into ``run.out_dir``."""
    out = run.out_dir
    ds = surrogate_dataset(run)
    paths = {"dataset": out / "surrogate_run.nc", "summary": out / "summary.json"}
    files.atomic_write(paths["dataset"], ds.to_netcdf)
    files.write_json(paths["summary"], summarise_surrogate(run))
    if plots:
        for p in plot_surrogate(ds, out):
            paths[p.stem] = p
    return paths


__all__ = [
    "best_fixed_inflation",
    "summarise_surrogate",
    "surrogate_dataset",
    "write_surrogate_outputs",
]
