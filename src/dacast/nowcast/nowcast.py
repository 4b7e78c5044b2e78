"""The whole extrapolation nowcast, rain rate in and rain rate out.

Motion is estimated on dBR (``10 log10 R``, threshold 0.1 mm/h, zero value
-15 dBR) of the last ``n_frames`` frames, as in pysteps' gallery, and the last
frame is extrapolated along it, in dBR by default (as pysteps' gallery does)
or directly in rain rate.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

import torch
from torch import Tensor

from dacast.nowcast.extrapolation import extrapolate
from dacast.nowcast.motion.block_matching import trec
from dacast.nowcast.motion.opencv_flow import optical_flow
from dacast.nowcast.transform import from_dbr, to_dbr


@dataclass(frozen=True, kw_only=True)
class TRECConfig:
    """Parameters of `dacast.nowcast.trec` (same names; see there)."""

    block: int = 32
    search: int = 10
    stride: int = 8
    min_corr: float = 0.5
    min_std: float = 0.5
    max_nan_fraction: float = 0.5
    max_deviation: float = 3.0
    sigma: float = 1.0

    def __post_init__(self) -> None:
        if min(self.block, self.search, self.stride) < 1:
            raise ValueError("TREC block, search and stride must be positive")


@dataclass(frozen=True, kw_only=True)
class OpticalFlowConfig:
    """Parameters of `dacast.nowcast.optical_flow` (same names; see there)."""

    method: Literal["farneback", "dis"] = "dis"
    sigma: float = 0.0
    dis_preset: Literal["ultrafast", "fast", "medium"] = "medium"

    def __post_init__(self) -> None:
        if self.method not in ("farneback", "dis"):
            raise ValueError(f"unknown optical-flow method {self.method!r}; choose one of: dis, farneback")


@dataclass(frozen=True, kw_only=True)
class ExtrapolationConfig:
    """An extrapolation nowcast.

    Attributes:
        motion: motion estimator and its parameters.
        n_frames: input frames used for the motion (their consecutive pairs are averaged).
        threshold: lowest rain rate of the dBR transform [mm/h].
        zerovalue: dBR of rain rates below ``threshold`` [dB].
        space: where the field is interpolated: ``"dbr"`` (pysteps' gallery) or ``"rain"``.
        missing: ``"nan"`` keeps missing input pixels missing in the forecast;
            ``"no_rain"`` sets them to no rain first (pysteps' gallery).
        substeps: sub-steps of the trajectory integration per time step.
        precision: dtype of the extrapolation; float32 (default) halves its
            time against float64 for ~1e-4 pixel rounding of the departure points.
    """

    motion: TRECConfig | OpticalFlowConfig = field(default_factory=TRECConfig)
    n_frames: int = 3
    threshold: float = 0.1
    zerovalue: float = -15.0
    space: Literal["dbr", "rain"] = "dbr"
    missing: Literal["nan", "no_rain"] = "nan"
    substeps: int = 1
    precision: Literal["float32", "float64"] = "float32"

    def __post_init__(self) -> None:
        if self.n_frames < 2:
            raise ValueError(f"n_frames must be >= 2, got {self.n_frames}")
        if self.threshold <= 0:
            raise ValueError(f"threshold must be positive, got {self.threshold}")
        if self.space not in ("dbr", "rain"):
            raise ValueError(f"unknown space {self.space!r}; choose one of: dbr, rain")
        if self.missing not in ("nan", "no_rain"):
            raise ValueError(f"unknown missing {self.missing!r}; choose one of: nan, no_rain")
        if self.substeps < 1:
            raise ValueError(f"substeps must be >= 1, got {self.substeps}")
        if self.precision not in ("float32", "float64"):
            raise ValueError(f"unknown precision {self.precision!r}; choose one of: float32, float64")


def estimate_motion(frames: Tensor, config: ExtrapolationConfig) -> Tensor:
    """Motion field of the last ``config.n_frames`` rain-rate frames, estimated on dBR.

    Args:
        frames: rain rate, shape ``(T, H, W)`` [mm/h], oldest first; NaN = missing.
        config: the nowcast configuration.

    Returns:
        Motion field, shape ``(2, H, W)`` [pixels per time step], ``u`` (+x) then ``v`` (+y, down).
    """
    if frames.ndim != 3 or frames.shape[0] < 2:
        raise ValueError(f"frames must have shape (T>=2, H, W), got {tuple(frames.shape)}")
    db = to_dbr(frames[-config.n_frames :], threshold=config.threshold, zerovalue=config.zerovalue)
    if isinstance(config.motion, TRECConfig):
        return trec(db, **asdict(config.motion))
    return optical_flow(db, **asdict(config.motion))


def extrapolation_nowcast(
    frames: Tensor, n_leads: int, config: ExtrapolationConfig | None = None, *, motion: Tensor | None = None
) -> Tensor:
    """Extrapolation nowcast in rain rate.

    Args:
        frames: observed rain rate, shape ``(T, H, W)`` [mm/h], oldest first,
            equally spaced; NaN = missing. The last frame is extrapolated.
        n_leads: number of lead times, in steps of the frame spacing.
        config: the nowcast configuration (default `ExtrapolationConfig()`).
        motion: a precomputed motion field, shape ``(2, H, W)`` [pixels per
            step]; estimated from ``frames`` when omitted.

    Returns:
        Forecast rain rate, shape ``(n_leads, H, W)`` [mm/h]; NaN where the
        trajectory starts outside the grid (or, with ``missing="nan"``, in
        missing data).
    """
    config = config or ExtrapolationConfig()
    if motion is None:
        motion = estimate_motion(frames, config)
    dtype = getattr(torch, config.precision)
    last = frames[-1].to(dtype)
    motion = motion.to(dtype)
    if config.missing == "no_rain":
        last = last.nan_to_num(nan=0.0)
    if config.space == "rain":
        return extrapolate(last, motion, n_leads, substeps=config.substeps)
    db = to_dbr(last, threshold=config.threshold, zerovalue=config.zerovalue)
    return from_dbr(extrapolate(db, motion, n_leads, substeps=config.substeps), threshold=config.threshold)
