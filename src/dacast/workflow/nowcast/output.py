"""What a nowcast run leaves behind: the Dataset, the score table (CSV and netCDF) and the plots.

Files of a run (in the output folder):

* ``nowcast.nc``: ``forecast`` ``(lead_time, y, x)`` [mm/h], ``observed`` at the
  same valid times when any was found (NaN for a missing frame),
  ``last_observed`` ``(y, x)``, the frame at the issue time ``t0``; coordinates
  and attributes of the radar frames (projection, attribution, ...) plus the
  method, motion, issue time and checkpoint; an ensemble run (``--members``) adds
  ``members`` ``(member, lead_time, y, x)`` [mm/h] and ``exceedance_probability``
  ``(threshold, lead_time, y, x)``, the fraction of members above each threshold;
* ``scores.csv`` and ``scores.nc`` (`dacast.verify.score_nowcast` over the
  pixels valid at ``t0`` and at the valid time), when observations exist; with
  members also ``crps`` [mm/h] and ``spread_skill`` (spread / RMSE of the ensemble mean) per lead;
* ``panel.png`` (observed vs forecast), ``nowcast.gif``, ``skill.png``.

Scores and plots are made from ``nowcast.nc`` alone, so
`dacast.workflow.nowcast.run.verify_nowcast` regenerates them at any time.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from dacast import __version__
from dacast.io import UnreadableFrame
from dacast.verify import (
    crps_ensemble,
    exceedance_probability,
    plot_frames,
    plot_skill,
    save_nowcast_gif,
    score_nowcast,
    spread_skill,
)
from dacast.workflow import files
from dacast.workflow.nowcast.config import TIMESTEP_MIN, hhmm
from dacast.workflow.schema import ConfigError

CONVENTIONS = "CF-1.10"
#: Rain rates (mm/h in the radar readers); CF's ``rainfall_rate`` is in kg m-2 s-1, so no standard name.
RAIN_RATE_UNITS = "mm h-1"
LEAD_TIME_ATTRS = {"long_name": "forecast lead time", "units": "min", "standard_name": "forecast_period"}
NOWCAST_FILE = "nowcast.nc"
SCORES_CSV = "scores.csv"
SCORES_NC = "scores.nc"


@dataclass(frozen=True, kw_only=True)
class NowcastPaths:
    """Files written by `run_nowcast` / `verify_nowcast` (None / empty when not written)."""

    nowcast: Path | None = None
    scores_csv: Path | None = None
    scores_nc: Path | None = None
    plots: tuple[Path, ...] = ()


@dataclass(frozen=True, kw_only=True)
class NowcastResult:
    """A nowcast and its scores.

    Attributes:
        dataset: ``forecast`` (lead_time, y, x) [mm/h], ``observed`` (if any), ``last_observed`` (y, x).
        scores: `dacast.verify.score_nowcast` Dataset, None without observations.
        missing_observed: valid times without an observed file (not scored).
        unreadable_observed: observed files that exist but could not be read, each with its valid
            time, path and error (not scored either; their times are not in ``missing_observed``).
        paths: files written.
    """

    dataset: xr.Dataset
    scores: xr.Dataset | None
    missing_observed: tuple[np.datetime64, ...] = ()
    unreadable_observed: tuple[UnreadableFrame, ...] = ()
    paths: NowcastPaths = field(default_factory=NowcastPaths)


def nowcast_dataset(
    past: xr.DataArray,
    forecast: torch.Tensor | np.ndarray,
    observed: xr.DataArray | None,
    *,
    info: dict[str, str | int],
    members: torch.Tensor | np.ndarray | None = None,
    thresholds: Sequence[float] = (1.0, 5.0),
) -> xr.Dataset:
    """The Dataset written to ``nowcast.nc`` (see the module docstring).

    Args:
        past: observed rain rate up to the issue time, shape ``(time, y, x)`` [mm/h], as from
            `dacast.io.load_sequence` (its last frame is ``t0``; coords and attrs are kept).
        forecast: forecast rain rate, shape ``(lead, y, x)`` [mm/h], leads every 5 min from ``t0 + 5``.
        observed: observed rain rate at the valid times, shape ``(lead, y, x)`` [mm/h], or None.
        info: method, motion, checkpoint, ... (global attributes).
        members: ensemble members ``(member, lead, y, x)`` [mm/h], or None.
        thresholds: rain rates [mm/h] of the members' exceedance probabilities.
    """
    fc = np.asarray(torch.as_tensor(forecast).float().cpu().numpy(), dtype=np.float32)
    n_leads = fc.shape[0]
    t0 = past["time"].values[-1]
    leads = np.arange(1, n_leads + 1, dtype=float) * TIMESTEP_MIN
    valid = t0 + (leads * 60).astype("timedelta64[s]")
    coords = {
        "lead_time": ("lead_time", leads, {**LEAD_TIME_ATTRS}),
        "valid_time": (
            "lead_time",
            valid.astype("datetime64[ns]"),
            {"long_name": "valid time", "standard_name": "time"},
        ),
        "y": _projection_axis(past["y"], "y"),
        "x": _projection_axis(past["x"], "x"),
    }
    radar = {k: v for k, v in past.attrs.items() if isinstance(v, str | int | float)}
    about = {k: v for k, v in radar.items() if k not in ("long_name", "units")}
    rate = {**radar, "units": RAIN_RATE_UNITS}  # rainfall_rate is CF for kg m-2 s-1: long_name only
    dims = ("lead_time", "y", "x")
    data = {
        "forecast": (dims, fc, {**rate, "long_name": f"forecast rain rate ({info['method']})"}),
        "last_observed": (("y", "x"), past.values[-1], {**rate, "long_name": "observed rain rate at issue time"}),
    }
    if observed is not None:
        data["observed"] = (dims, observed.values.astype(np.float32), {**rate, "long_name": "observed rain rate"})
    if members is not None:
        ens = np.asarray(torch.as_tensor(members).float().cpu().numpy(), dtype=np.float32)
        data["members"] = (("member", *dims), ens, {**rate, "long_name": "ensemble member rain rate"})
        prob = np.stack([exceedance_probability(ens, t).numpy() for t in thresholds]).astype(np.float32)
        prob[:, ~np.isfinite(ens[0])] = np.nan
        about_p = {"long_name": "fraction of members above the threshold", "units": "1"}
        data["exceedance_probability"] = (("threshold", *dims), prob, about_p)
        coords["threshold"] = ("threshold", np.asarray(thresholds, float), {"units": RAIN_RATE_UNITS})
        coords["member"] = ("member", np.arange(ens.shape[0]), {"long_name": "ensemble member"})
    created = datetime.now(UTC).isoformat(timespec="seconds")
    attrs = {
        **about,
        "Conventions": CONVENTIONS,
        "title": f"dacast {info['method']} nowcast, {radar.get('source', '')} {hhmm(t0)} UTC",
        "history": f"{created} dacast {__version__}: dacast.workflow.nowcast.run_nowcast ({info['method']})",
        **info,
        "issue_time": str(np.datetime64(t0, "s")),
        "timestep_min": TIMESTEP_MIN,
        "past_times": ", ".join(hhmm(t) for t in past["time"].values),
        "dacast_version": __version__,
        "created": created,
    }
    attrs.setdefault("source", f"dacast {__version__}")
    return xr.Dataset(data, coords=coords, attrs=attrs)


def _projection_axis(coord: xr.DataArray, axis: str) -> xr.DataArray:
    """A copy of the radar's ``x`` or ``y`` coordinate with its CF standard name and axis."""
    out = coord.copy()
    out.attrs.update(standard_name=f"projection_{axis}_coordinate", axis=axis.upper())
    out.attrs.setdefault("long_name", f"projection {axis} coordinate")
    return out


