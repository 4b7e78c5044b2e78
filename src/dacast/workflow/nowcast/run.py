"""Radar nowcasts end to end: run a method at one issue time, score it, train a ConvLSTM.

This is what ``dacast nowcast run|verify|train`` calls; everything works from
Python too::

    from dacast.workflow.nowcast.run import NowcastRunConfig, run_nowcast, verify_nowcast

    config = NowcastRunConfig(source="mch", start="2015-05-15T16:30", method="extrapolation", n_leads=12)
    result = run_nowcast(config, "runs/nowcast/mch")
    print(result.scores["csi"].sel(threshold=1.0).values)

Files of a run (in the output folder):

* ``nowcast.nc``: ``forecast`` ``(lead_time, y, x)`` [mm/h], ``observed`` at the
  same valid times when any was found (NaN for a missing frame),
  ``last_observed`` ``(y, x)``, the frame at the issue time ``t0``; coordinates
  and attributes of the radar frames (projection, attribution, ...) plus the
  method, motion, issue time and checkpoint;
* ``scores.csv`` and ``scores.nc`` (`dacast.verify.score_nowcast` over the
  pixels valid at ``t0`` and at the valid time), when observations exist;
* ``panel.png`` (observed vs forecast), ``nowcast.gif``, ``skill.png``.

Scores and plots are made from ``nowcast.nc`` alone, so `verify_nowcast`
regenerates them at any time. Training configurations come from YAML through
`load_train_yaml` (schema in `dacast.workflow.nowcast.train`); that is the only
place YAML becomes a `NowcastTrainSpec`.
"""

from __future__ import annotations

import csv
import pickle
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import xarray as xr

from dacast import __version__
from dacast.io import SOURCES, RadarReadError, Source, default_radar_root, load_sequence
from dacast.io.sources import TimeLike, to_datetime64
from dacast.ml import ConvLSTMNowcaster, load_nowcaster, predict
from dacast.nowcast import ExtrapolationConfig, extrapolation_nowcast, persistence
from dacast.verify import plot_frames, plot_skill, save_nowcast_gif, score_nowcast
from dacast.workflow.twin.config import ConfigError
from dacast.workflow.nowcast.train import (
    MOTIONS,
    NowcastTrainSpec,
    TimeRange,
    TrainRun,
    extrapolation_config,
    load_train_yaml,
    read_training_sidecar,
    train_config_from_dict,
    train_from_spec,
    with_train_overrides,
)

Method = Literal["extrapolation", "persistence", "convlstm"]
Motion = Literal["trec", "farneback", "dis"]
Device = Literal["auto", "cpu", "cuda"]
METHODS: tuple[str, ...] = ("extrapolation", "persistence", "convlstm")
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")
TIMESTEP_MIN = 5
DEFAULT_LEADS = 12
NOWCAST_FILE = "nowcast.nc"
SCORES_CSV = "scores.csv"
SCORES_NC = "scores.nc"


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def _hhmm(t: np.datetime64) -> str:
    return str(np.datetime64(t, "m")).replace("T", " ")


def parse_time(value: TimeLike, where: str = "start") -> np.datetime64:
    """A UTC time (ISO string, naive = UTC) on the 5-min grid, as ``datetime64[ns]``; else `ConfigError`."""
    try:
        t = to_datetime64(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where} must be an ISO time such as 2015-05-15T16:30, got {value!r}") from None
    minutes = (t - t.astype("datetime64[D]")) / np.timedelta64(1, "m")
    _require(minutes % TIMESTEP_MIN == 0, f"{where} {_hhmm(t)} is not on the {TIMESTEP_MIN}-min grid of the radar")
    return t


def parse_floats(text: str, where: str) -> tuple[float, ...]:
    """``"1,5"`` -> ``(1.0, 5.0)``: positive, finite numbers; else `ConfigError`."""
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ConfigError(f"{where} must be comma-separated numbers such as 1,5, got {text!r}") from None
    _require(bool(values), f"{where} must name at least one value, got {text!r}")
    _require(all(np.isfinite(v) and v > 0 for v in values), f"{where} must be positive numbers, got {text!r}")
    return values


def _check_device(device: str) -> None:
    _require(device in DEVICES, f"device must be one of {', '.join(DEVICES)}; got {device!r}")
    _require(device != "cuda" or torch.cuda.is_available(), "device 'cuda' asked for, but CUDA is not available")


