"""Results on disk: ``results.nc`` (the Dataset) and ``summary.json`` (time means).

The summary is computed from the Dataset alone, so it can be regenerated from
``results.nc`` at any time (`summarise(xarray.open_dataset(path))`).
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from dacast.workflow.twin.presets import Preset

RESULTS_FILE = "results.nc"
SUMMARY_FILE = "summary.json"


def attach_preset(ds: xr.Dataset, preset: Preset | None) -> xr.Dataset:
    """A copy of ``ds`` with the preset's name, expected RMSE and source as attributes."""
    if preset is None:
        return ds
    out = ds.copy()
    out.attrs["preset"] = preset.name
    out.attrs["source"] = preset.source
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
        out["source"] = str(attrs["source"])
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
    ds.to_netcdf(results, engine="netcdf4", encoding=encoding)
    summary = summarise(ds)
    summary_path.write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return results, summary_path, summary


__all__ = ["OutputPaths", "RESULTS_FILE", "SUMMARY_FILE", "attach_preset", "summarise", "time_mean", "write_results"]
