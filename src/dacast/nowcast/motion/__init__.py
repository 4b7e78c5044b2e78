"""Motion estimation: TREC block matching (torch) and dense optical flow (OpenCV).

All return ``(2, H, W)`` fields in pixels per time step: ``u`` (+x, columns)
first, ``v`` (+y, rows downward) second.
"""

from dacast.nowcast.motion.block_matching import trec
from dacast.nowcast.motion.opencv_flow import optical_flow, to_uint8
from dacast.nowcast.motion.smoothing import gaussian_blur, smooth_motion

__all__ = ["gaussian_blur", "optical_flow", "smooth_motion", "to_uint8", "trec"]
