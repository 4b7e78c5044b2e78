"""A ring of atmospheric columns: chaotic temperature and humidity anomalies around the AFGL climatology.

The twin behind the satellite-radiance experiments (`dacast obsop run`). ``N``
columns sit on a meridional great circle (column ``i`` at latitude
``asin(sin(2π i / N))``: equator, north pole, equator, south pole), each with
temperature ``T`` (K) and specific humidity ``q`` (g/kg) on ``L`` pressure levels
equally spaced in ``ln p`` from ``p_bottom`` to ``p_top`` (hPa, bottom first).

Base state: the AFGL standard atmospheres (Anderson et al. 1986) by latitude,
northern summer: tropical within 15°, mid-latitude summer (north) or winter
(south) at 45°, sub-arctic summer or winter from 70°, linear in latitude in
between (``T`` and ``ln q``).

Dynamics, on non-dimensional anomalies ``a`` (temperature) and ``b`` (humidity)
per level ``k`` and column ``i``::

    da/dt = (a[i+1] − a[i−2]) a[i−1] − a[i] + F + ν (a[k+1] − 2 a[k] + a[k−1])
    db/dt = (b[i+1] − b[i−2]) b[i−1] − b[i] + F + ν (b[k+1] − 2 b[k] + b[k−1]) + γ (a − b)

Lorenz-96 along the ring on every level (advection and growth of errors), a
vertical diffusion ν that couples neighbouring levels (no flux through the top
and the bottom), and a relaxation γ of humidity towards temperature (moist where
warm). Physical fields: ``T = T_clim + σ_T (a − μ) / s`` and
``q = min(q_clim exp(σ_q (b − μ) / s), q_sat(T, p))`` with μ = 2.34, s = 3.63
the mean and standard deviation of Lorenz-96 at F = 8: supersaturation is removed
(condensation), and ``q`` is kept above ``q_floor`` of its climatology (the
negative-humidity reset of operational models, needed after an analysis).
One time unit is 5 days (0.05 = 6 h, as for Lorenz-96); `error_doubling_time`
measures how fast small errors grow.

State layout: ``(*batch, n_state)`` with ``n_state = 2 · L · N`` laid out
``(var, level, column)``, ``var`` 0 = T (K), 1 = q (g/kg): the ``(var, point)``
layout of the LETKF with ``point = level · N + column``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

import numpy as np
import torch
from torch import Tensor

from dacast.geometry import Grid
from dacast.models.base import rk4_step
from dacast.thermo import saturation_specific_humidity

#: Mean and standard deviation of Lorenz-96 at F = 8 (long run, any n >= 36).
L96_MEAN, L96_STD = 2.34, 3.63
#: The AFGL profiles the base state blends.
ANCHORS = ("tropical", "midlatitude_summer", "midlatitude_winter", "subarctic_summer", "subarctic_winter")
#: Anchor latitudes (deg) of the AFGL profiles in the base state.
TROPICS, MIDLATITUDE, SUBARCTIC = 15.0, 45.0, 70.0


@cache
def afgl_profiles() -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The six AFGL standard atmospheres shipped with the package.

    Returns:
        ``name -> (pressure (50,) hPa, temperature (50,) K, specific humidity (50,) g/kg)``,
        bottom first; names ``tropical``, ``midlatitude_summer``, ``midlatitude_winter``,
        ``subarctic_summer``, ``subarctic_winter``, ``us_standard``.
    """
    path = resources.files("dacast.models").joinpath("data/afgl_profiles.npz")
    with path.open("rb") as fh, np.load(fh, allow_pickle=False) as data:
        names = [str(n) for n in data["names"]]
        return {
            n: (data["pressure"][i], data["temperature"][i], data["specific_humidity"][i]) for i, n in enumerate(names)
        }


