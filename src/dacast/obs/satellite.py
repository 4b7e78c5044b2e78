"""AMSU-A viewing geometry and the air-mass bias predictors of satellite radiances.

AMSU-A scans across track in 30 fields of view (FOV) at scan angles ±48.33°
in steps of 3.33° from about 833 km (NOAA-18/19, MetOp). On the column ring of
`dacast.models.column` a scan line is laid along the ring: FOV ``j`` of cycle
``c`` sees column ``(start(c) + j) mod N`` at scan angle ``-48.33 + 3.33 j``,
and the swath moves on by ``step`` columns every cycle (the orbit's drift), so
each column is seen at every scan angle in turn.

Bias predictors (after the VarBC predictors of Dee 2004 and Auligné et al.
2007; every predictor is O(1)): a constant, the scan angle ``s = θ / 48.33``,
``s²``, and two layer thicknesses of the (background) profile, 1000–300 hPa and
200–50 hPa, as anomalies from reference values in units of their spread over
the AFGL climatologies. `SatelliteBias` is the twin's *true* bias, which the
physical operator must correct and the learned operator learns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from dacast.thermo import heights

#: AMSU-A: fields of view per scan line, outermost scan angle (deg), orbit height (km).
AMSUA_FOVS = 30
AMSUA_MAX_SCAN = 48.33
AMSUA_ALTITUDE_KM = 833.0
EARTH_RADIUS_KM = 6371.0
#: Names of the bias predictors, in column order of `bias_predictors`.
PREDICTORS = ("constant", "scan", "scan2", "thickness_1000_300", "thickness_200_50")
#: Reference thickness and its scale (km) for the two layer predictors: AFGL tropics to sub-arctic winter.
THICKNESS_REF = {(1000.0, 300.0): (9.0, 0.4), (200.0, 50.0): (8.7, 0.5)}


def scan_angles(n_fov: int = AMSUA_FOVS, max_scan: float = AMSUA_MAX_SCAN) -> Tensor:
    """Scan angles of the ``n_fov`` fields of view, evenly from -max_scan to max_scan, shape ``(n_fov,)`` (deg)."""
    if n_fov < 1:
        raise ValueError(f"n_fov must be >= 1, got {n_fov}")
    if not 0 <= max_scan < 90:
        raise ValueError(f"max_scan must lie in [0, 90) degrees, got {max_scan}")
    if n_fov == 1:
        return torch.zeros(1, dtype=torch.float64)
    return torch.linspace(-max_scan, max_scan, n_fov, dtype=torch.float64)


def zenith_angle(scan_deg: Tensor, altitude_km: float = AMSUA_ALTITUDE_KM) -> Tensor:
    """Local zenith angle at the ground of a beam leaving the satellite at ``scan_deg`` (any shape, deg).

    ``sin ζ = (R + h) / R · sin θ`` on a spherical Earth of radius R = 6371 km;
    48.33° at 833 km gives ζ ≈ 57.6°.
    """
    s = (EARTH_RADIUS_KM + altitude_km) / EARTH_RADIUS_KM * torch.sin(torch.deg2rad(scan_deg.abs()))
    if bool((s >= 1).any()):
        raise ValueError("scan angle too large: the beam misses the Earth")
    return torch.rad2deg(torch.asin(s))


def swath_columns(cycle: int, n_columns: int, n_fov: int = AMSUA_FOVS, step: int = 7) -> Tensor:
    """Columns seen by the ``n_fov`` fields of view at analysis time ``cycle``, shape ``(n_fov,)`` long.

    FOV ``j`` sees column ``(cycle · step + j) mod n_columns``; with ``n_fov > n_columns``
    a column is seen more than once.
    """
    if n_columns < 1:
        raise ValueError(f"n_columns must be >= 1, got {n_columns}")
    return (cycle * step + torch.arange(n_fov)) % n_columns


def _thickness(z: Tensor, p: Tensor, bottom: float, top: float) -> Tensor:
    """Height difference (km) between the pressures ``bottom`` and ``top``, linear in ln p between levels."""
    lnp = torch.log(p.to(z))
    out = []
    for level in (bottom, top):
        x = torch.tensor(math.log(level), dtype=z.dtype, device=z.device)
        i = int(torch.searchsorted(-lnp, -x).clamp(1, lnp.numel() - 1))
        w = (lnp[i - 1] - x) / (lnp[i - 1] - lnp[i])
        out.append((1 - w) * z[..., i - 1] + w * z[..., i])
    return out[1] - out[0]


def bias_predictors(scan_deg: Tensor, t: Tensor, q: Tensor, p: Tensor) -> Tensor:
    """The `PREDICTORS` of each field of view.

    Args:
        scan_deg: scan angles, shape ``(*batch,)`` (deg).
        t: temperature profiles, shape ``(*batch, L)`` (K), bottom first.
        q: specific humidity profiles, shape ``(*batch, L)`` (g/kg).
        p: pressure levels, shape ``(L,)`` (hPa), strictly decreasing, spanning 1000-50 hPa.

    Returns:
        Predictors, shape ``(*batch, 5)`` (dimensionless).
    """
    if float(p[0]) < 1000.0 - 1e-6 or float(p[-1]) > 50.0 + 1e-6:
        raise ValueError(f"bias predictors need levels spanning 1000 to 50 hPa, got {float(p[0])} to {float(p[-1])}")
    z = heights(p.to(t), t, q)
    s = scan_deg.to(t) / AMSUA_MAX_SCAN
    cols = [torch.ones_like(s), s, s * s]
    for (bottom, top), (ref, scale) in THICKNESS_REF.items():
        cols.append((_thickness(z, p, bottom, top) - ref) / scale)
    return torch.stack(cols, dim=-1)


@dataclass(frozen=True, kw_only=True)
class SatelliteBias:
    """A linear bias in the predictors: ``b = predictors @ coefficients[channel]`` (K).

    Attributes:
        channels: the channels, e.g. ``(6, 7, 8)``.
        coefficients: shape ``(C, 5)`` (K per unit predictor), one row per channel.
    """

    channels: tuple[int, ...]
    coefficients: Tensor = field(repr=False)

    def __post_init__(self) -> None:
        expected = (len(self.channels), len(PREDICTORS))
        if tuple(self.coefficients.shape) != expected:
            raise ValueError(f"bias coefficients must have shape {expected}, got {tuple(self.coefficients.shape)}")

    def __call__(self, predictors: Tensor) -> Tensor:
        """Bias ``(*batch, C)`` (K) from predictors ``(*batch, 5)``."""
        return predictors @ self.coefficients.to(predictors).T


def amsua_true_bias(channels: tuple[int, ...] = (6, 7, 8)) -> SatelliteBias:
    """The twin's AMSU-A bias: channel means +1.1, +0.7, −0.5 K, larger at the swath edges and in warm (thick) air.

    Offsets of the size found for NOAA-18 AMSU-A in NWP departure statistics
    (a few tenths of a kelvin to 1 K, with scan-angle and air-mass terms).
    """
    table = {
        6: [0.8, 0.1, 0.5, 0.3, 0.0],
        7: [0.5, -0.1, 0.4, 0.2, 0.1],
        8: [-0.6, 0.2, 0.3, 0.0, 0.25],
    }
    unknown = [c for c in channels if c not in table]
    if unknown:
        raise ValueError(f"no bias defined for channel {unknown[0]}; channels: {sorted(table)}")
    return SatelliteBias(
        channels=channels, coefficients=torch.tensor([table[c] for c in channels], dtype=torch.float64)
    )


__all__ = [
    "AMSUA_ALTITUDE_KM",
    "AMSUA_FOVS",
    "AMSUA_MAX_SCAN",
    "PREDICTORS",
    "SatelliteBias",
    "amsua_true_bias",
    "bias_predictors",
    "scan_angles",
    "swath_columns",
    "zenith_angle",
]
