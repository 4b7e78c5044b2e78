"""Dense optical flow from OpenCV (Farnebäck 2003; DIS, Kroeger et al. 2016).

The images are scaled to 8 bits as pysteps' ``farneback`` wrapper and
rainymotion do: NaN -> the lowest finite value, then a linear map of
``[min, max]`` to ``[0, 255]``. Unlike pysteps, which scales each frame by its
own range, one range is used for the whole sequence (as rainymotion's scaler
does), so that the same rain rate keeps the same grey value in both frames of
a pair. OpenCV runs on the CPU; the result is returned on the input's device.

Sign convention (pysteps'): ``motion[0] = u`` along +x (columns), ``motion[1]
= v`` along +y (rows, downward), pixels per time step; a feature at ``(y, x)``
in frame ``t`` is at ``(y + v, x + u)`` in frame ``t + 1``. This is OpenCV's
forward flow: ``prev(y, x) ~ next(y + flow[..., 1], x + flow[..., 0])``.
"""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np
import torch
from torch import Tensor

from dacast.nowcast.motion.smoothing import smooth_motion

FlowMethod = Literal["farneback", "dis"]

_DIS_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}


def to_uint8(frames: np.ndarray) -> np.ndarray:
    """Scale a sequence to 8 bits with one range: NaN -> min, ``[min, max] -> [0, 255]``.

    Args:
        frames: shape ``(T, H, W)``, any units.

    Returns:
        ``uint8`` array, shape ``(T, H, W)``.
    """
    finite = np.isfinite(frames)
    if not finite.any():
        return np.zeros(frames.shape, dtype=np.uint8)
    lo, hi = float(frames[finite].min()), float(frames[finite].max())
    x = np.where(finite, frames, lo) - lo
    if hi - lo > 1e-8:
        x = x * (255.0 / (hi - lo))
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def _pair_flow(prev: np.ndarray, nxt: np.ndarray, method: FlowMethod, preset: str) -> np.ndarray:
    if method == "farneback":
        # OpenCV defaults used by pysteps.motion.farneback
        return cv2.calcOpticalFlowFarneback(prev, nxt, None, 0.5, 3, 15, 3, 5, 1.1, 0)
    dis = cv2.DISOpticalFlow_create(_DIS_PRESETS[preset])
    return dis.calc(prev, nxt, None)


def optical_flow(
    frames: Tensor,
    *,
    method: FlowMethod = "farneback",
    sigma: float = 0.0,
    dis_preset: Literal["ultrafast", "fast", "medium"] = "medium",
) -> Tensor:
    """Dense optical-flow motion field, averaged over all consecutive pairs.

    Args:
        frames: image sequence, shape ``(T, H, W)``, oldest first, ``T >= 2``,
            preferably in a log scale (dBR or dBZ); NaN = missing (set to the
            lowest finite value). Pass ``frames[-2:]`` for the last pair only.
        method: ``"farneback"`` (OpenCV defaults, as pysteps) or ``"dis"``.
        sigma: Gaussian smoothing of the averaged field [pixels]; 0 = none.
            pysteps' Farneback wrapper uses 60 with magnitude preservation
            (see `smooth_motion`).
        dis_preset: speed/accuracy preset of the DIS method.

    Returns:
        Motion field, shape ``(2, H, W)`` [pixels per time step], ``u`` (+x)
        first, ``v`` (+y, rows downward) second, same dtype and device as ``frames``.
    """
    if frames.ndim != 3 or frames.shape[0] < 2:
        raise ValueError(f"frames must have shape (T>=2, H, W), got {tuple(frames.shape)}")
    if method not in ("farneback", "dis"):
        raise ValueError(f"unknown optical-flow method {method!r}; choose one of: dis, farneback")
    if dis_preset not in _DIS_PRESETS:
        raise ValueError(f"unknown DIS preset {dis_preset!r}; choose one of: {', '.join(_DIS_PRESETS)}")
    images = to_uint8(frames.detach().to("cpu", torch.float64).numpy())
    flows = [_pair_flow(images[i], images[i + 1], method, dis_preset) for i in range(len(images) - 1)]
    mean = np.mean(flows, axis=0, dtype=np.float64)  # (H, W, 2)
    dtype = frames.dtype if frames.is_floating_point() else torch.float32
    field = torch.from_numpy(np.ascontiguousarray(mean.transpose(2, 0, 1))).to(frames.device, dtype)
    return smooth_motion(field, sigma) if sigma > 0 else field
