"""Localization tapers and the settings that describe them.

Distances are in grid units. ``length`` is the localization length scale L.
For Gaspari-Cohn the taper reaches zero at ``support`` = 2c, its half-width c
being sqrt(10/3) L ≈ 1.83 L by default, so that the taper matches a Gaussian
``exp(-d²/2L²)`` near the origin (DAPPER rounds the factor to 1.82: its
``loc_rad=4`` is ``length=4, support=3.64*4`` here). The Gaussian taper is cut
to zero at ``support`` too (default 2·sqrt(10/3) L ≈ 3.65 L, SCALE-LETKF's).

The Gaspari-Cohn taper has one width: ``length`` sets it, and ``support`` may only
restate it (to round the factor, as DAPPER does, within `SUPPORT_TOLERANCE`); a
``support`` that disagrees with ``length`` is an error naming both, never a silent
choice of one of them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

GC_HALF_WIDTH = math.sqrt(10.0 / 3.0)
#: Relative difference allowed between a Gaspari-Cohn ``support`` and ``2·sqrt(10/3)·length``.
SUPPORT_TOLERANCE = 0.01


def gaspari_cohn(distance: Tensor, half_width: float) -> Tensor:
    """Gaspari & Cohn (1999, eq. 4.10) fifth-order compact taper.

    Args:
        distance: any shape, non-negative (``inf`` allowed, gives 0).
        half_width: c; the taper is 1 at 0, about 0.21 at c and 0 from 2c on.

    Returns:
        Taper weights in [0, 1], same shape as ``distance``.
    """
    r = distance / half_width
    inner = ((((-0.25 * r + 0.5) * r + 0.625) * r - 5.0 / 3.0) * r * r) + 1.0
    r_safe = torch.where(r > 0, r, torch.ones_like(r))
    outer = (((((r / 12.0 - 0.5) * r + 0.625) * r + 5.0 / 3.0) * r - 5.0) * r) + 4.0 - (2.0 / 3.0) / r_safe
    w = torch.where(r <= 1.0, inner, torch.where(r < 2.0, outer, torch.zeros_like(r)))
    return w.clamp_min(0.0)


def gaussian(distance: Tensor, length: float, support: float) -> Tensor:
    """Gaussian taper ``exp(-d²/(2 L²))`` cut to zero at ``support``; same shape as input."""
    w = torch.exp(-0.5 * (distance / length) ** 2)
    return torch.where(distance < support, w, torch.zeros_like(w))


@dataclass(frozen=True, kw_only=True)
class Localization:
    """R-localization settings.

    Attributes:
        length: length scale L (grid units), > 0; ``inf`` means no localization.
        taper: ``"gaspari_cohn"`` or ``"gaussian"``.
        support: distance where the taper is cut to zero; default 2·sqrt(10/3)·L.
        max_obs: optional cap on observations per grid point (the nearest kept).
        min_weight: observations with taper weight <= this are dropped (DAPPER uses 1e-3).
    """

    length: float
    taper: Literal["gaspari_cohn", "gaussian"] = "gaspari_cohn"
    support: float | None = None
    max_obs: int | None = None
    min_weight: float = 0.0

    def __post_init__(self) -> None:
        if not self.length > 0:
            raise ValueError(f"localization length must be positive, got {self.length}")
        if self.taper not in ("gaspari_cohn", "gaussian"):
            raise ValueError(f"taper must be 'gaspari_cohn' or 'gaussian', got {self.taper!r}")
        if self.support is not None and not self.support > 0:
            raise ValueError(f"support must be positive, got {self.support}")
        if self.max_obs is not None and self.max_obs <= 0:
            raise ValueError(f"max_obs must be positive, got {self.max_obs}")
        if not 0.0 <= self.min_weight < 1.0:
            raise ValueError(f"min_weight must lie in [0, 1), got {self.min_weight}")
        if self.taper == "gaspari_cohn" and self.support is not None and math.isfinite(self.length):
            derived = 2.0 * GC_HALF_WIDTH * self.length
            if not abs(self.support - derived) <= SUPPORT_TOLERANCE * derived:
                raise ValueError(
                    f"length {self.length:g} and support {self.support:g} disagree: a Gaspari-Cohn taper of length "
                    f"{self.length:g} reaches zero at 2·sqrt(10/3)·length = {derived:.4g}; give one of them "
                    "(support only restates length, within 1 %)"
                )

    @property
    def cutoff(self) -> float:
        """Distance beyond which observations are ignored (grid units)."""
        if self.support is not None:
            return float(self.support)
        return 2.0 * GC_HALF_WIDTH * self.length

    def weights(self, distance: Tensor) -> Tensor:
        """Taper weights for ``distance`` (any shape), zero beyond the cutoff and below ``min_weight``."""
        if math.isinf(self.length):
            w = torch.where(torch.isfinite(distance), torch.ones_like(distance), torch.zeros_like(distance))
        elif self.taper == "gaspari_cohn":
            w = gaspari_cohn(distance, self.cutoff / 2.0)
        else:
            w = gaussian(distance, self.length, self.cutoff)
        return torch.where(w > self.min_weight, w, torch.zeros_like(w))
