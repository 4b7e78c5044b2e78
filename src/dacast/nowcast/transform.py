"""Rain rate <-> dBR, the log transform pysteps' gallery applies before motion estimation.

``dBR = 10 log10(R)`` for ``R >= threshold``; lighter rain (and zero) becomes
``zerovalue``; NaN stays NaN (pysteps' ``utils.transformation.dB_transform``
with ``threshold=0.1, zerovalue=-15``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def to_dbr(rain: Tensor, *, threshold: float = 0.1, zerovalue: float = -15.0) -> Tensor:
    """Rain rate to dBR.

    Args:
        rain: rain rate, any shape [mm/h]; NaN = missing.
        threshold: lowest rain rate kept [mm/h].
        zerovalue: dBR given to rain rates below ``threshold`` [dB].

    Returns:
        dBR, same shape [dB], NaN where ``rain`` is NaN.
    """
    db = 10.0 * torch.log10(rain.clamp_min(threshold))
    db = torch.where(rain >= threshold, db, torch.full_like(db, zerovalue))
    return torch.where(torch.isnan(rain), rain, db)


def from_dbr(dbr: Tensor, *, threshold: float = 0.1) -> Tensor:
    """dBR back to rain rate; values below ``10 log10(threshold)`` become 0.

    Args:
        dbr: any shape [dB]; NaN = missing.
        threshold: rain rate below which the result is 0 [mm/h].

    Returns:
        Rain rate, same shape [mm/h], NaN where ``dbr`` is NaN.
    """
    rain = torch.pow(10.0, dbr / 10.0)
    return torch.where(dbr < 10.0 * math.log10(threshold), torch.zeros_like(rain), rain)
