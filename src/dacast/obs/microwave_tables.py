"""Absorption look-up tables of the microwave operator (`dacast.obs.microwave`).

The package ships ``obs/data/amsua_tables.npz``, written by
``tools/build_amsua_tables.py`` from pyrtlib's clear-sky absorption with the
Rosenkranz (2022) models (water vapour and N2 continuum R22SD, oxygen R22; see the
file's ``provenance``). Per channel (one monochromatic frequency) and node of a
regular grid in ``ln p`` (hPa), ``ln T`` (K) and the vapour mole fraction
``w = e / p`` it holds

* ``ln_dry``: the natural log of the dry-air (O2 + N2) absorption coefficient
  (Np/km), nearly linear in ``ln p`` and ``ln T``;
* ``wet_per_e``: the water-vapour absorption coefficient divided by the vapour
  pressure (Np km-1 hPa-1), linear in ``e`` but for the self-continuum term.

`AbsorptionTables.interpolate` evaluates both trilinearly; the result is
differentiable in ``T`` and ``w`` (piecewise-constant derivatives in each cell).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from dacast.thermo import specific_humidity, vapour_pressure

#: The package data file of the AMSU-A tables.
AMSUA_TABLES_FILE = "data/amsua_tables.npz"
#: AMSU-A channel number -> frequency (GHz) of the channels in the tables (monochromatic).
AMSUA_CHANNELS: dict[int, float] = {6: 54.40, 7: 54.94, 8: 55.50}


#: Names a profile from its batch index, for error messages.
Describe = Callable[[tuple[int, ...]], str]


def _profile_name(index: tuple[int, ...]) -> str:
    if not index:
        return "the profile"
    return f"profile {index[0]}" if len(index) == 1 else f"profile {index}"


def _first(mask: Tensor) -> tuple[tuple[int, ...], int]:
    """Batch index and level of the first True of ``mask`` ``(*batch, L)`` in row-major order."""
    flat = int(torch.nonzero(mask.reshape(-1))[0, 0])
    row, level = divmod(flat, mask.shape[-1])
    index = []
    for n in reversed(mask.shape[:-1]):
        row, i = divmod(row, n)
        index.append(i)
    return tuple(reversed(index)), level


@dataclass(frozen=True, eq=False)
class AbsorptionTables:
    """Absorption coefficients of a few channels on a regular ``(ln p, ln T, w)`` grid (see the module docstring).

    Attributes:
        channels: channel numbers, length ``C``.
        frequency_ghz: their frequencies (GHz), length ``C``.
        ln_p: grid of ln(pressure / hPa), shape ``(P,)``, regular, increasing.
        ln_t: grid of ln(temperature / K), shape ``(T,)``, regular, increasing.
        vapour_fraction: grid of ``w = e / p``, shape ``(W,)``, regular, from 0.
        ln_dry: ln(dry absorption / Np km-1), shape ``(C, P, T, W)``.
        wet_per_e: water-vapour absorption / e (Np km-1 hPa-1), shape ``(C, P, T, W)``.
        provenance: JSON text: source, models, grids, date, command.
    """

    channels: tuple[int, ...]
    frequency_ghz: tuple[float, ...]
    ln_p: Tensor
    ln_t: Tensor
    vapour_fraction: Tensor
    ln_dry: Tensor
    wet_per_e: Tensor
    provenance: str
    _on_device: dict[tuple[torch.device, torch.dtype], Tensor] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        shape = (len(self.channels), self.ln_p.numel(), self.ln_t.numel(), self.vapour_fraction.numel())
        if len(self.frequency_ghz) != len(self.channels):
            raise ValueError(f"{len(self.channels)} channels but {len(self.frequency_ghz)} frequencies")
        for name in ("ln_dry", "wet_per_e"):
            if tuple(getattr(self, name).shape) != shape:
                raise ValueError(f"{name} must have shape {shape}, got {tuple(getattr(self, name).shape)}")
        for name in ("ln_p", "ln_t", "vapour_fraction"):
            grid = getattr(self, name)
            steps = torch.diff(grid)
            if grid.numel() < 2 or not bool((steps > 0).all()) or float(steps.max() - steps.min()) > 1e-9:
                raise ValueError(f"the {name} grid must be regular and increasing with >= 2 nodes")
        if float(self.vapour_fraction[0]) != 0.0:
            raise ValueError("the vapour_fraction grid must start at 0")

    @classmethod
    def from_file(cls, path: str | Path) -> AbsorptionTables:
        """Read tables written by ``tools/build_amsua_tables.py``."""
        with np.load(path, allow_pickle=False) as data:
            return cls._from_npz(data)

    @classmethod
    def _from_npz(cls, data: np.lib.npyio.NpzFile) -> AbsorptionTables:
        return cls(
            channels=tuple(int(c) for c in data["channels"]),
            frequency_ghz=tuple(float(f) for f in data["frequency_ghz"]),
            ln_p=torch.from_numpy(data["ln_p"].astype(np.float64)),
            ln_t=torch.from_numpy(data["ln_t"].astype(np.float64)),
            vapour_fraction=torch.from_numpy(data["vapour_fraction"].astype(np.float64)),
            ln_dry=torch.from_numpy(data["ln_dry"]),
            wet_per_e=torch.from_numpy(data["wet_per_e"]),
            provenance=str(data["provenance"]),
        )

    @property
    def pressure_range(self) -> tuple[float, float]:
        """Lowest and highest pressure of the grid (hPa)."""
        return float(torch.exp(self.ln_p[0])), float(torch.exp(self.ln_p[-1]))

    @property
    def temperature_range(self) -> tuple[float, float]:
        """Lowest and highest temperature of the grid (K)."""
        return float(torch.exp(self.ln_t[0])), float(torch.exp(self.ln_t[-1]))

    @property
    def max_vapour_fraction(self) -> float:
        """Largest vapour mole fraction ``e / p`` of the grid."""
        return float(self.vapour_fraction[-1])

    def provenance_dict(self) -> dict[str, object]:
        """The provenance as a dictionary."""
        return dict(json.loads(self.provenance))

    def channel_index(self, channels: tuple[int, ...]) -> list[int]:
        """Positions of ``channels`` in the tables; a `ValueError` names the first one missing."""
        if len(channels) == 0:
            raise ValueError("at least one channel is needed")
        missing = [c for c in channels if c not in self.channels]
        if missing:
            have = ", ".join(str(c) for c in self.channels)
            raise ValueError(f"channel {missing[0]} is not in the absorption tables (channels {have})")
        return [self.channels.index(c) for c in channels]

    def check_profiles(
        self,
        t: Tensor,
        q: Tensor,
        p: Tensor,
        zenith_deg: Tensor,
        channels: tuple[int, ...],
        name: Describe | None = None,
    ) -> None:
        """Raise a one-line `ValueError` for the first input the tables cannot serve (profile, level, value, range).

        Checks the channels, the pressures (finite, inside the grid, strictly decreasing),
        then profile by profile and level by level ``T`` (finite, inside the grid) and ``q``
        (finite, >= 0, ``e / p`` inside the grid), then the zenith angles (0 <= θ < 90).

        Args:
            t: temperature, shape ``(*batch, L)`` (K).
            q: specific humidity, shape ``(*batch, L)`` (g/kg).
            p: pressure levels, shape ``(L,)`` (hPa).
            zenith_deg: zenith angles, shape ``(*batch,)`` (degrees).
            channels: channel numbers.
            name: batch index -> name of the profile in the message (default ``"profile i"``).
        """
        name = _profile_name if name is None else name
        self.channel_index(channels)
        (p_lo, p_hi), (t_lo, t_hi), w_hi = self.pressure_range, self.temperature_range, self.max_vapour_fraction
        with torch.no_grad():
            if p.ndim != 1 or p.numel() != t.shape[-1] or p.numel() < 2:
                raise ValueError(f"p must have shape ({t.shape[-1]},) with at least 2 levels, got {tuple(p.shape)}")
            bad = ~torch.isfinite(p) | (p < p_lo) | (p > p_hi)
            if bool(bad.any()):
                k = int(torch.nonzero(bad)[0, 0])
                raise ValueError(
                    f"pressure at level {k} is {float(p[k]):g} hPa, outside the tables' {p_lo:g}..{p_hi:g} hPa"
                )
            rising = p[1:] >= p[:-1]
            if bool(rising.any()):
                k = int(torch.nonzero(rising)[0, 0]) + 1
                raise ValueError(
                    f"pressure must be strictly decreasing (bottom first): level {k} has {float(p[k]):g} hPa "
                    f">= {float(p[k - 1]):g} hPa at level {k - 1}"
                )
            bad_t = ~torch.isfinite(t) | (t < t_lo) | (t > t_hi)
            w = vapour_pressure(q, p) / p
            bad_q = ~torch.isfinite(q) | (q < 0) | (w > w_hi)
            if bool((bad_t | bad_q).any()):
                index, k = _first(bad_t | bad_q)
                where = f"{name(index)}, level {k} ({float(p[k]):g} hPa)"
                tk, qk = float(t[index + (k,)]), float(q[index + (k,)])
                if bool(bad_t[index + (k,)]):
                    raise ValueError(f"temperature at {where} is {tk:g} K, outside the tables' {t_lo:g}..{t_hi:g} K")
                if not math.isfinite(qk) or qk < 0:
                    raise ValueError(f"specific humidity at {where} is {qk:g} g/kg; it must be finite and >= 0")
                q_hi = float(specific_humidity(torch.tensor(w_hi), torch.tensor(1.0)))
                raise ValueError(
                    f"vapour pressure at {where} is {float(w[index + (k,)]) * float(p[k]):g} hPa (q = {qk:g} g/kg), "
                    f"above the tables' {w_hi:g} p = {w_hi * float(p[k]):g} hPa (q <= {q_hi:.4g} g/kg)"
                )
            bad_z = ~torch.isfinite(zenith_deg) | (zenith_deg < 0) | (zenith_deg >= 90)
            if bool(bad_z.any()):
                index, _ = _first(bad_z.unsqueeze(-1))
                zk = float(zenith_deg[index])
                raise ValueError(f"zenith angle of {name(index)} is {zk:g} deg; need 0 <= zenith < 90")

    def _values(self, device: torch.device, dtype: torch.dtype) -> Tensor:
        """Both tables stacked, ``(2, C, P * T * W)`` on ``device`` in ``dtype`` (cached)."""
        key = (device, dtype)
        if key not in self._on_device:
            both = torch.stack([self.ln_dry, self.wet_per_e]).reshape(2, len(self.channels), -1)
            self._on_device[key] = both.to(device=device, dtype=dtype)
        return self._on_device[key]

    def interpolate(self, ln_p: Tensor, ln_t: Tensor, w: Tensor, channels: tuple[int, ...]) -> tuple[Tensor, Tensor]:
        """Trilinear interpolation of both tables at the given points.

        Points outside the grid are clamped to its edge (callers check the ranges first).

        Args:
            ln_p: ln(pressure / hPa), broadcastable to ``ln_t``, e.g. shape ``(L,)``.
            ln_t: ln(temperature / K), shape ``(*batch, L)``.
            w: vapour mole fraction ``e / p``, shape ``(*batch, L)``.
            channels: channel numbers to return, length ``C``.

        Returns:
            ``(ln_dry, wet_per_e)``, each of shape ``(*batch, C, L)``: ln(dry absorption / Np km-1)
            and water-vapour absorption / e (Np km-1 hPa-1).
        """
        ln_p, ln_t, w = torch.broadcast_tensors(ln_p.to(ln_t), ln_t, w.to(ln_t))
        rows = torch.as_tensor(self.channel_index(channels), device=ln_t.device)
        values = self._values(ln_t.device, ln_t.dtype)[:, rows]  # (2, C, nodes)
        index = torch.zeros(ln_t.shape, dtype=torch.long, device=ln_t.device)
        weights = torch.ones((1,) + ln_t.shape, dtype=ln_t.dtype, device=ln_t.device)
        offsets = torch.zeros(1, dtype=torch.long, device=ln_t.device)
        stride = 1
        for grid, x in reversed(((self.ln_p, ln_p), (self.ln_t, ln_t), (self.vapour_fraction, w))):
            n = grid.numel()
            u = (x - float(grid[0])) / float(grid[1] - grid[0])
            cell = torch.floor(u.detach()).clamp(0, n - 2)
            frac = (u - cell).clamp(0.0, 1.0)
            index = index + cell.long() * stride
            weights = torch.cat([weights * (1.0 - frac), weights * frac])
            offsets = torch.cat([offsets, offsets + stride])
            stride *= n
        corners = index.unsqueeze(0) + offsets.reshape((-1,) + (1,) * ln_t.ndim)  # (8, *batch, L)
        picked = values[:, :, corners.reshape(-1)].reshape(values.shape[:2] + corners.shape)
        out = (picked * weights).sum(dim=2)  # (2, C, *batch, L)
        out = out.movedim(1, -2)  # (2, *batch, C, L)
        return out[0], out[1]


@cache
def load_amsua_tables() -> AbsorptionTables:
    """The AMSU-A channel 6-8 tables shipped with the package (read once, then cached)."""
    path = resources.files("dacast.obs").joinpath(AMSUA_TABLES_FILE)
    with path.open("rb") as fh, np.load(fh, allow_pickle=False) as data:
        return AbsorptionTables._from_npz(data)


__all__ = ["AMSUA_CHANNELS", "AMSUA_TABLES_FILE", "AbsorptionTables", "Describe", "load_amsua_tables"]
