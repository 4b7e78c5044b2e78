"""Results on disk: ``results.nc`` (the Dataset) and ``summary.json`` (time means).

The summary is computed from the Dataset alone, so it can be regenerated from
``results.nc`` at any time (`summarise(xarray.open_dataset(path))`).
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch import Tensor

import dacast
from dacast.obs import IndexObs
from dacast.workflow import files
from dacast.workflow.twin.config import TwinConfig, config_to_dict
from dacast.workflow.twin.presets import Preset

STATE_UNITS = "1"  # the Lorenz models are non-dimensional
TIME_UNITS = "1"  # model time units: non-dimensional, as the state
COUNT_UNITS = "1"  # indices and counts (CF: dimensionless)
CONVENTIONS = "CF-1.10"
RESULTS_FILE = "results.nc"
SUMMARY_FILE = "summary.json"


def twin_dataset(
    config: TwinConfig,
    operator: IndexObs,
    truth: Tensor,
    obs: Tensor,
    fields: dict[str, Tensor],
    innovation: Tensor,
    series: Tensor,
    *,
    threshold: float,
    diverged_cycle: int,
    reason: str,
    wall: float,
    device: torch.device,
) -> xr.Dataset:
    """The results of `dacast.workflow.twin.run.run_twin` as a Dataset (see there for the variables).

    Args:
        config: the experiment.
        operator: its observation operator.
        truth: ``(cycles, n_state)``; obs: ``(cycles, n_obs)``.
        fields: ``forecast_mean``, ``forecast_spread``, ``analysis_mean``, ``analysis_spread``,
            each ``(cycles, n_state)``.
        innovation: ``(cycles, n_obs)``; series: ``(cycles, 4)`` RMSE/spread of forecast and analysis.
        threshold: the divergence threshold (state units); diverged_cycle: 0-based, -1 if none; reason: why.
        wall: seconds; device: where the ensemble ran.
    """

    def np64(t: Tensor) -> np.ndarray:
        return t.detach().to(device="cpu", dtype=torch.float64).numpy()

    steps = np.arange(1, config.cycles + 1) * config.obs_every
    state_attrs = {"units": STATE_UNITS}
    long_names = {
        "forecast_mean": "ensemble mean of the forecast (prior)",
        "forecast_spread": "ensemble standard deviation of the forecast (ddof=1)",
        "analysis_mean": "ensemble mean of the analysis (posterior)",
        "analysis_spread": "ensemble standard deviation of the analysis (ddof=1)",
    }
    ser = np64(series)
    data_vars = {
        "truth": (("time", "state"), np64(truth), {"long_name": "true state", **state_attrs}),
        "observations": (("time", "obs"), np64(obs), {"long_name": "synthetic observations", **state_attrs}),
        **{
            name: (("time", "state"), np64(t), {"long_name": long_names[name], **state_attrs})
            for name, t in fields.items()
        },
        "innovation": (
            ("time", "obs"),
            np64(innovation),
            {"long_name": "observation minus forecast ensemble mean in observation space", **state_attrs},
        ),
        "rmse_forecast": ("time", ser[:, 0], {"long_name": "RMSE of the forecast mean vs truth", **state_attrs}),
        "rmse_analysis": ("time", ser[:, 1], {"long_name": "RMSE of the analysis mean vs truth", **state_attrs}),
        "spread_forecast": ("time", ser[:, 2], {"long_name": "sqrt(mean ensemble variance), forecast", **state_attrs}),
        "spread_analysis": ("time", ser[:, 3], {"long_name": "sqrt(mean ensemble variance), analysis", **state_attrs}),
    }
    count = {"units": COUNT_UNITS}
    coords = {
        "time": (
            "time",
            steps * config.dt,
            {"long_name": "analysis time in non-dimensional model time units", "units": TIME_UNITS},
        ),
        "cycle": ("time", np.arange(1, config.cycles + 1), {"long_name": "analysis number (1-based)", **count}),
        "state": ("state", np.arange(config.n_state), {"long_name": "state index (grid point for Lorenz-96)", **count}),
        "obs": ("obs", np.arange(operator.n_obs), {"long_name": "observation number", **count}),
        "obs_state_index": ("obs", operator.indices.numpy(), {"long_name": "observed state index", **count}),
        "obs_error_std": ("obs", operator.error_std.numpy(), {"long_name": "observation error std", **state_attrs}),
    }
    attrs = _run_attrs(config, threshold, diverged_cycle, reason, wall, device)
    return xr.Dataset(data_vars=data_vars, coords=coords, attrs=attrs)


def _run_attrs(
    config: TwinConfig, threshold: float, diverged_cycle: int, reason: str, wall: float, device: torch.device
) -> dict[str, Any]:
    """Settings, divergence and provenance of a twin run (global attributes of ``results.nc``)."""
    diverged = diverged_cycle >= 0
    created = datetime.now(UTC).isoformat(timespec="seconds")
    return {
        "Conventions": CONVENTIONS,
        "title": "dacast twin experiment",
        "source": f"dacast {dacast.__version__} (dacast.workflow.twin), {config.model.name} model",
        "model": config.model.name,
        "filter": config.filter_name,
        "members": config.members,
        "cycles": config.cycles,
        "dt": config.dt,
        "obs_every": config.obs_every,
        "seed": config.seed,
        "burn_in": config.effective_burn_in,
        "burn_in_requested": config.burn_in,
        "divergence_threshold": threshold,
        "diverged": int(diverged),
        "diverged_cycle": diverged_cycle + 1 if diverged else 0,
        "diverged_reason": reason,
        "cycles_completed": (diverged_cycle + 1) if diverged else config.cycles,
        "wall_time_s": wall,
        "device": str(device),
        "dtype": config.dtype,
        "settings": json.dumps(config_to_dict(config)),
        "dacast_version": dacast.__version__,
        "torch_version": torch.__version__,
        "created": created,
        "history": f"{created} dacast {dacast.__version__}: dacast.workflow.run_twin",
    }


def attach_preset(ds: xr.Dataset, preset: Preset | None) -> xr.Dataset:
    """A copy of ``ds`` with the preset's name, expected RMSE and source as attributes.

    The preset's source (the literature it reproduces) is the CF ``references``
    attribute; CF's ``source`` names the software that made the file.
    """
    if preset is None:
        return ds
    out = ds.copy()
    out.attrs["preset"] = preset.name
    out.attrs["references"] = preset.source
    if preset.expected_rmse_analysis is not None:
        out.attrs["expected_rmse_analysis"] = preset.expected_rmse_analysis
    return out


def _json_float(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def time_mean(ds: xr.Dataset, name: str) -> float | None:
    """Mean of the time series ``name`` over analysis times after ``ds.attrs['burn_in']``.

    NaN entries (after a divergence) are skipped; ``None`` when nothing is left.
    """
    values = ds[name].values[ds["time"].values > float(ds.attrs["burn_in"])]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = float(np.nanmean(values)) if values.size else float("nan")
    return _json_float(mean)


def summarise(ds: xr.Dataset) -> dict[str, Any]:
    """The JSON summary of a run: time means after burn-in, divergence, wall time, settings.

    Keys: ``rmse_analysis``, ``rmse_forecast``, ``spread_analysis``,
    ``spread_forecast`` (state units, ``null`` when undefined), ``diverged``,
    ``diverged_cycle`` (1-based, ``null`` if not diverged), ``diverged_reason``,
    ``cycles_completed``, ``burn_in``, ``wall_time_s``, ``device``, ``settings``
    (the configuration as in the YAML schema), ``dacast_version``, ``created``;
    and, when the run came from a preset, ``preset``, ``expected_rmse_analysis``
    and ``source``.
    """
    attrs = ds.attrs
    diverged = bool(int(attrs["diverged"]))
    out: dict[str, Any] = {
        "rmse_analysis": time_mean(ds, "rmse_analysis"),
        "rmse_forecast": time_mean(ds, "rmse_forecast"),
        "spread_analysis": time_mean(ds, "spread_analysis"),
        "spread_forecast": time_mean(ds, "spread_forecast"),
        "diverged": diverged,
        "diverged_cycle": int(attrs["diverged_cycle"]) if diverged else None,
        "diverged_reason": str(attrs["diverged_reason"]) or None,
        "cycles_completed": int(attrs["cycles_completed"]),
        "burn_in": float(attrs["burn_in"]),
        "wall_time_s": float(attrs["wall_time_s"]),
        "device": str(attrs["device"]),
        "settings": json.loads(attrs["settings"]),
        "dacast_version": str(attrs["dacast_version"]),
        "created": str(attrs["created"]),
    }
    if "preset" in attrs:
        out["preset"] = str(attrs["preset"])
        expected = attrs.get("expected_rmse_analysis")
        out["expected_rmse_analysis"] = None if expected is None else float(expected)
        # files written before the CF attributes kept the preset's source in ``source``
        out["source"] = str(attrs["references"] if "references" in attrs else attrs["source"])
    return out


@dataclass(frozen=True, kw_only=True)
class OutputPaths:
    """Files written for one run."""

    directory: Path
    results: Path
    summary: Path
    plots: tuple[Path, ...] = ()


def write_results(ds: xr.Dataset, out_dir: str | Path) -> tuple[Path, Path, dict[str, Any]]:
    """Write ``results.nc`` and ``summary.json`` into ``out_dir`` (created if needed).

    Returns:
        ``(results_path, summary_path, summary)``.
    """
    directory = Path(out_dir)
    directory.mkdir(parents=True, exist_ok=True)
    results = directory / RESULTS_FILE
    summary_path = directory / SUMMARY_FILE
    encoding = {name: {"zlib": True, "complevel": 1} for name in ds.data_vars}
    files.atomic_write(results, lambda tmp: ds.to_netcdf(tmp, engine="netcdf4", encoding=encoding))
    summary = summarise(ds)
    summary["settings"] = files.jsonable(summary["settings"], as_text=True)  # inf localization: "inf", not null
    files.write_json(summary_path, summary)
    return results, summary_path, summary


__all__ = [
    "RESULTS_FILE",
    "SUMMARY_FILE",
    "OutputPaths",
    "attach_preset",
    "summarise",
    "time_mean",
    "twin_dataset",
    "write_results",
]
