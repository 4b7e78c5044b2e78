"""Moist thermodynamics of a column: saturation vapour pressure, humidity conversions, hypsometric heights.

Shared by the column atmosphere model (`dacast.models.column`) and the microwave
observation operator (`dacast.obs.microwave`); like `dacast.geometry` it imports
nothing else from the package. Pressures are in hPa, temperatures in K, specific
humidity in g/kg, heights in km. Every function is elementwise and differentiable.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

#: Ratio of the gas constants of dry air and water vapour (R_d / R_v).
EPSILON = 0.622
#: Gas constant of dry air (J kg-1 K-1).
R_DRY = 287.04
#: Standard gravity (m s-2).
GRAVITY = 9.80665


def saturation_vapour_pressure(t: Tensor) -> Tensor:
    """Saturation vapour pressure over liquid water by Goff & Gratch (List 1963, Smithsonian Tables).

    Args:
        t: temperature, any shape (K), > 0.

    Returns:
        e_s, same shape (hPa).
    """
    y = 373.16 / t
    log10_es = (
        -7.90298 * (y - 1.0)
        + 5.02808 * torch.log10(y)
        - 1.3816e-7 * (torch.pow(10.0, 11.344 * (1.0 - 1.0 / y)) - 1.0)
        + 8.1328e-3 * (torch.pow(10.0, -3.49149 * (y - 1.0)) - 1.0)
        + math.log10(1013.246)
    )
    return torch.pow(10.0, log10_es)


def vapour_pressure(q: Tensor, p: Tensor) -> Tensor:
    """Vapour pressure from specific humidity: e = q p / (ε + (1 − ε) q).

    Args:
        q: specific humidity, any shape (g/kg), >= 0.
        p: pressure, broadcastable to ``q`` (hPa).

    Returns:
        e, the broadcast shape (hPa).
    """
    qk = q * 1e-3
    return qk * p / (EPSILON + (1.0 - EPSILON) * qk)


def specific_humidity(e: Tensor, p: Tensor) -> Tensor:
    """Specific humidity from vapour pressure: q = ε e / (p − (1 − ε) e), the inverse of `vapour_pressure`.

    Args:
        e: vapour pressure, any shape (hPa).
        p: pressure, broadcastable to ``e`` (hPa).

    Returns:
        q, the broadcast shape (g/kg).
    """
    return 1e3 * EPSILON * e / (p - (1.0 - EPSILON) * e)


def saturation_specific_humidity(t: Tensor, p: Tensor) -> Tensor:
    """Specific humidity at saturation over water (g/kg); ``t`` (K) and ``p`` (hPa) broadcast."""
    return specific_humidity(saturation_vapour_pressure(t), p)


def relative_humidity(t: Tensor, q: Tensor, p: Tensor) -> Tensor:
    """Relative humidity e / e_s(T) as a fraction; ``t`` (K), ``q`` (g/kg), ``p`` (hPa) broadcast."""
    return vapour_pressure(q, p) / saturation_vapour_pressure(t)


def virtual_temperature(t: Tensor, q: Tensor) -> Tensor:
    """T_v = T (1 + (1/ε − 1) q), ``t`` (K) and ``q`` (g/kg) broadcast; result in K."""
    return t * (1.0 + (1.0 / EPSILON - 1.0) * q * 1e-3)


def heights(p: Tensor, t: Tensor, q: Tensor) -> Tensor:
    """Heights of the pressure levels above the lowest one by the hypsometric equation.

    Each layer's thickness is (R_d / g) · mean(T_v) · ln(p_below / p_above), with the
    arithmetic mean of the virtual temperatures of its two levels.

    Args:
        p: pressure levels, shape ``(L,)`` (hPa), strictly decreasing (bottom first).
        t: temperature, shape ``(*batch, L)`` (K).
        q: specific humidity, shape ``(*batch, L)`` (g/kg).

    Returns:
        z, shape ``(*batch, L)`` (km), 0 at the lowest level.
    """
    tv = virtual_temperature(t, q)
    layer_tv = 0.5 * (tv[..., 1:] + tv[..., :-1])
    dz = (R_DRY / GRAVITY) * layer_tv * torch.log(p[:-1] / p[1:]).to(tv) * 1e-3
    return torch.cat([torch.zeros_like(tv[..., :1]), torch.cumsum(dz, dim=-1)], dim=-1)


__all__ = [
    "EPSILON",
    "GRAVITY",
    "R_DRY",
    "heights",
    "relative_humidity",
    "saturation_specific_humidity",
    "saturation_vapour_pressure",
    "specific_humidity",
    "vapour_pressure",
    "virtual_temperature",
]
