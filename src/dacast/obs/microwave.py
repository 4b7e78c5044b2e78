r"""Clear-sky microwave radiative transfer for AMSU-A channels 6-8 seen from a satellite, batched and differentiable.

The same layer formulation as pyrtlib's ``TbCloudRTE`` (Schroeder & Westwater 1991,
the NOAA/ETL ``TBMODEL``; plane-parallel, no ray tracing), with the absorption
coefficients interpolated from tables of pyrtlib's Rosenkranz (2022) models
(`dacast.obs.microwave_tables`). It matches pyrtlib within 0.01 K (see
``tests/obs/test_microwave.py`` and ``benchmarks/obsop_vs_pyrtlib.py``).

Inputs per profile: temperature ``T_i`` (K) and specific humidity ``q_i`` (g/kg) on
pressure levels ``p_i`` (hPa), ``i = 0 .. L-1`` from the bottom up, and the zenith
angle ``θ`` of the line of sight. For each channel of frequency ``ν``:

1. Absorption at the levels (Np/km): ``e_i = q_i p_i / (ε + (1 − ε) q_i)`` and
   ``w_i = e_i / p_i``; ``α_dry,i = exp(ln_dry(ln p_i, ln T_i, w_i))`` and
   ``α_wet,i = e_i · wet_per_e(ln p_i, ln T_i, w_i)``, both trilinear in the tables.
2. Layer optical depth between levels ``i`` and ``i+1``, separately for dry and wet
   absorption (exponential interpolation in height, Schroeder & Westwater 1991)::

       ᾱ_i = (α_{i+1} − α_i) / ln(α_{i+1} / α_i)      (arithmetic mean if an α is 0)
       τ_i = (ᾱ_dry,i + ᾱ_wet,i) · Δz_i · sec θ

   with ``Δz_i`` the hypsometric thickness of `dacast.thermo.heights` (km).
3. Modified Planck function (the Planck radiance without ``2hν³/c²``) and its inverse::

       B(T) = 1 / (exp(hν / kT) − 1),        T_b(B) = (hν/k) / ln(1 + 1/B)

4. Layer source and the upwelling sum to the top of the atmosphere::

       t_i = exp(−τ_i),   Γ_i = exp(−Σ_{k ≥ i} τ_k)  (transmittance from level i to space)
       B̄_i = (B(T_{i+1}) + B(T_i) t_i) / (1 + t_i)
       B_toa = ε_s B(T_0) Γ_0 + Σ_i B̄_i Γ_{i+1} (1 − t_i),      T_b = T_b(B_toa)

   The surface is at the lowest level with ``T_s = T_0`` and emissivity ``ε_s``;
   as in the reference, neither the reflected downwelling radiance nor the cosmic
   background enters the upwelling sum (exact for ``ε_s = 1``).

Weighting functions (`weighting_functions`): ``W(p) = −dΓ/d ln p = α(p) sec θ H(p) Γ(p)``
with ``H = R_d T_v / g`` the local scale height (km), per level; their maximum over
``ln p`` (refined by a parabola through the three levels around it) is the peak
pressure (`peak_pressure`).

References: Schroeder, J. A. & Westwater, E. R. (1991), User's guide to WPL
microwave radiative transfer software, NOAA Tech. Memo. ERL WPL-213; Rosenkranz,
P. W. (2022 versions of the O2, H2O and N2 absorption models, as implemented in
pyrtlib 1.2.0: Larosa, S. et al. 2024, pyrtlib, Geosci. Model Dev. 17, 2053-2076),
for the tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from dacast.obs.microwave_tables import AMSUA_CHANNELS, AbsorptionTables, Describe, load_amsua_tables
from dacast.thermo import GRAVITY, R_DRY, heights, vapour_pressure, virtual_temperature

if TYPE_CHECKING:
    from dacast.models.column import ColumnAtmosphere

#: Planck constant over Boltzmann constant, h / k (K/Hz; CODATA 2018, exact).
H_OVER_K = 6.62607015e-34 / 1.380649e-23
#: Default channels of the operator.
DEFAULT_CHANNELS = (6, 7, 8)


def modified_planck(t: Tensor, frequency_ghz: Tensor) -> Tensor:
    """``B = 1 / (exp(hν/kT) − 1)`` (dimensionless); ``t`` (K) and ``frequency_ghz`` (GHz) broadcast."""
    return 1.0 / torch.expm1(H_OVER_K * 1e9 * frequency_ghz / t)


def planck_temperature(b: Tensor, frequency_ghz: Tensor) -> Tensor:
    """Inverse of `modified_planck`: ``T = (hν/k) / ln(1 + 1/B)`` (K); ``b`` and ``frequency_ghz`` (GHz) broadcast."""
    return H_OVER_K * 1e9 * frequency_ghz / torch.log1p(1.0 / b)


def _log_mean(a: Tensor, b: Tensor) -> Tensor:
    """``(b − a) / ln(b / a)`` elementwise for ``a, b >= 0``; ``(a + b) / 2`` where either is 0. Differentiable."""
    positive = (a > 0) & (b > 0)
    a_safe = torch.where(positive, a, torch.ones_like(a))
    r = torch.log(torch.where(positive, b, torch.ones_like(b))) - torch.log(a_safe)
    small = r.abs() < 1e-3
    r_safe = torch.where(small, torch.ones_like(r), r)
    ratio = torch.where(small, 1.0 + r * (0.5 + r / 6.0), torch.expm1(r_safe) / r_safe)
    return torch.where(positive, a_safe * ratio, 0.5 * (a + b))


def _prepare(
    t: Tensor, q: Tensor, p: Tensor | float, zenith_deg: Tensor | float
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    if not torch.is_floating_point(t):
        raise ValueError(f"t must be a floating-point tensor, got {t.dtype}")
    if q.shape != t.shape or t.ndim < 1:
        raise ValueError(f"t and q must have the same shape (*batch, L), got {tuple(t.shape)} and {tuple(q.shape)}")
    q = q.to(t)
    p = torch.as_tensor(p, dtype=t.dtype, device=t.device)
    zen = torch.as_tensor(zenith_deg, dtype=t.dtype, device=t.device)
    try:
        zen = torch.broadcast_to(zen, t.shape[:-1])
    except RuntimeError:
        raise ValueError(
            f"zenith_deg of shape {tuple(zen.shape)} does not broadcast to {tuple(t.shape[:-1])}"
        ) from None
    return t, q, p, zen


def _optics(
    t: Tensor, q: Tensor, p: Tensor, zen: Tensor, channels: tuple[int, ...], tables: AbsorptionTables
) -> tuple[Tensor, Tensor, Tensor]:
    """Absorption ``(*batch, C, L)`` (Np/km), layer optical depth ``(*batch, C, L-1)``, sec θ ``(*batch, 1, 1)``."""
    e = vapour_pressure(q, p)
    ln_dry, wet_per_e = tables.interpolate(torch.log(p), torch.log(t), e / p, channels)
    dry = torch.exp(ln_dry)
    wet = wet_per_e * e.unsqueeze(-2)
    dz = torch.diff(heights(p, t, q), dim=-1).unsqueeze(-2)  # (*batch, 1, L-1), km
    secant = (1.0 / torch.cos(torch.deg2rad(zen)))[..., None, None]
    layer = _log_mean(dry[..., :-1], dry[..., 1:]) + _log_mean(wet[..., :-1], wet[..., 1:])
    return dry + wet, layer * dz * secant, secant


def _to_space(tau: Tensor) -> Tensor:
    """Optical depth from each level to space, ``(*, L-1)`` layers -> ``(*, L)`` levels (0 at the top)."""
    above = torch.flip(torch.cumsum(torch.flip(tau, (-1,)), dim=-1), (-1,))
    return torch.cat([above, torch.zeros_like(above[..., :1])], dim=-1)


def _brightness_temperature(
    t: Tensor,
    q: Tensor,
    p: Tensor | float,
    zenith_deg: Tensor | float,
    channels: tuple[int, ...],
    tables: AbsorptionTables | None,
    emissivity: float | Tensor,
    check: bool,
    name: Describe | None,
) -> Tensor:
    tables = load_amsua_tables() if tables is None else tables
    channels = tuple(int(c) for c in channels)
    t, q, p, zen = _prepare(t, q, p, zenith_deg)
    if check:
        tables.check_profiles(t, q, p, zen, channels, name)
    _, tau, _ = _optics(t, q, p, zen, channels, tables)
    idx = tables.channel_index(channels)
    freq = torch.tensor([tables.frequency_ghz[i] for i in idx], dtype=t.dtype, device=t.device)
    b = modified_planck(t.unsqueeze(-2), freq[:, None])  # (*batch, C, L)
    trans = torch.exp(-tau)
    gamma = torch.exp(-_to_space(tau))  # (*batch, C, L)
    source = (b[..., 1:] + b[..., :-1] * trans) / (1.0 + trans)
    atmosphere = (source * gamma[..., 1:] * -torch.expm1(-tau)).sum(dim=-1)
    surface = torch.as_tensor(emissivity, dtype=t.dtype, device=t.device) * b[..., 0] * gamma[..., 0]
    return planck_temperature(atmosphere + surface, freq)


def brightness_temperature(
    t: Tensor,
    q: Tensor,
    p: Tensor,
    zenith_deg: Tensor | float,
    *,
    channels: tuple[int, ...] = DEFAULT_CHANNELS,
    tables: AbsorptionTables | None = None,
    emissivity: float | Tensor = 1.0,
    check: bool = True,
) -> Tensor:
    """Upwelling clear-sky brightness temperatures at the top of the atmosphere (see the module docstring).

    Args:
        t: temperature, shape ``(*batch, L)`` (K), bottom level first.
        q: specific humidity, shape ``(*batch, L)`` (g/kg).
        p: pressure levels, shape ``(L,)`` (hPa), strictly decreasing.
        zenith_deg: zenith angle of the line of sight, broadcastable to ``(*batch,)`` (degrees, 0..90).
        channels: AMSU-A channel numbers (`AMSUA_CHANNELS`), length ``C``.
        tables: absorption tables; default `load_amsua_tables()`.
        emissivity: surface emissivity, scalar or broadcastable to ``(*batch, C)``.
        check: validate the inputs first (one-line `ValueError` naming profile and level).

    Returns:
        Brightness temperatures, shape ``(*batch, C)`` (K), dtype and device of ``t``.
    """
    return _brightness_temperature(t, q, p, zenith_deg, channels, tables, emissivity, check, None)


def weighting_functions(
    t: Tensor,
    q: Tensor,
    p: Tensor,
    zenith_deg: Tensor | float,
    *,
    channels: tuple[int, ...] = DEFAULT_CHANNELS,
    tables: AbsorptionTables | None = None,
    check: bool = True,
) -> Tensor:
    """Weighting functions ``W = −dΓ/d ln p`` at the levels (Γ: transmittance to space along the line of sight).

    ``W_i = α_i sec θ H_i Γ_i``, with ``α_i`` the absorption (Np/km), ``H_i = R_d T_v,i / g``
    the scale height (km) and ``Γ_i`` the transmittance from level ``i`` to space of the
    layer optical depths of `brightness_temperature`. Non-negative; integrates over
    ``ln p`` to about ``1 − Γ_0``.

    Args:
        t, q, p, zenith_deg, channels, tables, check: as for `brightness_temperature`.

    Returns:
        ``W``, shape ``(*batch, C, L)`` (per unit ln p, dimensionless).
    """
    tables = load_amsua_tables() if tables is None else tables
    channels = tuple(int(c) for c in channels)
    t, q, p, zen = _prepare(t, q, p, zenith_deg)
    if check:
        tables.check_profiles(t, q, p, zen, channels)
    alpha, tau, secant = _optics(t, q, p, zen, channels, tables)
    scale_height = (R_DRY / GRAVITY) * 1e-3 * virtual_temperature(t, q).unsqueeze(-2)
    return alpha * secant * scale_height * torch.exp(-_to_space(tau))


def peak_pressure(
    t: Tensor,
    q: Tensor,
    p: Tensor,
    zenith_deg: Tensor | float,
    *,
    channels: tuple[int, ...] = DEFAULT_CHANNELS,
    tables: AbsorptionTables | None = None,
    check: bool = True,
) -> Tensor:
    """Pressure of the maximum of each channel's weighting function (`weighting_functions`).

    The level of the largest ``W``, refined by the vertex of the parabola in ``ln p``
    through it and its two neighbours (the level itself at the bottom or the top).

    Args:
        t, q, p, zenith_deg, channels, tables, check: as for `brightness_temperature`.

    Returns:
        Peak pressures, shape ``(*batch, C)`` (hPa).
    """
    w = weighting_functions(t, q, p, zenith_deg, channels=channels, tables=tables, check=check).detach()
    x = torch.log(torch.as_tensor(p, dtype=w.dtype, device=w.device))
    n = x.numel()
    k = w.argmax(dim=-1, keepdim=True).clamp(1, n - 2)
    w0, w1, w2 = (torch.gather(w, -1, k + d).squeeze(-1) for d in (-1, 0, 1))
    x0, x1, x2 = (x[(k + d).squeeze(-1)] for d in (-1, 0, 1))
    # vertex of the parabola through (x0, w0), (x1, w1), (x2, w2)
    num = (x1 - x0) ** 2 * (w1 - w2) - (x1 - x2) ** 2 * (w1 - w0)
    den = (x1 - x0) * (w1 - w2) - (x1 - x2) * (w1 - w0)
    vertex = x1 - 0.5 * num / torch.where(den == 0, torch.ones_like(den), den)
    interior = (den != 0) & (w1 >= w0) & (w1 >= w2)
    lo, hi = torch.minimum(x0, x2), torch.maximum(x0, x2)
    best = torch.where(interior, vertex.clamp(lo, hi), x[w.argmax(dim=-1)])
    return torch.exp(best)


@dataclass(frozen=True, eq=False)
class MicrowaveOperator:
    """AMSU-A brightness temperatures of chosen columns of a `ColumnAtmosphere` state; meets `ObsOperator`.

    Observation ``fov · C + c`` is channel ``channels[c]`` seen in field of view ``fov``
    (column ``columns[fov]`` at zenith angle ``zenith_deg[fov]``): fov-major, channel-minor.

    Attributes:
        model: the column model whose states ``(*batch, n_state)`` are observed.
        columns: model column of each field of view, shape ``(n_fov,)``, long.
        zenith_deg: zenith angle of each field of view, shape ``(n_fov,)`` (degrees, 0..90).
        channels: AMSU-A channel numbers, length ``C``.
        error_std: observation-error standard deviations, shape ``(n_obs,)`` (K).
        locations: observation coordinates, shape ``(n_obs, 2)`` (e.g. column, ln(p_bottom / p_peak)).
        tables: absorption tables; default `load_amsua_tables()`.
        check: validate the profiles on every call (one-line `ValueError` naming fov and level).
    """

    model: ColumnAtmosphere
    columns: Tensor
    zenith_deg: Tensor
    channels: tuple[int, ...]
    error_std: Tensor
    locations: Tensor
    tables: AbsorptionTables | None = None
    check: bool = True

    def __post_init__(self) -> None:
        n_col = self.model.n_columns
        if self.columns.ndim != 1 or self.columns.dtype != torch.long or self.columns.numel() == 0:
            raise ValueError(
                f"columns must be a non-empty 1-D long tensor, got {self.columns.dtype} {tuple(self.columns.shape)}"
            )
        lo, hi = int(self.columns.min()), int(self.columns.max())
        if lo < 0 or hi >= n_col:
            raise ValueError(f"columns must lie in [0, {n_col - 1}], got min {lo}, max {hi}")
        n_fov = self.columns.numel()
        if self.zenith_deg.shape != (n_fov,):
            raise ValueError(f"zenith_deg must have shape ({n_fov},), got {tuple(self.zenith_deg.shape)}")
        if not bool(((self.zenith_deg >= 0) & (self.zenith_deg < 90)).all()):
            lo_z, hi_z = float(self.zenith_deg.min()), float(self.zenith_deg.max())
            raise ValueError(f"zenith_deg must lie in [0, 90), got min {lo_z:g}, max {hi_z:g}")
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        tables = load_amsua_tables() if self.tables is None else self.tables
        tables.channel_index(self.channels)
        if self.error_std.shape != (self.n_obs,):
            raise ValueError(f"error_std must have shape ({self.n_obs},), got {tuple(self.error_std.shape)}")
        if not bool((self.error_std > 0).all()):
            raise ValueError("observation error standard deviations must be positive")
        if self.locations.shape != (self.n_obs, 2):
            raise ValueError(f"locations must have shape ({self.n_obs}, 2), got {tuple(self.locations.shape)}")

    @property
    def n_state(self) -> int:
        """Length of the model state."""
        return self.model.n_state

    @property
    def n_obs(self) -> int:
        """``n_fov · C`` observations."""
        return self.columns.numel() * len(self.channels)

    def _name(self, index: tuple[int, ...]) -> str:
        fov = index[-1]
        state = f"state {index[:-1] if len(index) > 2 else index[0]}, " if len(index) > 1 else ""
        return f"{state}fov {fov} (model column {int(self.columns[fov])})"

    def __call__(self, x: Tensor) -> Tensor:
        """States ``(*batch, n_state)`` -> brightness temperatures ``(*batch, n_obs)`` (K)."""
        t, q = self.model.profiles(x, self.columns)  # (*batch, n_fov, L)
        p = self.model.pressure.to(dtype=x.dtype, device=x.device)
        zen = self.zenith_deg.to(dtype=x.dtype, device=x.device)
        tb = _brightness_temperature(t, q, p, zen, self.channels, self.tables, 1.0, self.check, self._name)
        return tb.reshape(*tb.shape[:-2], self.n_obs)


__all__ = [
    "AMSUA_CHANNELS",
    "DEFAULT_CHANNELS",
    "H_OVER_K",
    "AbsorptionTables",
    "MicrowaveOperator",
    "brightness_temperature",
    "load_amsua_tables",
    "modified_planck",
    "peak_pressure",
    "planck_temperature",
    "weighting_functions",
]
