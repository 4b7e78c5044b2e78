"""Loading trained nowcasters (`ConvLSTMNowcaster`, `MultiResNowcaster`) and running them on full radar frames
(padding, tiling, GPU)."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from dacast.ml.convlstm import ConvLSTMConfig, log_to_rain, rain_to_log
from dacast.ml.multires import MultiResConfig, MultiResNowcaster
from dacast.ml.multires_members import forecast_members
from dacast.ml.nowcast_train import Nowcaster, resolve_device
from dacast.ml.nowcast_train_config import build_model

__all__ = ["load_nowcaster", "predict", "predict_ensemble"]


def load_nowcaster(path: str | Path, *, device: str | torch.device = "cpu") -> Nowcaster:
    """Load a nowcaster saved by `dacast.ml.train_nowcast`.

    The checkpoint's ``model_kind`` picks the class: ``"multires"`` a `MultiResNowcaster`,
    ``"convlstm"`` (or no ``model_kind``: checkpoints written before it existed) a `ConvLSTMNowcaster`.

    Args:
        path: a ``.pt`` checkpoint (``best.pt`` or ``last.pt``), or a checkpoint directory
            (``best.pt`` there, else ``last.pt``).
        device: where to put the model (``"auto"``: CUDA when available).

    Returns:
        The network in eval mode.
    """
    p = Path(path)
    if p.is_dir():
        p = p / "best.pt" if (p / "best.pt").exists() else p / "last.pt"
    if not p.exists():
        raise FileNotFoundError(f"no nowcaster checkpoint at {p}")
    ck = torch.load(p, map_location="cpu", weights_only=True)
    cfg = dict(ck["model_config"])
    cfg["hidden_channels"] = tuple(cfg["hidden_channels"])
    kind = ck.get("model_kind", "convlstm")
    configs = {"convlstm": ConvLSTMConfig, "multires": MultiResConfig}
    if kind not in configs:
        raise ValueError(f"{p}: unknown model_kind {kind!r}; expected 'convlstm' or 'multires'")
    model = build_model(configs[kind](**cfg))
    model.load_state_dict(ck["model"])
    return model.to(resolve_device(device)).eval()


def _as_tensor(x: Tensor | np.ndarray) -> Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, Tensor) else x, dtype=torch.float32)
    return torch.nan_to_num(t, nan=0.0).clamp_min(0.0)


def _inputs_image(
    past: Tensor | np.ndarray, extrapolation: Tensor | np.ndarray | None
) -> tuple[Tensor, Callable[[Tensor], tuple[Tensor, Tensor | None]]]:
    """Past frames ``(T_in, H, W)`` and extrapolation ``(T_out, [C,] H, W)`` (mm/h) as the channels of one
    log-rain image ``(1, T_in + T_out·C, H, W)`` (so that they are padded and tiled together), and the
    function that splits such an image ``(N, ·, h, w)`` into past ``(N, T_in, 1, h, w)`` and extrapolation
    ``(N, T_out, C, h, w)`` (None without one)."""
    z = rain_to_log(_as_tensor(past))
    if z.ndim != 3:
        raise ValueError(f"past must be (T_in, H, W), got shape {tuple(z.shape)}")
    t_in = z.shape[0]
    frames = [z[:, None]]  # (T_in, 1, H, W)
    n_ext = 0
    if extrapolation is not None:
        e = rain_to_log(_as_tensor(extrapolation))
        e = e[:, None] if e.ndim == 3 else e
        if e.shape[-2:] != z.shape[-2:]:
            raise ValueError(f"extrapolation shape {tuple(e.shape)} does not match past {tuple(z.shape)}")
        n_ext = e.shape[0]
        frames.append(e)

    def unstack(x: Tensor) -> tuple[Tensor, Tensor | None]:
        p = x[:, :t_in, None]
        if not n_ext:
            return p, None
        return p, x[:, t_in:].unflatten(1, (n_ext, -1))

    return torch.cat([x.flatten(0, 1) for x in frames])[None], unstack


def _pad_to(img: Tensor, multiple: int) -> Tensor:
    """``img`` ``(N, C, H, W)`` padded at the bottom and right (edge values repeated) to multiples of ``multiple``."""
    h, w = img.shape[-2:]
    hp, wp = math.ceil(h / multiple) * multiple, math.ceil(w / multiple) * multiple
    return F.pad(img, (0, wp - w, 0, hp - h), mode="replicate")


def predict(
    model: Nowcaster,
    past: Tensor | np.ndarray,
    extrapolation: Tensor | np.ndarray | None = None,
    *,
    device: str | torch.device = "auto",
    tile: int | None = None,
    overlap: int = 32,
    tile_batch: int = 4,
    resolution: int = 0,
    noise_seed: int | None = None,
) -> Tensor:
    """Nowcast full-size frames.

    H and W are padded (edge values repeated) to the network's `spatial_multiple`,
    and the padding is cut off again. With ``tile``, the domain is cut into
    ``tile × tile`` windows that overlap by ``overlap`` pixels on each side; only
    each window's central ``tile − 2·overlap`` pixels are kept, and windows run
    ``tile_batch`` at a time (for GPUs with too little memory for the whole domain).

    A `MultiResNowcaster` gives its output ``resolution`` (0: the finest, full-size one), run at
    the stage that computes no finer output; output ``k`` is the areal-mean rain over ``2**k × 2**k``
    pixels, and a last coarse row or column that reaches into the padding is kept (its mean includes
    the repeated edge values). A noise-driven (ensemble) `MultiResNowcaster` gives its central member
    (noise 0), or with ``noise_seed`` the member of that seed's noise (`dacast.ml.predict_ensemble`).

    Args:
        model: a trained `ConvLSTMNowcaster` or `MultiResNowcaster`; moved to ``device``.
        past: past frames ``(T_in, H, W)`` in mm/h, oldest first; NaN (no data) is read as 0.
        extrapolation: extrapolation nowcast ``(T_out, H, W)`` or ``(T_out, C, H, W)`` in mm/h
            (required iff the model uses it).
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` or a device.
        tile: tile side in pixels, a multiple of ``model.spatial_multiple`` (None: whole domain at once).
        overlap: overlap margin of the tiles in pixels.
        tile_batch: tiles per forward pass.
        resolution: output ``k`` of a `MultiResNowcaster` (``0 … n_outputs - 1``); with ``tile``,
            ``overlap`` must be a multiple of ``2**k``. Must be 0 for a `ConvLSTMNowcaster`.
        noise_seed: seed of the latent noise of an ensemble network (CPU generator; not with ``tile``,
            which would cut the noise field); None: noise 0. Must be None for other networks.

    Returns:
        Nowcast ``(T_out, ceil(H / 2**k), ceil(W / 2**k))`` in mm/h (``k = resolution``; ``(T_out, H, W)``
        by default), ``>= 0``, float32 on the CPU.
    """
    dev = resolve_device(device)
    model = model.to(dev).eval()
    m = model.spatial_multiple
    n_out = model.n_outputs if isinstance(model, MultiResNowcaster) else 1
    if not 0 <= resolution < n_out:
        raise ValueError(f"resolution must be in 0..{n_out - 1} for this model, got {resolution}")
    f = 2**resolution
    ensemble = isinstance(model, MultiResNowcaster) and model.is_ensemble
    if noise_seed is not None and (not ensemble or tile is not None):
        raise ValueError("noise_seed needs an ensemble network (noise_channels > 0) and no tile")

    def run(p: Tensor, e: Tensor | None) -> Tensor:
        """Forecast ``(N, T_out, 1, h / f, w / f)`` log-rain of past ``p`` and extrapolation ``e``."""
        if not isinstance(model, MultiResNowcaster):
            return model(p, e)
        noise = None
        if ensemble:
            gen = torch.Generator().manual_seed(0 if noise_seed is None else noise_seed)
            noise = model.sample_noise(p.shape[0], *p.shape[-2:], generator=gen, device=p.device)
            if noise_seed is None:  # the central member
                noise.zero_()
        return model(p, e, stage=n_out - 1 - resolution, noise=noise)[0]

    img, unstack = _inputs_image(past, extrapolation)
    h, w = img.shape[-2:]
    with torch.inference_mode():
        if tile is None:
            p, e = unstack(_pad_to(img, m).to(dev))
            out = run(p, e)[0, :, 0, : -(-h // f), : -(-w // f)]
        else:
            if tile % m or tile <= 2 * overlap or overlap < 0:
                raise ValueError(f"tile must be a multiple of {m} and larger than 2*overlap, got {tile}, {overlap}")
            if overlap % f:
                raise ValueError(f"overlap must be a multiple of {f} at resolution {resolution}, got {overlap}")
            core = tile - 2 * overlap
            ny, nx = math.ceil(h / core), math.ceil(w / core)
            pad = (overlap, nx * core - w + overlap, overlap, ny * core - h + overlap)
            img = F.pad(img, pad, mode="replicate")
            origins = [(i * core, j * core) for i in range(ny) for j in range(nx)]
            out_full: Tensor | None = None
            for k in range(0, len(origins), tile_batch):
                chunk = origins[k : k + tile_batch]
                tiles = torch.cat([img[:, :, y : y + tile, x : x + tile] for y, x in chunk]).to(dev)
                p, e = unstack(tiles)
                o, c = overlap // f, core // f  # tile geometry at the output's resolution
                res = run(p, e)[:, :, 0, o : o + c, o : o + c].cpu()
                if out_full is None:
                    out_full = res.new_zeros(res.shape[1], ny * c, nx * c)
                for (y, x), r in zip(chunk, res, strict=True):
                    out_full[:, y // f : y // f + c, x // f : x // f + c] = r
            assert out_full is not None
            out = out_full[:, : -(-h // f), : -(-w // f)]
    return log_to_rain(out.float()).cpu()


def predict_ensemble(
    model: MultiResNowcaster,
    past: Tensor | np.ndarray,
    extrapolation: Tensor | np.ndarray | None = None,
    *,
    members: int,
    seed: int = 0,
    device: str | torch.device = "auto",
    resolution: int = 0,
    batch: int | None = None,
    on_member: Callable[[int], None] | None = None,
) -> Tensor:
    """``members`` nowcasts of an ensemble network, member ``i`` from the noise of seed ``seed + i``.

    Member ``i`` is `predict` with ``noise_seed=seed + i`` on the whole domain, to float rounding: the
    encoder, the extrapolation features and their share of every forecaster convolution are computed
    once for all members (`dacast.ml.forecast_members`). The same ``seed`` gives the same members on any
    machine (the noise is drawn on the CPU).

    Args:
        model: a `MultiResNowcaster` with ``noise_channels > 0``.
        past: past frames ``(T_in, H, W)`` in mm/h, oldest first.
        extrapolation: extrapolation nowcast ``(T_out, H, W)`` in mm/h (iff the model uses it).
        members: ensemble size (>= 1).
        seed: seed of the first member's noise.
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or a device.
        resolution: output ``k`` (see `predict`).
        batch: members per forward pass (None: 1 on a CPU, where one at a time is fastest, 8 on CUDA).
        on_member: called with the number of members done after each pass (e.g. a progress bar).

    Returns:
        ``(members, T_out, ceil(H / 2**k), ceil(W / 2**k))`` rain rates in mm/h, ``>= 0``, on the CPU.
    """
    if not isinstance(model, MultiResNowcaster) or not model.is_ensemble:
        raise ValueError("predict_ensemble needs a MultiResNowcaster with noise_channels > 0")
    if members < 1:
        raise ValueError(f"members must be >= 1, got {members}")
    dev = resolve_device(device)
    model = model.to(dev).eval()
    img, unstack = _inputs_image(past, extrapolation)
    h, w = img.shape[-2:]
    f = 2**resolution
    with torch.inference_mode():
        img = _pad_to(img, model.spatial_multiple)
        noise = torch.cat(
            [
                model.sample_noise(1, *img.shape[-2:], generator=torch.Generator().manual_seed(seed + i))
                for i in range(members)
            ]
        )
        p, e = unstack(img.to(dev))
        size = batch if batch is not None else (8 if dev.type == "cuda" else 1)
        out = forecast_members(model, p, e, noise.to(dev), resolution=resolution, batch=size, on_member=on_member)
    return log_to_rain(out[:, :, 0, : -(-h // f), : -(-w // f)].float()).cpu()