def _profile_on(name: str, pressure: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p, t, q = afgl_profiles()[name]
    lnp = np.log(p[::-1])
    x = np.log(pressure)
    return np.interp(x, lnp, t[::-1]), np.exp(np.interp(x, lnp, np.log(q[::-1])))


def base_state(latitude: np.ndarray, pressure: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Climatological T and q at the given latitudes and levels (northern summer).

    Args:
        latitude: shape ``(N,)`` (degrees north).
        pressure: shape ``(L,)`` (hPa).

    Returns:
        ``(T, q)``, each shape ``(L, N)``, in K and g/kg.
    """
    profiles = {}  # name -> (T, ln q), each (L,): every AFGL profile interpolated once
    for name in ANCHORS:
        t, q = _profile_on(name, pressure)
        profiles[name] = (t, np.log(q))
    lat = np.asarray(latitude, dtype=np.float64)
    north = lat >= 0  # northern summer, southern winter
    x = np.clip(np.abs(lat), TROPICS, SUBARCTIC)
    low = x <= MIDLATITUDE  # between the tropical and the mid-latitude profile, else mid-latitude to sub-arctic
    x0, x1 = np.where(low, TROPICS, MIDLATITUDE), np.where(low, MIDLATITUDE, SUBARCTIC)
    w = (x - x0) / (x1 - x0)
    out = []
    for k in range(2):  # temperature, ln q: each (L, N)
        tropical = np.broadcast_to(profiles["tropical"][k][:, None], (pressure.size, lat.size))
        mid = np.where(north, profiles["midlatitude_summer"][k][:, None], profiles["midlatitude_winter"][k][:, None])
        sub = np.where(north, profiles["subarctic_summer"][k][:, None], profiles["subarctic_winter"][k][:, None])
        out.append((1 - w) * np.where(low, tropical, mid) + w * np.where(low, mid, sub))
    return out[0], np.exp(out[1])


@dataclass(frozen=True, kw_only=True)
class ColumnAtmosphere:
    """The column-ring twin model (see the module docstring for the equations).

    Attributes:
        n_columns: N, columns on the ring (>= 4).
        n_levels: L, pressure levels (>= 2).
        p_bottom, p_top: pressure of the lowest and the highest level (hPa).
        forcing: F of the Lorenz-96 terms.
        vertical_coupling: ν (per time unit), between neighbouring levels.
        moisture_coupling: γ (per time unit), humidity towards temperature.
        t_std: σ_T, temperature anomaly per attractor standard deviation (K).
        lnq_std: σ_q, ln-humidity anomaly per attractor standard deviation.
        q_floor: lowest humidity kept, as a fraction of the climatology.
    """

    n_columns: int = 40
    n_levels: int = 26
    p_bottom: float = 1000.0
    p_top: float = 10.0
    forcing: float = 8.0
    vertical_coupling: float = 2.0
    moisture_coupling: float = 0.3
    t_std: float = 2.5
    lnq_std: float = 0.25
    q_floor: float = 0.05
    pressure: Tensor = field(init=False, repr=False)
    latitude: Tensor = field(init=False, repr=False)
    t_clim: Tensor = field(init=False, repr=False)
    q_clim: Tensor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.n_columns < 4:
            raise ValueError(f"ColumnAtmosphere needs n_columns >= 4, got {self.n_columns}")
        if self.n_levels < 2:
            raise ValueError(f"ColumnAtmosphere needs n_levels >= 2, got {self.n_levels}")
        if not 0 < self.p_top < self.p_bottom <= 1100:
            raise ValueError(f"need 0 < p_top < p_bottom <= 1100 hPa, got p_top={self.p_top}, p_bottom={self.p_bottom}")
        for name in ("t_std", "lnq_std", "q_floor"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        p = np.exp(np.linspace(math.log(self.p_bottom), math.log(self.p_top), self.n_levels))
        lat = np.degrees(np.arcsin(np.sin(2 * np.pi * np.arange(self.n_columns) / self.n_columns)))
        t, q = base_state(lat, p)
        object.__setattr__(self, "pressure", torch.from_numpy(p))
        object.__setattr__(self, "latitude", torch.from_numpy(lat))
        object.__setattr__(self, "t_clim", torch.from_numpy(t))
        object.__setattr__(self, "q_clim", torch.from_numpy(q))

    @property
    def n_points(self) -> int:
        """Grid points ``L · N`` (two variables each)."""
        return self.n_levels * self.n_columns

    @property
    def n_state(self) -> int:
        """State length ``2 · L · N``."""
        return 2 * self.n_points

    def split(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(*batch, n_state)`` -> ``(T, q)``, each ``(*batch, L, N)`` (K, g/kg); views, not copies."""
        if x.shape[-1] != self.n_state:
            raise ValueError(f"state length {x.shape[-1]} does not match the model's {self.n_state}")
        fields = x.reshape(*x.shape[:-1], 2, self.n_levels, self.n_columns)
        return fields[..., 0, :, :], fields[..., 1, :, :]

    def join(self, t: Tensor, q: Tensor) -> Tensor:
        """``T, q`` ``(*batch, L, N)`` -> state ``(*batch, n_state)``."""
        return torch.stack([t, q], dim=-3).reshape(*t.shape[:-2], self.n_state)

    def profiles(self, x: Tensor, columns: Tensor) -> tuple[Tensor, Tensor]:
        """Profiles of chosen columns: ``(*batch, n_state)`` -> ``(T, q)`` each ``(*batch, n_col, L)``.

        Args:
            x: states, shape ``(*batch, n_state)``.
            columns: column indices, shape ``(n_col,)`` (repeats allowed).
        """
        t, q = self.split(x)
        idx = columns.to(x.device)
        return t[..., idx].transpose(-1, -2), q[..., idx].transpose(-1, -2)

    def climatology(self, dtype: torch.dtype = torch.float64) -> Tensor:
        """The base state as a state vector, shape ``(n_state,)``."""
        return self.join(self.t_clim, self.q_clim).to(dtype)

    def _clim(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        kw = {"dtype": x.dtype, "device": x.device}
        return self.t_clim.to(**kw), self.q_clim.to(**kw), self.pressure.to(**kw)[:, None]

    def to_anomalies(self, x: Tensor) -> Tensor:
        """Physical state -> non-dimensional ``(a, b)``, shape ``(*batch, 2, L, N)``."""
        t, q = self.split(x)
        t_clim, q_clim, _ = self._clim(x)
        a = L96_MEAN + L96_STD * (t - t_clim) / self.t_std
        b = L96_MEAN + L96_STD * torch.log(q.clamp_min(0) / q_clim).clamp_min(math.log(self.q_floor)) / self.lnq_std
        return torch.stack([a, b], dim=-3)

    def from_anomalies(self, ab: Tensor) -> Tensor:
        """Non-dimensional ``(*batch, 2, L, N)`` -> physical ``(*batch, n_state)``, saturation and floor applied."""
        a, b = ab[..., 0, :, :], ab[..., 1, :, :]
        t_clim, q_clim, p = self._clim(ab)
        t = t_clim + self.t_std * (a - L96_MEAN) / L96_STD
        lnq = (self.lnq_std * (b - L96_MEAN) / L96_STD).clamp_min(math.log(self.q_floor))
        q = torch.minimum(q_clim * torch.exp(lnq), saturation_specific_humidity(t, p))
        return self.join(t, q)

    def tendency(self, ab: Tensor, t: float = 0.0) -> Tensor:
        """Time derivative of the anomalies, ``(*batch, 2, L, N)`` -> same shape (per time unit)."""
        adv = (torch.roll(ab, -1, -1) - torch.roll(ab, 2, -1)) * torch.roll(ab, 1, -1) - ab + self.forcing
        padded = torch.cat([ab[..., :1, :], ab, ab[..., -1:, :]], dim=-2)
        diffusion = padded[..., 2:, :] - 2 * ab + padded[..., :-2, :]
        a, b = ab[..., 0:1, :, :], ab[..., 1:2, :, :]
        moist = torch.cat([torch.zeros_like(a), a - b], dim=-3)
        return adv + self.vertical_coupling * diffusion + self.moisture_coupling * moist

    def step(self, x: Tensor, t: float, dt: float) -> Tensor:
        """One RK4 step of the anomalies; ``x`` and the result have shape ``(*batch, n_state)``."""
        return self.from_anomalies(rk4_step(self.tendency, self.to_anomalies(x), t, dt))

    def initial_state(
        self, generator: torch.Generator, spin_up: float = 20.0, dt: float = 0.01, members: int | None = None
    ) -> Tensor:
        """States on the attractor: random anomalies run for ``spin_up`` time units, float64.

        Returns shape ``(n_state,)``, or ``(members, n_state)`` independent states when ``members`` is given.
        """
        shape = (2, self.n_levels, self.n_columns) if members is None else (members, 2, self.n_levels, self.n_columns)
        ab = L96_MEAN + L96_STD * torch.randn(shape, generator=generator, dtype=torch.float64)
        x = self.from_anomalies(ab)
        for i in range(round(spin_up / dt)):
            x = self.step(x, i * dt, dt)
        return x

    def grid(self, vertical_scale: float = 1.0) -> Grid:
        """Coordinates of the ``L · N`` points for localization: ``(column, vertical_scale · ln(p_bottom / p))``.

        The first axis is periodic with period N (one unit = one column spacing,
        40 000 km / N); the second is in scale heights times ``vertical_scale``, so
        one isotropic localization length acts as ``length`` columns horizontally and
        ``length / vertical_scale`` scale heights vertically.
        """
        z = vertical_scale * torch.log(self.p_bottom / self.pressure)
        zz, cc = torch.meshgrid(z, torch.arange(self.n_columns, dtype=torch.float64), indexing="ij")
        return Grid(coords=torch.stack([cc.reshape(-1), zz.reshape(-1)], dim=-1), period=(float(self.n_columns), None))

    def scale_height(self, pressure: Tensor) -> Tensor:
        """Vertical coordinate ``ln(p_bottom / p)`` of pressures ``(*)`` (hPa), as used by `grid`."""
        return torch.log(self.p_bottom / pressure)


__all__ = ["L96_MEAN", "L96_STD", "ColumnAtmosphere", "afgl_profiles", "base_state"]
