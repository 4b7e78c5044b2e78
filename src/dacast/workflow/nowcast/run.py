"""Radar nowcasts end to end: run a method at one issue time, write it, score it again later.

This is what ``dacast nowcast run|verify`` calls; everything works from Python too::

    from dacast.workflow.nowcast.config import NowcastRunConfig
    from dacast.workflow.nowcast.run import run_nowcast

    config = NowcastRunConfig(source="mch", start="2015-05-15T16:30", method="extrapolation", n_leads=12)
    result = run_nowcast(config, "runs/nowcast/mch")
    print(result.scores["csi"].sel(threshold=1.0).values)

The settings are in `dacast.workflow.nowcast.config`, the files written (``nowcast.nc``,
``scores.csv``, ``scores.nc``, plots) in `dacast.workflow.nowcast.output`, the training of
a ConvLSTM in `dacast.workflow.nowcast.train`.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import xarray as xr

from dacast.io import RadarReadError, SequenceReadError, UnreadableFrame, load_sequence
from dacast.ml import MultiResNowcaster, Nowcaster, load_nowcaster, predict, predict_ensemble
from dacast.nowcast import ExtrapolationConfig, extrapolation_nowcast, persistence
from dacast.workflow.nowcast.config import (
    DEFAULT_LEADS,
    TIMESTEP_MIN,
    NowcastRunConfig,
    check_device,
    extrapolation_config,
    hhmm,
    radar_root,
)
from dacast.workflow.nowcast.output import (
    NowcastPaths,
    NowcastResult,
    make_plots,
    nowcast_dataset,
    score_dataset,
    write_nowcast,
    write_scores,
    write_skill_plot,
)
from dacast.workflow.nowcast.train import read_training_sidecar
from dacast.workflow.runtime import progress as progress_bar
from dacast.workflow.runtime import tune_malloc
from dacast.workflow.schema import ConfigError, require

UNREADABLE_ATTR = "unreadable_observed"
"""Global attribute of ``nowcast.nc`` listing the observed files that could not be read (JSON)."""


def default_out_dir(config: NowcastRunConfig) -> Path:
    """``runs/nowcast/SOURCE-YYYYMMDDHHMM-METHOD``: where ``dacast nowcast run`` writes by default."""
    stamp = str(np.datetime64(config.start, "m")).replace("-", "").replace(":", "").replace("T", "")
    return Path("runs") / "nowcast" / f"{config.source}-{stamp}-{config.method}"


def load_past(source: str, t0: np.datetime64, n_frames: int, root: Path, *, purpose: str) -> xr.DataArray:
    """The ``n_frames`` frames ending at ``t0`` ``(time, y, x)`` [mm/h]; `RadarReadError` names every gap."""
    first = t0 - np.timedelta64((n_frames - 1) * TIMESTEP_MIN, "m")
    window = f"{hhmm(first)}..{hhmm(t0)[-5:]}"
    try:
        past, report = load_sequence(source, first, t0, root=root)
    except SequenceReadError as err:  # not one frame readable: the report still names every bad file
        past, report = None, err.report
    if past is None or not report.complete:
        detail = "; ".join(f"{u.path.name}: {u.error}" for u in report.unreadable)
        raise RadarReadError(
            f"too few past frames for {purpose}: needs {n_frames} {source} frames {window} UTC, "
            f"found {len(report.found)}; missing: {', '.join(hhmm(t) for t in report.gaps)} under {root}"
            + (f" ({detail})" if detail else "")
        )
    return past.drop_vars("filename")


def load_observed(
    source: str, t0: np.datetime64, n_leads: int, root: Path, *, like: xr.DataArray | None = None
) -> tuple[xr.DataArray | None, tuple[np.datetime64, ...], tuple[UnreadableFrame, ...]]:
    """Observed frames at ``t0 + 5, ..., t0 + 5 n_leads`` min on a regular axis (NaN for gaps).

    Args:
        source: radar source.
        t0: issue time.
        n_leads: number of 5-min leads.
        root: radar root.
        like: the past frames; observed frames on another grid count as unreadable.

    Returns:
        ``(observed, missing, unreadable)``: ``observed`` ``(n_leads, y, x)`` [mm/h], or None when no
        frame could be read; the valid times without a file; the files that exist but could not be
        read (or are on another grid), each with its error. Neither kind is ever dropped silently.
    """
    first = t0 + np.timedelta64(TIMESTEP_MIN, "m")
    try:
        obs, report = load_sequence(source, first, n_frames=n_leads, root=root)
    except SequenceReadError as err:
        return None, err.report.missing, err.report.unreadable
    if like is not None and not (np.array_equal(obs.x, like.x) and np.array_equal(obs.y, like.y)):
        error = f"grid {obs.shape[1:]} differs from the past frames' {like.shape[1:]} (or its coordinates do)"
        bad = [
            UnreadableFrame(time=t, path=f, error=f"cannot use {f}: {error}")
            for t, f in zip(report.found, report.files, strict=True)
        ]
        return None, report.missing, tuple(sorted([*report.unreadable, *bad], key=lambda u: u.time))
    obs = obs.drop_vars("filename").reindex(time=np.array(report.expected, dtype="datetime64[ns]"))
    return obs, report.missing, report.unreadable


def _encode_unreadable(frames: Sequence[UnreadableFrame]) -> str:
    return json.dumps([[str(np.datetime64(u.time, "s")), str(u.path), u.error] for u in frames])


def unreadable_observed(ds: xr.Dataset) -> tuple[UnreadableFrame, ...]:
    """The unreadable observed files recorded in a nowcast Dataset (``()`` if none, or if the record is damaged)."""
    try:
        rows = json.loads(str(ds.attrs.get(UNREADABLE_ATTR, "[]")))
        return tuple(UnreadableFrame(time=np.datetime64(t, "ns"), path=Path(p), error=str(e)) for t, p, e in rows)
    except (ValueError, TypeError):
        return ()


def _split_gaps(gaps: Sequence[np.datetime64], unreadable: Sequence[UnreadableFrame]) -> tuple[np.datetime64, ...]:
    """The valid times of ``gaps`` that are not the time of an unreadable file."""
    bad = {np.datetime64(u.time, "ns") for u in unreadable}
    return tuple(t for t in gaps if np.datetime64(t, "ns") not in bad)


def load_checkpoint(path: Path) -> Nowcaster:
    """The nowcaster saved at ``path`` (a ``.pt`` file or a training folder), on the CPU in eval mode.

    Raises:
        ConfigError: every way a file can fail to be one (missing, not PyTorch, foreign, corrupt), in one line.
    """
    if not path.exists():
        raise ConfigError(f"checkpoint not found: {path}")
    try:
        return load_nowcaster(path, device="cpu")
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


def checkpoint_model(path: Path, motion: str | None = None) -> tuple[Nowcaster, ExtrapolationConfig | None, str | None]:
    """The nowcaster at ``path`` and, when it reads an extrapolation nowcast, the settings to make that input.

    Args:
        path: the checkpoint (`load_checkpoint`).
        motion: motion method of the extrapolation input (``None``: the one it was trained with, saved
            beside the checkpoint by ``dacast nowcast train``; TREC when nothing was saved).

    Returns:
        ``(model, extrapolation settings or None, motion or None)``.
    """
    model = load_checkpoint(path)
    mc = model.config
    channels = (mc.in_channels, mc.extra_channels if mc.use_extrapolation else 1)
    require(
        channels == (1, 1),
        f"checkpoint {path} reads {mc.in_channels} channel(s) per past frame"
        + (f" and {mc.extra_channels} per extrapolation lead" if mc.use_extrapolation else "")
        + "; radar nowcasts give it 1 (log rain rate)",
    )
    if not mc.use_extrapolation:
        return model, None, None
    saved = read_training_sidecar(path)
    motion = motion or saved.get("motion", "trec")
    settings = {k: v for k, v in saved.items() if k != "motion"}
    if motion != saved.get("motion", "trec"):
        settings.pop("motion_options", None)  # options of another motion method
    settings["motion"] = motion
    return model, extrapolation_config(settings, "checkpoint extrapolation settings"), motion


def convlstm_nowcast(
    model: Nowcaster,
    extrapolation: ExtrapolationConfig | None,
    past: torch.Tensor,
    n_leads: int,
    *,
    device: str = "auto",
    extrapolation_input: torch.Tensor | None = None,
) -> torch.Tensor:
    """The nowcast of a trained ConvLSTM from its ``t_in`` past frames.

    Args:
        model: from `checkpoint_model`.
        extrapolation: the settings of its extrapolation input (`checkpoint_model`; ``None``: it reads none).
        past: ``(t_in, H, W)`` rain rate [mm/h], oldest first, 5 min apart; NaN = no data.
        n_leads: leads to keep (<= ``model.config.t_out``).
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
        extrapolation_input: the extrapolation nowcast ``(t_out, H, W)`` [mm/h] when already made (else it is
            made here from ``extrapolation``).

    Returns:
        ``(n_leads, H, W)`` [mm/h] float32; NaN where the last past frame has no data.
    """
    extra = extrapolation_input
    if extrapolation is not None and extra is None:
        extra = extrapolation_nowcast(torch.nan_to_num(past, nan=0.0), model.config.t_out, extrapolation)
    fc = predict(model, past, extra, device=device)[:n_leads]
    return torch.where(torch.isfinite(past[-1]), fc, torch.nan)  # no forecast where t0 has no data


class Forecast(NamedTuple):
    """What `compute_forecast` returns.

    Attributes:
        past: past frames ``(time, y, x)`` [mm/h].
        forecast: ``(n_leads, H, W)`` [mm/h] float32 (NaN where there is no forecast).
        info: attributes describing the method.
        members: ``(members, n_leads, H, W)`` [mm/h] of an ensemble run (``config.members``), else None.
    """

    past: xr.DataArray
    forecast: torch.Tensor
    info: dict[str, str | int]
    members: torch.Tensor | None = None


def _convlstm_forecast(config: NowcastRunConfig, root: Path, info: dict[str, str | int]) -> Forecast:
    tune_malloc()  # the network's full-size temporaries stay in the heap (20 members: 36 s -> 31 s)
    model, ext, motion = checkpoint_model(Path(config.checkpoint), config.motion)  # type: ignore[arg-type]
    mcfg = model.config
    require(ext is None or mcfg.t_in >= 2, f"checkpoint {config.checkpoint}: an extrapolation input needs t_in >= 2")
    n_leads = config.n_leads or mcfg.t_out
    require(
        n_leads <= mcfg.t_out,
        f"leads {n_leads} exceeds the {mcfg.t_out} leads the checkpoint {config.checkpoint} forecasts",
    )
    ensemble = isinstance(model, MultiResNowcaster) and model.is_ensemble
    require(
        config.members is None or ensemble,
        f"checkpoint {config.checkpoint} is not an ensemble network (noise_channels = 0); leave out --members",
    )
    check_device(config.device)
    past = load_past(config.source, config.start, mcfg.t_in, root, purpose=f"convlstm (t_in = {mcfg.t_in})")
    frames = torch.from_numpy(past.values)
    extra = None
    if ext is not None:
        extra = extrapolation_nowcast(torch.nan_to_num(frames, nan=0.0), mcfg.t_out, ext)
        info["motion"] = str(motion)
    fc = convlstm_nowcast(model, ext, frames, n_leads, device=config.device, extrapolation_input=extra)
    members = None
    if config.members is not None:
        assert isinstance(model, MultiResNowcaster)
        with progress_bar("members", config.members) as update:
            ens = predict_ensemble(
                model, frames, extra, members=config.members, seed=0, device=config.device, on_member=update
            )
        members = torch.where(torch.isfinite(frames[-1]), ens[:, :n_leads], torch.nan)
        info["members"] = config.members
    info.update(checkpoint=str(config.checkpoint), t_in=mcfg.t_in, use_extrapolation=int(mcfg.use_extrapolation))
    if ensemble:
        info["deterministic_member"] = "central (latent noise 0)"
    return Forecast(past, fc, info, members)


def compute_forecast(config: NowcastRunConfig, root: Path) -> Forecast:
    """Past frames and the forecast of ``config.method`` (and its ensemble members with ``config.members``)."""
    info: dict[str, str | int] = {"method": config.method}
    if config.method == "persistence":
        n_leads = config.n_leads or DEFAULT_LEADS
        past = load_past(config.source, config.start, 1, root, purpose="persistence")
        return Forecast(past, persistence(torch.from_numpy(past.values[-1]), n_leads), info)
    if config.method == "extrapolation":
        n_leads = config.n_leads or DEFAULT_LEADS
        motion = config.motion or "trec"
        ext = extrapolation_config({"motion": motion, "n_frames": config.past_frames}, "extrapolation")
        past = load_past(config.source, config.start, config.past_frames, root, purpose="extrapolation")
        fc = extrapolation_nowcast(torch.from_numpy(past.values), n_leads, ext)
        return Forecast(past, fc.float(), {**info, "motion": motion, "past_frames": config.past_frames})
    return _convlstm_forecast(config, root, info)


def make_nowcast(config: NowcastRunConfig) -> tuple[xr.Dataset, tuple[np.datetime64, ...]]:
    """The nowcast Dataset of ``config`` (nothing is written) and the valid times without observation.

    Those times are the missing observed files and the unreadable ones; the unreadable files, with
    their errors, are also listed in the Dataset's ``unreadable_observed`` attribute (see
    `unreadable_observed`), so ``nowcast.nc`` keeps them for `verify_nowcast`.
    """
    root = radar_root(config.root)
    past, fc, info, members = compute_forecast(config, root)
    observed, missing, unreadable = load_observed(config.source, config.start, fc.shape[0], root, like=past)
    ds = nowcast_dataset(past, fc, observed, info=info, members=members, thresholds=config.thresholds)
    if unreadable:
        ds.attrs[UNREADABLE_ATTR] = _encode_unreadable(unreadable)
    return ds, tuple(sorted([*missing, *(u.time for u in unreadable)]))


def run_nowcast(config: NowcastRunConfig, out_dir: str | Path, *, plots: bool = True) -> NowcastResult:
    """Make the nowcast of ``config``, write ``nowcast.nc``, scores (with observations) and plots into ``out_dir``.

    An observed frame that is missing or cannot be read does not stop the run: its lead is not
    scored, and the result lists it (``missing_observed`` / ``unreadable_observed``, with the file
    and the error).

    Raises:
        ConfigError: bad settings, checkpoint or radar root.
        RadarReadError: past frames missing or unreadable (the message names the times and files).
    """
    ds, gaps = make_nowcast(config)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    nowcast_path = write_nowcast(ds, out)
    scores, csv_path, nc_path = None, None, None
    if "observed" in ds:
        scores = score_dataset(ds, thresholds=config.thresholds, scales_km=config.scales_km)
        csv_path, nc_path = write_scores(scores, out)
    figs = make_plots(ds, scores, out) if plots else ()
    return _result(
        ds, scores, gaps, NowcastPaths(nowcast=nowcast_path, scores_csv=csv_path, scores_nc=nc_path, plots=figs)
    )


def _result(ds: xr.Dataset, scores: xr.Dataset | None, gaps: tuple, paths: NowcastPaths) -> NowcastResult:
    """The `NowcastResult` of ``ds``: observed frames that were unreadable are reported as such, not as gaps."""
    unreadable = unreadable_observed(ds)
    return NowcastResult(
        dataset=ds,
        scores=scores,
        missing_observed=_split_gaps(gaps, unreadable),
        unreadable_observed=unreadable,
        paths=paths,
    )


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
    require(path.is_file(), f"file not found: {path}")
    try:
        ds = xr.load_dataset(path)
    except Exception as err:  # noqa: BLE001 - netCDF/HDF5 backends raise many kinds
        raise ConfigError(f"cannot read {path} as netCDF: {' '.join(str(err).split())[:200]}") from None
    require("forecast" in ds, f"{path} is not a dacast nowcast (no 'forecast' variable)")
    require("observed" in ds, f"{path} has no observed frames to verify against")
    require(bool(thresholds) and min(thresholds) > 0, f"thresholds must be positive, got {tuple(thresholds)}")
    require(bool(scales_km) and min(scales_km) > 0, f"scales_km must be positive, got {tuple(scales_km)}")
    scores = score_dataset(ds, thresholds=thresholds, scales_km=scales_km)
    out = path.parent if out_dir is None else Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv_path, nc_path = write_scores(scores, out)
    figs = (write_skill_plot(scores, str(ds.attrs.get("method", "forecast")), out),) if plots else ()
    gaps = tuple(ds["valid_time"].values[~np.isfinite(ds["observed"].values).any(axis=(1, 2))])
    return _result(ds, scores, gaps, NowcastPaths(nowcast=path, scores_csv=csv_path, scores_nc=nc_path, plots=figs))


__all__ = [
    "Forecast",
    "checkpoint_model",
    "compute_forecast",
    "convlstm_nowcast",
    "default_out_dir",
    "load_checkpoint",
    "load_observed",
    "load_past",
    "make_nowcast",
    "run_nowcast",
    "unreadable_observed",
    "verify_nowcast",
]