@dataclass(frozen=True, kw_only=True)
class NowcastRunConfig:
    """One nowcast at one issue time.

    Attributes:
        source: ``"mch"``, ``"fmi"`` or ``"knmi"``.
        start: issue time ``t0`` (UTC), the last observed frame; ISO strings are parsed.
        method: ``"extrapolation"``, ``"persistence"`` or ``"convlstm"``.
        motion: motion estimator of the extrapolation (``"trec"``, ``"farneback"``, ``"dis"``);
            None: ``"trec"``, or for ``convlstm`` the one the checkpoint was trained with.
        n_leads: lead times of 5 min; None: 12, or the checkpoint's ``t_out``.
        past_frames: frames used for the motion of ``extrapolation`` (>= 2).
        checkpoint: ``convlstm`` only: a ``.pt`` file or checkpoint folder of `dacast.ml.train_nowcast`.
        root: radar root; None: `dacast.io.default_radar_root`.
        thresholds: score thresholds [mm/h].
        scales_km: FSS windows [km].
        device: ``convlstm`` only: ``"auto"``, ``"cpu"`` or ``"cuda"``.
    """

    source: Source
    start: TimeLike
    method: Method = "extrapolation"
    motion: Motion | None = None
    n_leads: int | None = None
    past_frames: int = 3
    checkpoint: Path | None = None
    root: Path | None = None
    thresholds: tuple[float, ...] = (1.0, 5.0)
    scales_km: tuple[float, ...] = (10.0,)
    device: Device = "auto"

    def __post_init__(self) -> None:
        _require(self.source in SOURCES, f"unknown radar source {self.source!r}; choose one of: {', '.join(SOURCES)}")
        object.__setattr__(self, "start", parse_time(self.start))
        _require(self.method in METHODS, f"unknown method {self.method!r}; choose one of: {', '.join(METHODS)}")
        _require(
            self.motion is None or self.motion in MOTIONS,
            f"unknown motion method {self.motion!r}; choose one of: {', '.join(MOTIONS)}",
        )
        _require(self.motion is None or self.method != "persistence", "a motion method does not apply to persistence")
        _require(self.n_leads is None or self.n_leads >= 1, f"leads must be >= 1, got {self.n_leads}")
        _require(self.past_frames >= 2, f"too few past frames: past_frames must be >= 2, got {self.past_frames}")
        if self.method == "convlstm":
            _require(self.checkpoint is not None, "method convlstm needs a checkpoint (--checkpoint PATH)")
        else:
            _require(self.checkpoint is None, f"a checkpoint applies to method convlstm only, not {self.method}")
        for name in ("thresholds", "scales_km"):
            values = getattr(self, name)
            _require(bool(values) and min(values) > 0, f"{name} must be positive, got {values}")
        _require(self.device in DEVICES, f"device must be one of {', '.join(DEVICES)}; got {self.device!r}")


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
        missing_observed: valid times without an observed frame (not scored).
        paths: files written.
    """

    dataset: xr.Dataset
    scores: xr.Dataset | None
    missing_observed: tuple[np.datetime64, ...] = ()
    paths: NowcastPaths = field(default_factory=NowcastPaths)


# ----------------------------------------------------------------------------- data


def _root(root: Path | None) -> Path:
    if root is None:
        try:
            return default_radar_root()
        except FileNotFoundError as err:
            raise ConfigError(str(err)) from None
    _require(Path(root).is_dir(), f"radar root {root} is not an existing folder")
    return Path(root)


def load_past(source: str, t0: np.datetime64, n_frames: int, root: Path, *, purpose: str) -> xr.DataArray:
    """The ``n_frames`` frames ending at ``t0`` ``(time, y, x)`` [mm/h]; `RadarReadError` names every gap."""
    first = t0 - np.timedelta64((n_frames - 1) * TIMESTEP_MIN, "m")
    window = f"{_hhmm(first)}..{_hhmm(t0)[-5:]}"
    try:
        past, report = load_sequence(source, first, t0, root=root)
    except RadarReadError:
        past, report = None, None
    if report is None or not report.complete:
        gaps = (
            [*report.missing, *(u.time for u in report.unreadable)]
            if report is not None
            else [first + np.timedelta64(k * TIMESTEP_MIN, "m") for k in range(n_frames)]
        )
        found = 0 if report is None else len(report.found)
        detail = "; ".join(f"{u.path.name}: {u.error}" for u in report.unreadable) if report else ""
        raise RadarReadError(
            f"too few past frames for {purpose}: needs {n_frames} {source} frames {window} UTC, found {found}; "
            f"missing: {', '.join(_hhmm(t) for t in sorted(gaps))} under {root}" + (f" ({detail})" if detail else "")
        )
    return past.drop_vars("filename")


def load_observed(
    source: str, t0: np.datetime64, n_leads: int, root: Path
) -> tuple[xr.DataArray | None, tuple[np.datetime64, ...]]:
    """Observed frames at ``t0 + 5, ..., t0 + 5 n_leads`` min on a regular axis (NaN for gaps), and the gaps.

    Returns ``(None, all valid times)`` when no frame at all was found.
    """
    first = t0 + np.timedelta64(TIMESTEP_MIN, "m")
    try:
        obs, report = load_sequence(source, first, n_frames=n_leads, root=root)
    except RadarReadError:
        times = tuple(first + np.timedelta64(k * TIMESTEP_MIN, "m") for k in range(n_leads))
        return None, times
    obs = obs.drop_vars("filename").reindex(time=np.array(report.expected, dtype="datetime64[ns]"))
    return obs, report.gaps


# ----------------------------------------------------------------------------- methods


def _checkpoint_model(config: NowcastRunConfig) -> tuple[ConvLSTMNowcaster, ExtrapolationConfig | None, str | None]:
    path = Path(config.checkpoint)  # type: ignore[arg-type]
    if not path.exists():
        raise ConfigError(f"checkpoint not found: {path}")
    try:
        model = load_nowcaster(path, device="cpu")
    except FileNotFoundError as err:
        raise ConfigError(str(err)) from None
    except pickle.UnpicklingError:
        raise ConfigError(f"invalid checkpoint {path}: not a PyTorch checkpoint file") from None
    except KeyError as err:
        raise ConfigError(
            f"invalid checkpoint {path}: no {err} entry (not written by dacast.ml.train_nowcast)"
        ) from None
    except Exception as err:  # noqa: BLE001 - torch raises many kinds for a corrupt or foreign file
        text = " ".join(str(err).split())[:160]
        raise ConfigError(f"invalid checkpoint {path}: {type(err).__name__}: {text}") from None
    if not model.config.use_extrapolation:
        return model, None, None
    saved = read_training_sidecar(path)
    motion = config.motion or saved.get("motion", "trec")
    settings = {k: v for k, v in saved.items() if k != "motion"}
    if motion != saved.get("motion", "trec"):
        settings.pop("motion_options", None)  # options of another motion method
    settings["motion"] = motion
    return model, extrapolation_config(settings, "checkpoint extrapolation settings"), motion


def compute_forecast(config: NowcastRunConfig, root: Path) -> tuple[xr.DataArray, torch.Tensor, dict[str, str | int]]:
    """Past frames and the forecast of ``config.method``.

    Returns:
        ``(past, forecast, info)``: past ``(time, y, x)`` [mm/h]; forecast ``(n_leads, H, W)``
        [mm/h] float32 (NaN where there is no forecast); attributes describing the method.
    """
    info: dict[str, str | int] = {"method": config.method}
    if config.method == "persistence":
        n_leads = config.n_leads or DEFAULT_LEADS
        past = load_past(config.source, config.start, 1, root, purpose="persistence")
        return past, persistence(torch.from_numpy(past.values[-1]), n_leads), info
    if config.method == "extrapolation":
        n_leads = config.n_leads or DEFAULT_LEADS
        motion = config.motion or "trec"
        ext = extrapolation_config({"motion": motion, "n_frames": config.past_frames}, "extrapolation")
        past = load_past(config.source, config.start, config.past_frames, root, purpose="extrapolation")
        fc = extrapolation_nowcast(torch.from_numpy(past.values), n_leads, ext)
        return past, fc.float(), {**info, "motion": motion, "past_frames": config.past_frames}

    model, ext, motion = _checkpoint_model(config)
    mcfg = model.config
    _require(ext is None or mcfg.t_in >= 2, f"checkpoint {config.checkpoint}: an extrapolation input needs t_in >= 2")
    n_leads = config.n_leads or mcfg.t_out
    _require(
        n_leads <= mcfg.t_out,
        f"leads {n_leads} exceeds the {mcfg.t_out} leads the checkpoint {config.checkpoint} forecasts",
    )
    _check_device(config.device)
    past = load_past(config.source, config.start, mcfg.t_in, root, purpose=f"convlstm (t_in = {mcfg.t_in})")
    x = torch.from_numpy(past.values)
    extrapolation = None
    if ext is not None:
        extrapolation = extrapolation_nowcast(torch.nan_to_num(x, nan=0.0), mcfg.t_out, ext)
        info["motion"] = str(motion)
    fc = predict(model, x, extrapolation, device=config.device)[:n_leads]
    fc = torch.where(torch.isfinite(x[-1]), fc, torch.nan)  # no forecast where t0 has no data
    info.update(checkpoint=str(config.checkpoint), t_in=mcfg.t_in, use_extrapolation=int(mcfg.use_extrapolation))
    return past, fc, info


def nowcast_dataset(
    past: xr.DataArray,
    forecast: torch.Tensor | np.ndarray,
    observed: xr.DataArray | None,
    *,
    info: dict[str, str | int],
) -> xr.Dataset:
    """The Dataset written to ``nowcast.nc`` (see the module docstring).

    Args:
        past: observed rain rate up to the issue time, shape ``(time, y, x)`` [mm/h], as from
            `dacast.io.load_sequence` (its last frame is ``t0``; coords and attrs are kept).
        forecast: forecast rain rate, shape ``(lead, y, x)`` [mm/h], leads every 5 min from ``t0 + 5``.
        observed: observed rain rate at the valid times, shape ``(lead, y, x)`` [mm/h], or None.
        info: method, motion, checkpoint, ... (global attributes).
    """
    fc = np.asarray(torch.as_tensor(forecast).float().cpu().numpy(), dtype=np.float32)
    n_leads = fc.shape[0]
    t0 = past["time"].values[-1]
    leads = np.arange(1, n_leads + 1, dtype=float) * TIMESTEP_MIN
    valid = t0 + (leads * 60).astype("timedelta64[s]")
    coords = {
        "lead_time": ("lead_time", leads, {"units": "min", "long_name": "lead time"}),
        "valid_time": ("lead_time", valid.astype("datetime64[ns]"), {"long_name": "valid time (UTC)"}),
        "y": past["y"],
        "x": past["x"],
    }
    radar = {k: v for k, v in past.attrs.items() if isinstance(v, str | int | float)}
    about = {k: v for k, v in radar.items() if k not in ("long_name", "units")}
    dims = ("lead_time", "y", "x")
    data = {
        "forecast": (dims, fc, {**radar, "long_name": f"forecast rain rate ({info['method']})", "units": "mm/h"}),
        "last_observed": (("y", "x"), past.values[-1], {**radar, "long_name": "observed rain rate at issue time"}),
    }
    if observed is not None:
        data["observed"] = (dims, observed.values.astype(np.float32), {**radar, "long_name": "observed rain rate"})
    attrs = {
        **about,
        "title": f"dacast {info['method']} nowcast, {radar.get('source', '')} {_hhmm(t0)} UTC",
        **info,
        "issue_time": str(np.datetime64(t0, "s")),
        "timestep_min": TIMESTEP_MIN,
        "past_times": ", ".join(_hhmm(t) for t in past["time"].values),
        "dacast_version": __version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    return xr.Dataset(data, coords=coords, attrs=attrs)


def make_nowcast(config: NowcastRunConfig) -> tuple[xr.Dataset, tuple[np.datetime64, ...]]:
    """The nowcast Dataset of ``config`` (nothing is written) and the valid times without observation."""
    root = _root(config.root)
    past, fc, info = compute_forecast(config, root)
    observed, gaps = load_observed(config.source, config.start, fc.shape[0], root)
    return nowcast_dataset(past, fc, observed, info=info), gaps


# ----------------------------------------------------------------------------- scores


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
    scores = scores.assign_coords(valid_time=("lead_time", ds["valid_time"].values))
    keep = ("source", "method", "motion", "issue_time", "checkpoint", "attribution")
    scores.attrs.update({k: ds.attrs[k] for k in keep if k in ds.attrs})
    scores.attrs["verified_pixels"] = "finite in forecast and observation, and observed at the issue time"
    return scores


def scores_table(scores: xr.Dataset) -> tuple[list[str], list[list[str]]]:
    """Header and rows (one per lead) of the score table: CSI per threshold, FSS per threshold and scale, MAE."""
    thr = [float(t) for t in scores["threshold"].values]
    scl = [float(s) for s in scores["scale"].values]
    header = ["lead_time_min", "valid_time", "n_valid"]
    header += [f"csi_{t:g}mmh" for t in thr]
    header += [f"fss_{t:g}mmh_{s:g}km" for t in thr for s in scl]
    header.append("mae_mmh")
    rows = []
    for i, lead in enumerate(scores["lead_time"].values):
        row = [f"{lead:g}", _hhmm(scores["valid_time"].values[i]) if "valid_time" in scores.coords else ""]
        row.append(str(int(scores["n_valid"].values[i])))
        row += [f"{scores['csi'].values[i, j]:.4f}" for j in range(len(thr))]
        row += [f"{scores['fss'].values[i, j, k]:.4f}" for j in range(len(thr)) for k in range(len(scl))]
        row.append(f"{scores['mae'].values[i]:.4f}")
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
    scores.to_netcdf(nc_path)
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
        plot_skill({str(ds.attrs["method"]): scores}, out_dir / "skill.png")
        paths.append(out_dir / "skill.png")
    return tuple(paths)


def run_nowcast(config: NowcastRunConfig, out_dir: str | Path, *, plots: bool = True) -> NowcastResult:
    """Make the nowcast of ``config``, write ``nowcast.nc``, scores (with observations) and plots into ``out_dir``.

    Raises:
        ConfigError: bad settings, checkpoint or radar root.
        RadarReadError: past frames missing or unreadable (the message names the times).
    """
    ds, gaps = make_nowcast(config)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ds.to_netcdf(out / NOWCAST_FILE, encoding={v: {"zlib": True, "complevel": 4} for v in ds.data_vars})
    scores, csv_path, nc_path = None, None, None
    if "observed" in ds:
        scores = score_dataset(ds, thresholds=config.thresholds, scales_km=config.scales_km)
        csv_path, nc_path = write_scores(scores, out)
    figs = make_plots(ds, scores, out) if plots else ()
    paths = NowcastPaths(nowcast=out / NOWCAST_FILE, scores_csv=csv_path, scores_nc=nc_path, plots=figs)
    return NowcastResult(dataset=ds, scores=scores, missing_observed=gaps, paths=paths)


def verify_nowcast(
    path: str | Path,
    out_dir: str | Path | None = None,
    *,
    thresholds: Sequence[float] = (1.0, 5.0),
    scales_km: Sequence[float] = (10.0,),
    plots: bool = True,
) -> NowcastResult:
    """Score a written ``nowcast.nc`` again; write ``scores.csv``, ``scores.nc`` (and ``skill.png``).

    Args:
        path: a file written by `run_nowcast`.
        out_dir: output folder (default: the file's folder).
        thresholds: rain-rate thresholds [mm/h].
        scales_km: FSS windows [km].
        plots: also write ``skill.png``.
    """
    path = Path(path)
    _require(path.is_file(), f"file not found: {path}")
    try:
        ds = xr.load_dataset(path)
    except Exception as err:  # noqa: BLE001 - netCDF/HDF5 backends raise many kinds
        raise ConfigError(f"cannot read {path} as netCDF: {' '.join(str(err).split())[:200]}") from None
    _require("forecast" in ds, f"{path} is not a dacast nowcast (no 'forecast' variable)")
    _require("observed" in ds, f"{path} has no observed frames to verify against")
    _require(bool(thresholds) and min(thresholds) > 0, f"thresholds must be positive, got {tuple(thresholds)}")
    _require(bool(scales_km) and min(scales_km) > 0, f"scales_km must be positive, got {tuple(scales_km)}")
    scores = score_dataset(ds, thresholds=thresholds, scales_km=scales_km)
    out = path.parent if out_dir is None else Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv_path, nc_path = write_scores(scores, out)
    figs: tuple[Path, ...] = ()
    if plots:
        plot_skill({str(ds.attrs.get("method", "forecast")): scores}, out / "skill.png")
        figs = (out / "skill.png",)
    gaps = tuple(ds["valid_time"].values[~np.isfinite(ds["observed"].values).any(axis=(1, 2))])
    paths = NowcastPaths(nowcast=path, scores_csv=csv_path, scores_nc=nc_path, plots=figs)
    return NowcastResult(dataset=ds, scores=scores, missing_observed=gaps, paths=paths)


__all__ = [
    "METHODS",
    "MOTIONS",
    "NowcastPaths",
    "NowcastResult",
    "NowcastRunConfig",
    "NowcastTrainSpec",
    "TimeRange",
    "TrainRun",
    "compute_forecast",
    "load_observed",
    "load_past",
    "load_train_yaml",
    "make_nowcast",
    "make_plots",
    "nowcast_dataset",
    "parse_floats",
    "parse_time",
    "run_nowcast",
    "score_dataset",
    "scores_table",
    "train_config_from_dict",
    "train_from_spec",
    "verify_nowcast",
    "with_train_overrides",
    "write_scores",
]