def write_nowcast(ds: xr.Dataset, out_dir: Path) -> Path:
    """Write ``ds`` as ``nowcast.nc`` (compressed) into ``out_dir``."""
    path = out_dir / NOWCAST_FILE
    encoding = {v: {"zlib": True, "complevel": 4} for v in ds.data_vars}
    files.atomic_write(path, lambda tmp: ds.to_netcdf(tmp, encoding=encoding))
    return path


def score_dataset(
    ds: xr.Dataset, *, thresholds: Sequence[float] = (1.0, 5.0), scales_km: Sequence[float] = (10.0,)
) -> xr.Dataset:
    """`score_nowcast` of ``ds.forecast`` against ``ds.observed`` on pixels valid at ``t0`` and the valid time."""
    if "observed" not in ds or "forecast" not in ds:
        raise ConfigError("the nowcast has no observed frames to verify against")
    mask = np.isfinite(ds["last_observed"].values) if "last_observed" in ds else None
    pixel_km = float(ds.attrs.get("pixel_size_m", 1000.0)) / 1000.0
    scores = score_nowcast(
        ds["forecast"].transpose("lead_time", "y", "x").values,
        ds["observed"].transpose("lead_time", "y", "x").values,
        thresholds=thresholds,
        scales_km=scales_km,
        pixel_km=pixel_km,
        lead_minutes=ds["lead_time"].values,
        mask=None if mask is None else torch.from_numpy(mask),
    )
    if "members" in ds:
        scores = scores.assign(_ensemble_scores(ds, mask))
    valid_time = {"long_name": "valid time", "standard_name": "time"}
    scores = scores.assign_coords(valid_time=("lead_time", ds["valid_time"].values, valid_time))
    keep = ("source", "institution", "method", "motion", "issue_time", "checkpoint", "attribution")
    scores.attrs.update({k: ds.attrs[k] for k in keep if k in ds.attrs})
    if "title" in ds.attrs:
        scores.attrs["title"] = f"verification scores of the {ds.attrs['title']}"
    scores.attrs["verified_pixels"] = "finite in forecast and observation, and observed at the issue time"
    return scores


