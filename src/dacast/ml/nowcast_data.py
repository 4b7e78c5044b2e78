"""Training samples for ConvLSTM nowcasting: random crops of radar rain-rate sequences.

Input arrays are ``(time, y, x)`` rain rates in mm/h, NumPy arrays or
`xarray.DataArray`s (as returned by ``dacast.io.load_sequence``), with NaN
where there is no data. One sample is a window of ``t_in`` past and ``t_out``
future frames at a random place and time, cropped to ``crop_size²`` pixels;
NaN becomes 0 with a mask, and rain becomes log-rain ``z = log(1 + R)``
(`dacast.ml.rain_to_log`).

Each sample is a pure function of ``(seed, index)``, so a dataset gives the
same sample for an index in any process, order or resumed run.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeAlias, TypeVar

import numpy as np
import torch
import xarray as xr
from torch import Tensor
from torch.utils.data import Dataset

from dacast.ml.convlstm import rain_to_log

__all__ = [
    "ExtrapolationFn",
    "NowcastDataConfig",
    "RainArray",
    "RainCropDataset",
    "moving_blobs",
    "split_by_time",
]

RainArray: TypeAlias = np.ndarray | xr.DataArray
#: ``fn(past, n_leads) -> nowcast``: past ``(T_in, H, W)`` mm/h (NaN set to 0) to ``(n_leads, H, W)`` or
#: ``(n_leads, C, H, W)`` mm/h, e.g. ``lambda f, n: dacast.nowcast.extrapolation_nowcast(f, n, config)``.
ExtrapolationFn: TypeAlias = Callable[[Tensor, int], Tensor]
_A = TypeVar("_A", np.ndarray, xr.DataArray)


@dataclass(frozen=True, kw_only=True)
class NowcastDataConfig:
    """How samples are cut from the rain sequences.

    Attributes:
        t_in: past frames per sample.
        t_out: future frames per sample.
        crop_size: side of the square crop in pixels (a multiple of the network's `spatial_multiple`).
        min_valid_fraction: least fraction of non-NaN pixels over the whole window.
        min_rain_fraction: least fraction of valid pixels with rain ``>= rain_threshold`` over the window.
        rain_threshold: rain rate in mm/h counted as rain.
        samples_per_epoch: length of the dataset (samples are drawn lazily).
        max_tries: random windows tried per sample; if none passes, the best one tried is used.
    """

    t_in: int = 6
    t_out: int = 12
    crop_size: int = 128
    min_valid_fraction: float = 0.9
    min_rain_fraction: float = 0.05
    rain_threshold: float = 0.1
    samples_per_epoch: int = 1000
    max_tries: int = 50

    def __post_init__(self) -> None:
        if self.t_in < 1 or self.t_out < 1 or self.crop_size < 1:
            raise ValueError("t_in, t_out and crop_size must be >= 1")
        if not (0.0 <= self.min_valid_fraction <= 1.0 and 0.0 <= self.min_rain_fraction <= 1.0):
            raise ValueError("min_valid_fraction and min_rain_fraction must be in [0, 1]")
        if self.samples_per_epoch < 1 or self.max_tries < 1:
            raise ValueError("samples_per_epoch and max_tries must be >= 1")

    @property
    def window(self) -> int:
        """Frames per sample, ``t_in + t_out``."""
        return self.t_in + self.t_out


def _as_numpy(a: RainArray) -> np.ndarray:
    """``(time, y, x)`` float32 array from a NumPy array or DataArray (dims reordered if named so)."""
    if isinstance(a, xr.DataArray):
        if {"time", "y", "x"} <= set(a.dims):
            a = a.transpose("time", "y", "x", ...)
        arr = np.asarray(a.values)
    else:
        arr = np.asarray(a)
    if arr.ndim != 3:
        raise ValueError(f"rain arrays must be (time, y, x), got shape {arr.shape}")
    return np.ascontiguousarray(arr, dtype=np.float32)


class RainCropDataset(Dataset[dict[str, Tensor]]):
    """Random space–time crops of rain sequences, drawn deterministically from ``(seed, index)``.

    Each item is a dict of tensors (``h = w = crop_size``):

    * ``"past"``: ``(t_in, 1, h, w)`` log-rain; ``"future"``: ``(t_out, 1, h, w)`` log-rain;
    * ``"past_mask"``, ``"future_mask"``: same shapes, 1.0 where the data were valid (NaN -> 0 rain);
    * ``"extrapolation"``: ``(t_out, C, h, w)`` log-rain, only when ``extrapolation_fn`` is given
      (computed on the crop itself, so motion from outside the crop is not seen);
    * ``"origin"``: ``(4,)`` int64 ``[array, time, y0, x0]`` of the window's first frame.

    Args:
        data: one or more ``(time, y, x)`` rain-rate arrays in mm/h, NaN = no data.
        config: window and crop settings.
        extrapolation_fn: conventional nowcast for the "obs + nowcasting" model (see `ExtrapolationFn`).
        seed: seed of the crop positions.
    """

    def __init__(
        self,
        data: RainArray | Sequence[RainArray],
        config: NowcastDataConfig,
        *,
        extrapolation_fn: ExtrapolationFn | None = None,
        seed: int = 0,
    ) -> None:
        items = [data] if isinstance(data, np.ndarray | xr.DataArray) else list(data)
        self.arrays = [_as_numpy(a) for a in items]
        self.config = config
        self.extrapolation_fn = extrapolation_fn
        self.seed = seed
        c = config.crop_size
        for a in self.arrays:
            if a.shape[1] < c or a.shape[2] < c:
                raise ValueError(f"array of shape {a.shape} is smaller than crop_size {c}")
        self._n_windows = np.array([max(a.shape[0] - config.window + 1, 0) for a in self.arrays])
        if self._n_windows.sum() == 0:
            raise ValueError(f"no array has the {config.window} frames one sample needs")
        self._cum = np.cumsum(self._n_windows)

    def __len__(self) -> int:
        return self.config.samples_per_epoch

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        return self.sample(index)

    def _draw(self, rng: np.random.Generator) -> tuple[int, int, int, int]:
        w = int(rng.integers(self._cum[-1]))
        k = int(np.searchsorted(self._cum, w, side="right"))
        t0 = w - (int(self._cum[k - 1]) if k else 0)
        _, ny, nx = self.arrays[k].shape
        c = self.config.crop_size
        return k, t0, int(rng.integers(ny - c + 1)), int(rng.integers(nx - c + 1))

    def sample(self, index: int) -> dict[str, Tensor]:
        """The sample for any ``index >= 0`` (see the class docstring for its keys)."""
        cfg = self.config
        rng = np.random.default_rng([self.seed, index])
        best: tuple[float, tuple[int, int, int, int], np.ndarray] | None = None
        for _ in range(cfg.max_tries):
            k, t0, y0, x0 = origin = self._draw(rng)
            win = self.arrays[k][t0 : t0 + cfg.window, y0 : y0 + cfg.crop_size, x0 : x0 + cfg.crop_size]
            valid = ~np.isnan(win)
            valid_frac = float(valid.mean())
            rain_frac = float((win >= cfg.rain_threshold).sum() / max(valid.sum(), 1))
            ok = valid_frac >= cfg.min_valid_fraction and rain_frac >= cfg.min_rain_fraction
            score = (2.0 if valid_frac >= cfg.min_valid_fraction else valid_frac) + rain_frac
            if best is None or score > best[0]:
                best = (score, origin, win)
            if ok:
                break
        assert best is not None
        _, origin, win = best
        mask = torch.from_numpy(~np.isnan(win)).to(torch.float32)[:, None]
        rain = torch.from_numpy(np.nan_to_num(win, nan=0.0)).clamp_min(0.0)
        z = rain_to_log(rain)[:, None]
        out = {
            "past": z[: cfg.t_in],
            "future": z[cfg.t_in :],
            "past_mask": mask[: cfg.t_in],
            "future_mask": mask[cfg.t_in :],
            "origin": torch.tensor(origin, dtype=torch.int64),
        }
        if self.extrapolation_fn is not None:
            ext = torch.as_tensor(self.extrapolation_fn(rain[: cfg.t_in], cfg.t_out), dtype=torch.float32)
            if ext.ndim == 3:
                ext = ext[:, None]
            if ext.shape[0] != cfg.t_out or ext.shape[-2:] != rain.shape[-2:]:
                raise ValueError(
                    f"extrapolation_fn returned shape {tuple(ext.shape)}, expected ({cfg.t_out}, [C,] H, W)"
                )
            out["extrapolation"] = rain_to_log(torch.nan_to_num(ext, nan=0.0))
        return out


def split_by_time(data: _A | Sequence[_A], *, val_fraction: float = 0.2, gap: int = 0) -> tuple[list[_A], list[_A]]:
    """Split sequences by time: the last ``val_fraction`` of each is held back for validation.

    ``gap`` frames between the two parts are dropped, so that no training window
    ends right before a validation window (choose ``gap >= t_in + t_out`` to keep
    the parts apart by a full sample). Training never sees a held-back frame.

    Args:
        data: one or more ``(time, y, x)`` arrays (NumPy or DataArray).
        val_fraction: fraction of each sequence's frames held back, in (0, 1).
        gap: frames dropped between the training and validation parts.

    Returns:
        ``(train, validation)``: lists of arrays of the input's type (views, not copies, for NumPy).
    """
    if not 0.0 < val_fraction < 1.0 or gap < 0:
        raise ValueError(f"need 0 < val_fraction < 1 and gap >= 0, got {val_fraction}, {gap}")
    items = [data] if isinstance(data, np.ndarray | xr.DataArray) else list(data)
    train, val = [], []
    for a in items:
        n = a.shape[0] if isinstance(a, np.ndarray) else a.sizes[a.dims[0] if "time" not in a.dims else "time"]
        n_val = max(1, math.floor(val_fraction * n))
        n_train = n - n_val - gap
        if n_train < 1:
            raise ValueError(f"sequence of {n} frames too short for val_fraction={val_fraction}, gap={gap}")
        if isinstance(a, xr.DataArray):
            dim = "time" if "time" in a.dims else a.dims[0]
            train.append(a.isel({dim: slice(0, n_train)}))
            val.append(a.isel({dim: slice(n - n_val, n)}))
        else:
            train.append(a[:n_train])
            val.append(a[n - n_val :])
    return train, val


def moving_blobs(
    n_time: int,
    height: int,
    width: int,
    *,
    n_blobs: int = 3,
    max_rain: float = 30.0,
    seed: int = 0,
) -> np.ndarray:
    """Synthetic radar sequence of Gaussian rain cells moving at constant velocity (for tests, examples).

    Each cell has a random centre, radius (4–12 px), peak rain (up to ``max_rain``) and velocity
    (up to 2 px per frame); cells wrap around the domain.

    Returns:
        Rain rate ``(n_time, height, width)`` in mm/h, float32, no NaN.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    out = np.zeros((n_time, height, width), dtype=np.float64)
    for _ in range(n_blobs):
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        vy, vx = rng.uniform(-2, 2, size=2)
        radius = rng.uniform(4, 12)
        peak = rng.uniform(0.3, 1.0) * max_rain
        for t in range(n_time):
            dy = (yy - cy - vy * t + height / 2) % height - height / 2
            dx = (xx - cx - vx * t + width / 2) % width - width / 2
            out[t] += peak * np.exp(-(dy**2 + dx**2) / (2 * radius**2))
    out[out < 0.05] = 0.0
    return out.astype(np.float32)
