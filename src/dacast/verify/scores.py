"""All scores of a nowcast per lead time, as an `xarray.Dataset`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import numpy as np
import torch
import xarray as xr

from dacast import __version__
from dacast.verify._arrays import Array, paired
from dacast.verify.categorical import Contingency, contingency, csi, far, frequency_bias, pod
from dacast.verify.continuous import mae
from dacast.verify.spatial import fss

#: Rain rates and their thresholds are in mm/h; CF's ``rainfall_rate`` is in kg m-2 s-1, so no standard name.
RAIN_RATE = "mm h-1"


def _attrs(long_name: str, units: str = "1", **extra: str) -> dict[str, str]:
    """CF attributes of a score: dimensionless ("1") unless ``units`` says otherwise."""
    return {"long_name": long_name, "units": units, **extra}


def score_nowcast(
    forecast: Array,
    observed: Array,
    *,
    thresholds: Sequence[float] = (1.0, 5.0),
    scales_km: Sequence[float] = (10.0,),
    pixel_km: float = 1.0,
    lead_minutes: Sequence[float] | None = None,
    mask: Array | None = None,
) -> xr.Dataset:
    """CSI, POD, FAR, frequency bias, FSS and MAE of a nowcast for every lead time.

    Only pixels valid (finite) in both the forecast and the observation, and
    inside ``mask``, are verified; this holds for every score.

    Args:
        forecast: forecast rain rate, shape ``(lead, H, W)`` [mm/h]; NaN = missing.
        observed: observed rain rate at the same valid times, shape ``(lead, H, W)`` [mm/h].
        thresholds: rain-rate thresholds [mm/h]; categorical events are
            ``value > threshold`` (pysteps' ``det_cat_fct``), FSS events
            ``value >= threshold`` (pysteps' ``fss``).
        scales_km: FSS window edges [km], rounded to whole pixels.
        pixel_km: grid spacing [km].
        lead_minutes: lead time of each forecast step [min]; default 5, 10, ...
        mask: optional boolean, broadcastable to ``(lead, H, W)``; True = verify.

    Returns:
        CF-1.10 Dataset (``long_name`` and ``units`` on every variable; rain rates in
        ``mm h-1``, scores and counts ``1``) with coordinates ``lead_time`` [min], ``threshold`` [mm/h],
        ``scale`` [km] (and ``scale_pixels``); variables ``csi``, ``pod``,
        ``far``, ``frequency_bias``, ``hits``, ``misses``, ``false_alarms``,
        ``correct_negatives`` (lead_time, threshold), ``fss`` (lead_time,
        threshold, scale), ``mae`` [mm/h] and ``n_valid`` (lead_time).
    """
    f, o, valid = paired(forecast, observed, mask)
    if f.ndim != 3:
        raise ValueError(f"forecast and observed must have shape (lead, H, W), got {tuple(f.shape)}")
    n_leads = f.shape[0]
    leads = np.arange(1, n_leads + 1) * 5.0 if lead_minutes is None else np.asarray(lead_minutes, dtype=float)
    if leads.shape != (n_leads,):
        raise ValueError(f"lead_minutes has {leads.size} values for {n_leads} lead times")
    if pixel_km <= 0:
        raise ValueError(f"pixel_km must be positive, got {pixel_km}")
    nan = torch.tensor(float("nan"), dtype=f.dtype, device=f.device)
    f, o = torch.where(valid, f, nan), torch.where(valid, o, nan)
    scales_px = [max(1, round(s / pixel_km)) for s in scales_km]

    tables = [contingency(f, o, thr) for thr in thresholds]

    def per_threshold(score: Callable[[Contingency], torch.Tensor]) -> np.ndarray:
        return torch.stack([score(t) for t in tables], -1).cpu().numpy()

    fss_values = (
        torch.stack([torch.stack([fss(f, o, thr, px) for px in scales_px], -1) for thr in thresholds], -2).cpu().numpy()
    )
    dims2 = ("lead_time", "threshold")
    ds = xr.Dataset(
        {
            "csi": (dims2, per_threshold(csi), _attrs("critical success index (threat score)")),
            "pod": (dims2, per_threshold(pod), _attrs("probability of detection")),
            "far": (dims2, per_threshold(far), _attrs("false alarm ratio")),
            "frequency_bias": (dims2, per_threshold(frequency_bias), _attrs("frequency bias")),
            **{
                key: (
                    dims2,
                    per_threshold(lambda t, key=key: getattr(t, key)),
                    _attrs(f"number of {key.replace('_', ' ')}"),
                )
                for key in ("hits", "misses", "false_alarms", "correct_negatives")
            },
            "fss": (("lead_time", "threshold", "scale"), fss_values, _attrs("fractions skill score")),
            "mae": ("lead_time", mae(f, o).cpu().numpy(), _attrs("mean absolute error of the rain rate", RAIN_RATE)),
            "n_valid": ("lead_time", valid.sum((-2, -1)).cpu().numpy(), _attrs("number of verified pixels")),
        },
        coords={
            "lead_time": ("lead_time", leads, _attrs("forecast lead time", "min", standard_name="forecast_period")),
            "threshold": ("threshold", np.asarray(thresholds, dtype=float), _attrs("rain-rate threshold", RAIN_RATE)),
            "scale": ("scale", np.asarray(scales_km, dtype=float), _attrs("FSS window edge length", "km")),
            "scale_pixels": ("scale", np.asarray(scales_px, dtype=int), _attrs("FSS window edge length in pixels")),
        },
        attrs={
            "Conventions": "CF-1.10",
            "title": "nowcast verification scores by lead time",
            "source": f"dacast {__version__} (dacast.verify.score_nowcast)",
            "history": f"{datetime.now(UTC).isoformat(timespec='seconds')} dacast {__version__}: score_nowcast",
            "categorical_event": "value > threshold (pysteps det_cat_fct)",
            "fss_event": "value >= threshold (pysteps fss, Roberts & Lean 2008)",
            "pixel_km": float(pixel_km),
            "verified_pixels": "finite in forecast and observation (and inside mask)",
        },
    )
    return ds