def _ensemble_scores(ds: xr.Dataset, mask: np.ndarray | None) -> dict[str, xr.DataArray]:
    """CRPS and spread–skill ratio per lead of ``ds.members`` against ``ds.observed``, on the scored pixels."""
    ens = ds["members"].transpose("member", "lead_time", "y", "x").values
    obs = ds["observed"].transpose("lead_time", "y", "x").values
    crps, ratio = [], []
    for k in range(obs.shape[0]):
        valid = np.isfinite(obs[k]) & np.isfinite(ens[:, k]).all(0) & (True if mask is None else mask)
        crps.append(float(crps_ensemble(ens[:, k], obs[k], valid)))
        ratio.append(spread_skill(ens[:, k], obs[k], valid)[2])
    about = {"long_name": "continuous ranked probability score of the members", "units": RAIN_RATE_UNITS}
    return {
        "crps": xr.DataArray(np.array(crps), dims="lead_time", attrs=about),
        "spread_skill": xr.DataArray(
            np.array(ratio), dims="lead_time", attrs={"long_name": "ensemble spread / RMSE of the mean", "units": "1"}
        ),
    }


def scores_table(scores: xr.Dataset) -> tuple[list[str], list[list[str]]]:
    """Header and rows (one per lead) of the score table: CSI per threshold, FSS per threshold and scale, MAE
    (and, for an ensemble, CRPS and spread–skill ratio)."""
    thr = [float(t) for t in scores["threshold"].values]
    scl = [float(s) for s in scores["scale"].values]
    header = ["lead_time_min", "valid_time", "n_valid"]
    header += [f"csi_{t:g}mmh" for t in thr]
    header += [f"fss_{t:g}mmh_{s:g}km" for t in thr for s in scl]
    header.append("mae_mmh")
    ensemble = "crps" in scores
    if ensemble:
        header += ["crps_mmh", "spread_skill"]
    rows = []
    for i, lead in enumerate(scores["lead_time"].values):
        row = [f"{lead:g}", hhmm(scores["valid_time"].values[i]) if "valid_time" in scores.coords else ""]
        row.append(str(int(scores["n_valid"].values[i])))
        row += [f"{scores['csi'].values[i, j]:.4f}" for j in range(len(thr))]
        row += [f"{scores['fss'].values[i, j, k]:.4f}" for j in range(len(thr)) for k in range(len(scl))]
        row.append(f"{scores['mae'].values[i]:.4f}")
        if ensemble:
            row += [f"{scores['crps'].values[i]:.4f}", f"{scores['spread_skill'].values[i]:.3f}"]
        rows.append(row)
    return header, rows


def write_scores(scores: xr.Dataset, out_dir: Path) -> tuple[Path, Path]:
    """Write ``scores.csv`` (the table) and ``scores.nc`` (every score) into ``out_dir``."""
    header, rows = scores_table(scores)
    csv_path, nc_path = out_dir / SCORES_CSV, out_dir / SCORES_NC
    with csv_path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    files.atomic_write(nc_path, scores.to_netcdf)
    return csv_path, nc_path


def make_plots(ds: xr.Dataset, scores: xr.Dataset | None, out_dir: Path) -> tuple[Path, ...]:
    """``panel.png`` (observed vs forecast, with observations), ``nowcast.gif``, ``skill.png`` (with scores)."""
    fc = ds["forecast"].values
    obs = ds["observed"].values if "observed" in ds else None
    minutes = list(ds["lead_time"].values)
    paths = []
    if obs is not None:
        n = len(minutes)
        leads = sorted({0, n // 3, (2 * n) // 3, n - 1})
        plot_frames(obs, {str(ds.attrs["method"]): fc}, leads, out_dir / "panel.png", lead_minutes=minutes)
        paths.append(out_dir / "panel.png")
    paths.append(save_nowcast_gif(fc, out_dir / "nowcast.gif", observed=obs, lead_minutes=minutes))
    if scores is not None:
        paths.append(write_skill_plot(scores, str(ds.attrs["method"]), out_dir))
    return tuple(paths)


def write_skill_plot(scores: xr.Dataset, method: str, out_dir: Path) -> Path:
    """``skill.png`` alone: the scores of ``method`` against lead time."""
    plot_skill({method: scores}, out_dir / "skill.png")
    return out_dir / "skill.png"


__all__ = [
    "NOWCAST_FILE",
    "SCORES_CSV",
    "SCORES_NC",
    "NowcastPaths",
    "NowcastResult",
    "make_plots",
    "nowcast_dataset",
    "score_dataset",
    "scores_table",
    "write_nowcast",
    "write_scores",
    "write_skill_plot",
]
