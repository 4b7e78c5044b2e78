"""Results of a surrogate <-> DA run as data (netCDF, JSON) and figures (PNG).

Figures are drawn from the `xarray.Dataset` that `surrogate_dataset` builds,
so they can be regenerated from ``surrogate_run.nc``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

import dacast
from dacast.workflow.surrogate.config import LYAPUNOV_TIME_L96, surrogate_config_to_dict
from dacast.workflow.surrogate.plots import best_fixed_inflation, plot_surrogate
from dacast.workflow.surrogate.truth import N_LEADS

if TYPE_CHECKING:
    from dacast.workflow.surrogate.run import SurrogateRun


def surrogate_dataset(run: SurrogateRun) -> xr.Dataset:
    """All per-iteration results of ``run`` as one dataset.

    Dimensions: ``iteration`` (0 = imperfect model, n >= 1 = surrogate n - 1),
    ``time`` (analysis times), ``variable`` (modelled variables), ``lead``
    (1-4 analysis intervals), ``free_lead`` and ``start`` (forecast start times).
    """
    cfg, out = run.config, run.out_dir
    n_it = len(run.records)
    files = [np.load(out / f"iteration_{i:02d}.npz") for i in range(n_it)]
    recs = run.records
    step = cfg.step
    ds = xr.Dataset(
        data_vars={
            "analysis_mean": (("iteration", "time", "variable"), np.stack([f["analysis_mean"] for f in files])),
            "analysis_spread": (("iteration", "time", "variable"), np.stack([f["analysis_spread"] for f in files])),
            "rmse_analysis": ("iteration", np.array([r["rmse_analysis"] for r in recs]), {"units": "1"}),
            "forecast_rmse": (("iteration", "lead"), np.array([r["forecast_rmse_steps_1_4"] for r in recs])),
            "forecast_error": (("iteration", "start", "lead"), np.stack([f["forecast_error"] for f in files])),
            "start_state": (("start", "variable"), files[0]["start_state"]),
            "nrmse_free": (("iteration", "free_lead"), np.array([r["nrmse_free"] for r in recs])),
            "valid_time": ("iteration", np.array([r["valid_time"] for r in recs]), {"units": "model time units"}),
            "train_loss": (
                "iteration",
                np.array([np.nan if r["train_loss"] is None else r["train_loss"] for r in recs]),
            ),
            "val_loss": ("iteration", np.array([np.nan if r["val_loss"] is None else r["val_loss"] for r in recs])),
            "inflation": (
                "iteration",
                np.array([r.get("inflation", np.nan) for r in recs], dtype=float),
                {"long_name": "mean covariance inflation factor of the DA run", "units": "1"},
            ),
        },
        coords={
            "iteration": np.arange(n_it),
            "model_name": ("iteration", [r["model"] for r in recs]),
            "time": np.arange(1, cfg.cycles + 1) * step,
            "variable": np.arange(cfg.n_var),
            "lead": np.arange(1, N_LEADS + 1),
            "free_lead_time": ("free_lead", np.arange(1, cfg.free_leads + 1) * step),
        },
        attrs={
            "title": "dacast surrogate <-> DA cycle",
            "experiment": cfg.name,
            "rmse_analysis_perfect": run.perfect_rmse,
            "stopped": run.stopped,
            "wall_time_s": run.wall_time_s,
            "settings": json.dumps(surrogate_config_to_dict(cfg)),
            "rmse_analysis_fixed_inflation": json.dumps(run.tuning or {}),
            "dacast_version": dacast.__version__,
        },
    )
    return ds


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
    ds.to_netcdf(paths["dataset"])
    paths["summary"].write_text(json.dumps(summarise_surrogate(run), indent=2) + "\n", encoding="utf-8")
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
