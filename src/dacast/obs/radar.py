"""Radar observations of the 2-D Würsch-Craig model: reflectivity and Doppler velocity.

A single radar at ``site`` scans polar gates out to ``max_range``; gates are
sampled from the truth (bilinear), get random errors, and are averaged
("superobbed") to the model's grid cells, as SCALE-LETKF does for its
phased-array radar. Cells out of range or in a blocked sector have no data.
Echoes under ``clear_air_dbz`` are assimilated as ``clear_air_value``; Doppler
velocities are kept only where there is an echo (``vr_requires_echo``).

Geometry: cell ``(j, i)`` has its centre at ``(y, x) = (j dx, i dx)`` metres
(the coordinates of ``Grid.cartesian((ny, nx), spacing=dx)``), azimuth is
measured clockwise from north (+y), and range is the plain (non-periodic)
distance to the site. Reflectivity power law and units: ``docs/bda_model.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor

from dacast.models.wursch_craig import WurschCraigConfig

DBZ = 0
VR = 1


@dataclass(frozen=True, kw_only=True)
class RadarConfig:
    """Radar site, scan geometry, masks, clear-air handling and errors."""

    site: tuple[float, float] | None = None  # (y, x) in m; default: the domain centre cell
    max_range: float = 60e3  # m
    min_range: float = 500.0  # m, cells closer than this to the site have no data
    blocked_sectors: tuple[tuple[float, float], ...] = ((30.0, 45.0),)  # azimuths (deg, clockwise from +y)
    clear_air_dbz: float = 10.0  # dBZ; superobs below it are assimilated as clear_air_value
    clear_air_value: float = 5.0  # dBZ
    error_dbz: float = 5.0  # dBZ, observation error std
    error_vr: float = 3.0  # m/s
    gate_spacing: float = 100.0  # m, range resolution of the raw gates
    azimuth_step: float = 0.5  # deg, between raw rays
    vr_requires_echo: bool = True  # Doppler velocity only where the superobbed echo >= clear_air_dbz
    rain_to_rhoqr: float = 2.0  # kg m^-3 of rain water (rho q_r) per unit of model rain r
    floor_dbz: float = 0.0  # dBZ, reflectivity never below this
    outage: bool = False  # True: the radar is down, `observe_radar` returns no observations

    def __post_init__(self) -> None:
        for name in ("max_range", "gate_spacing", "azimuth_step", "error_dbz", "error_vr", "rain_to_rhoqr"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not 0 <= self.min_range < self.max_range:
            raise ValueError(f"need 0 <= min_range < max_range, got {self.min_range}, {self.max_range}")
        for lo, hi in self.blocked_sectors:
            if not (0 <= lo <= 360 and 0 <= hi <= 360):
                raise ValueError(f"blocked sector azimuths must lie in [0, 360], got ({lo}, {hi})")


def reflectivity_dbz(rain: Tensor, *, rain_to_rhoqr: float = 2.0, floor_dbz: float = 0.0) -> Tensor:
    """Reflectivity (dBZ) of model rain ``r`` by the SCALE-LETKF rain power law.

    ``Z = 2.53e4 (rho q_r)^1.84`` in mm^6 m^-3 with ``rho q_r`` in g m^-3,
    ``rho q_r = 1000 * rain_to_rhoqr * r`` (``rain_to_rhoqr`` in kg m^-3 per unit r),
    ``dBZ = max(10 log10 Z, floor_dbz)``.

    Args:
        rain: model rain, any shape, dimensionless (>= 0).

    Returns:
        dBZ, same shape and dtype.
    """
    rhoqr_g = rain.clamp(min=0.0) * (1000.0 * rain_to_rhoqr)
    z = 2.53e4 * rhoqr_g.pow(1.84)
    floor = 10.0 ** (floor_dbz / 10.0)
    return 10.0 * torch.log10(z.clamp(min=floor))


def _site(model_config: WurschCraigConfig, config: RadarConfig) -> tuple[float, float]:
    if config.site is not None:
        return (float(config.site[0]), float(config.site[1]))
    return (model_config.ny // 2 * model_config.dx, model_config.nx // 2 * model_config.dx)


def _azimuth_deg(dy: Tensor, dx: Tensor) -> Tensor:
    """Azimuth clockwise from +y (north), degrees in [0, 360)."""
    return torch.rad2deg(torch.atan2(dx, dy)) % 360.0


def _blocked(az: Tensor, sectors: tuple[tuple[float, float], ...]) -> Tensor:
    out = torch.zeros_like(az, dtype=torch.bool)
    for lo, hi in sectors:
        out |= (az >= lo) & (az < hi) if lo <= hi else (az >= lo) | (az < hi)
    return out


def radial_velocity(u: Tensor, v: Tensor, site: tuple[float, float], dx: float) -> Tensor:
    """Doppler radial velocity ``(u, v) . e_r`` at every cell centre.

    Args:
        u, v: cell-centred winds, shape ``(*batch, ny, nx)``, m/s (``u`` towards +x, ``v`` towards +y).
        site: radar position ``(y, x)``, m.
        dx: grid spacing, m (cell ``(j, i)`` at ``(j dx, i dx)``).

    Returns:
        Radial velocity (positive away from the radar), ``(*batch, ny, nx)``, m/s; 0 at the site.
    """
    ny, nx = u.shape[-2:]
    yy = torch.arange(ny, dtype=torch.float64, device=u.device)[:, None] * dx - site[0]
    xx = torch.arange(nx, dtype=torch.float64, device=u.device)[None, :] * dx - site[1]
    dist = torch.sqrt(yy * yy + xx * xx)
    safe = dist.clamp(min=1e-9)
    ey = torch.where(dist > 0, yy / safe, 0.0).to(u.dtype)
    ex = torch.where(dist > 0, xx / safe, 0.0).to(u.dtype)
    return u * ex + v * ey


def radar_mask(model_config: WurschCraigConfig, config: RadarConfig) -> Tensor:
    """Cells with radar data: ``min_range <= range <= max_range`` and not in a blocked sector; ``(ny, nx)`` bool."""
    sy, sx = _site(model_config, config)
    d = model_config.dx
    yy = torch.arange(model_config.ny, dtype=torch.float64)[:, None] * d - sy
    xx = torch.arange(model_config.nx, dtype=torch.float64)[None, :] * d - sx
    rng = torch.sqrt(yy * yy + xx * xx)
    az = _azimuth_deg(yy.expand_as(rng), xx.expand_as(rng))
    return (rng >= config.min_range) & (rng <= config.max_range) & ~_blocked(az, config.blocked_sectors)


@dataclass(frozen=True, eq=False)
class RadarOperator:
    """Model equivalents of superobbed radar data; meets `dacast.obs.ObsOperator`.

    Observations are ordered: all reflectivities (by cell), then all radial velocities (by cell).

    Attributes:
        n_state: ``4 * ny * nx`` (state laid out ``(var, y, x)``, vars ``u, v, h, r``).
        locations: ``(n_obs, 2)``, ``(y, x)`` of the cell centre in km.
        error_std: ``(n_obs,)``, dBZ or m/s.
        kind: ``(n_obs,)`` int64, 0 = reflectivity (dBZ), 1 = radial velocity (m/s).
        cell: ``(n_obs,)`` int64, flat cell index ``j * nx + i``.
        ex, ey: ``(n_obs,)``, unit vector from the site to the cell (0 for reflectivities).
    """

    n_state: int
    ny: int
    nx: int
    locations: Tensor
    error_std: Tensor
    kind: Tensor
    cell: Tensor
    ex: Tensor
    ey: Tensor
    clear_air_value: float
    rain_to_rhoqr: float
    floor_dbz: float

    @property
    def n_obs(self) -> int:
        """Number of observations."""
        return int(self.cell.numel())

    @property
    def n_dbz(self) -> int:
        """Number of reflectivity observations."""
        return int((self.kind == DBZ).sum())

    @property
    def n_vr(self) -> int:
        """Number of radial-velocity observations."""
        return int((self.kind == VR).sum())

    @staticmethod
    def empty(model_config: WurschCraigConfig, config: RadarConfig | None = None) -> RadarOperator:
        """An operator with no observations (a radar outage)."""
        config = config or RadarConfig()
        z = torch.zeros(0, dtype=torch.int64)
        f = torch.zeros(0, dtype=torch.float64)
        return RadarOperator(
            n_state=4 * model_config.ny * model_config.nx,
            ny=model_config.ny,
            nx=model_config.nx,
            locations=torch.zeros((0, 2), dtype=torch.float64),
            error_std=f,
            kind=z,
            cell=z,
            ex=f,
            ey=f,
            clear_air_value=config.clear_air_value,
            rain_to_rhoqr=config.rain_to_rhoqr,
            floor_dbz=config.floor_dbz,
        )

    def window(self, select: Tensor, origin: tuple[int, int], shape: tuple[int, int]) -> RadarOperator:
        """The operator of observations ``select`` on a window of this operator's periodic grid (a domain tile).

        The window ``shape = (wy, wx)`` has global cell ``origin`` at ``(0, 0)``; its states are
        ``(*batch, 4 * wy * wx)``. A radial velocity reads the cells west and south of its own, so
        those must lie in the window too (or the window spans that axis).

        Args:
            select: ascending indices of the kept observations, ``(n,)`` int64.

        Returns:
            The operator whose ``i``-th observation is observation ``select[i]`` of this one.
        """
        wy, wx = shape
        cell = self.cell[select]
        ly, lx = (cell // self.nx - origin[0]) % self.ny, (cell % self.nx - origin[1]) % self.nx
        if bool(((ly >= wy) | (lx >= wx)).any()):
            raise ValueError(f"observations outside the {wy}x{wx} window at {origin}")
        fields = {name: getattr(self, name)[select] for name in ("locations", "error_std", "kind", "ex", "ey")}
        return replace(self, n_state=4 * wy * wx, ny=wy, nx=wx, cell=ly * wx + lx, **fields)

    def __call__(self, x: Tensor) -> Tensor:
        """``(*batch, 4 * ny * nx)`` -> ``(*batch, n_obs)``: dBZ (clipped below at the clear-air value), Vr."""
        n = self.ny * self.nx
        dev = x.device
        cell = self.cell.to(dev)
        nd = self.n_dbz
        c_d, c_v = cell[:nd], cell[nd:]
        rain = x[..., 3 * n + c_d]
        dbz = reflectivity_dbz(rain, rain_to_rhoqr=self.rain_to_rhoqr, floor_dbz=self.floor_dbz)
        dbz = dbz.clamp(min=self.clear_air_value)
        j, i = c_v // self.nx, c_v % self.nx
        west = j * self.nx + (i - 1) % self.nx
        south = ((j - 1) % self.ny) * self.nx + i
        uc = 0.5 * (x[..., c_v] + x[..., west])
        vc = 0.5 * (x[..., n + c_v] + x[..., n + south])
        vr = uc * self.ex[nd:].to(dtype=x.dtype, device=dev) + vc * self.ey[nd:].to(dtype=x.dtype, device=dev)
        return torch.cat([dbz, vr], dim=-1)


def _bilinear(field: Tensor, y: Tensor, x: Tensor, dx: float) -> Tensor:
    """Sample ``field`` (``(ny, nx)``, cell centres at ``(j dx, i dx)``) at points ``(y, x)`` m, periodic."""
    ny, nx = field.shape
    fy, fx = y / dx, x / dx
    j0, i0 = torch.floor(fy), torch.floor(fx)
    wy, wx = (fy - j0).to(field.dtype), (fx - i0).to(field.dtype)
    j0, i0 = j0.long() % ny, i0.long() % nx
    j1, i1 = (j0 + 1) % ny, (i0 + 1) % nx
    return (
        field[j0, i0] * (1 - wy) * (1 - wx)
        + field[j0, i1] * (1 - wy) * wx
        + field[j1, i0] * wy * (1 - wx)
        + field[j1, i1] * wy * wx
    )


def observe_radar(
    truth: Tensor, model_config: WurschCraigConfig, config: RadarConfig, generator: torch.Generator
) -> tuple[Tensor, RadarOperator]:
    """Simulate one radar volume from the truth and build its operator.

    Raw gates every ``gate_spacing`` in range and ``azimuth_step`` in azimuth
    sample the truth bilinearly (rain -> dBZ; cell-centred winds -> radial
    velocity along the gate's ray), get errors ``N(0, error_dbz^2)`` and
    ``N(0, error_vr^2)``, and are averaged over the gates falling in each cell
    of `radar_mask`. Superobs under ``clear_air_dbz`` become ``clear_air_value``;
    with ``vr_requires_echo`` radial velocities are kept only where the
    superobbed echo is at least ``clear_air_dbz``. The assigned error stds
    stay ``error_dbz`` / ``error_vr`` (as SCALE-LETKF), although averaging
    ``n`` gates leaves a smaller random error (``error / sqrt(n)``).

    Args:
        truth: true state, shape ``(4, ny, nx)`` (u, v, h, r).
        model_config: grid of the truth.
        config: radar settings; ``config.outage`` gives zero observations.
        generator: explicit random source (CPU).

    Returns:
        ``(y, operator)``: observations ``(n_obs,)`` (dBZ then m/s) in the dtype and on the device
        of ``truth``, and the matching `RadarOperator`.
    """
    mc = model_config
    ny, nx, d = mc.ny, mc.nx, mc.dx
    if tuple(truth.shape) != (4, ny, nx):
        raise ValueError(f"truth must have shape (4, {ny}, {nx}), got {tuple(truth.shape)}")
    if config.outage:
        return truth.new_zeros(0), RadarOperator.empty(mc, config)
    sy, sx = _site(mc, config)
    t = truth.detach().to(device="cpu", dtype=torch.float64)
    u, v, r = t[0], t[1], t[3]
    uc = 0.5 * (u + torch.roll(u, 1, dims=-1))
    vc = 0.5 * (v + torch.roll(v, 1, dims=-2))

    # raw polar gates
    rng = (torch.arange(int(config.max_range / config.gate_spacing), dtype=torch.float64) + 0.5) * config.gate_spacing
    az = (torch.arange(int(round(360.0 / config.azimuth_step)), dtype=torch.float64) + 0.5) * config.azimuth_step
    azr = torch.deg2rad(az)
    ey, ex = torch.cos(azr)[:, None], torch.sin(azr)[:, None]
    gy, gx = (sy + rng[None, :] * ey).reshape(-1), (sx + rng[None, :] * ex).reshape(-1)
    ey, ex = ey.expand(-1, rng.numel()).reshape(-1), ex.expand(-1, rng.numel()).reshape(-1)
    inside = (gy >= -0.5 * d) & (gy < (ny - 0.5) * d) & (gx >= -0.5 * d) & (gx < (nx - 0.5) * d)
    gy, gx, ey, ex = gy[inside], gx[inside], ey[inside], ex[inside]
    gcell = torch.round(gy / d).long() * nx + torch.round(gx / d).long()
    mask = radar_mask(mc, config).reshape(-1)
    keep = mask[gcell]
    gy, gx, ey, ex, gcell = gy[keep], gx[keep], ey[keep], ex[keep], gcell[keep]

    g_dbz = reflectivity_dbz(_bilinear(r, gy, gx, d), rain_to_rhoqr=config.rain_to_rhoqr, floor_dbz=config.floor_dbz)
    g_vr = _bilinear(uc, gy, gx, d) * ex + _bilinear(vc, gy, gx, d) * ey
    g_dbz = g_dbz + config.error_dbz * torch.randn(g_dbz.shape, generator=generator, dtype=torch.float64)
    g_vr = g_vr + config.error_vr * torch.randn(g_vr.shape, generator=generator, dtype=torch.float64)

    # superob: mean over the gates of each cell
    count = torch.zeros(ny * nx, dtype=torch.float64).index_add_(0, gcell, torch.ones_like(g_dbz))
    s_dbz = torch.zeros(ny * nx, dtype=torch.float64).index_add_(0, gcell, g_dbz)
    s_vr = torch.zeros(ny * nx, dtype=torch.float64).index_add_(0, gcell, g_vr)
    cells = torch.nonzero(count > 0).reshape(-1)
    dbz = s_dbz[cells] / count[cells]
    dbz = torch.where(dbz < config.clear_air_dbz, torch.full_like(dbz, config.clear_air_value), dbz)
    vr = s_vr[cells] / count[cells]
    vr_cells = cells[dbz >= config.clear_air_dbz] if config.vr_requires_echo else cells
    vr = vr[dbz >= config.clear_air_dbz] if config.vr_requires_echo else vr

    op = radar_operator(cells, vr_cells, mc, config)
    y = torch.cat([dbz, vr]).to(dtype=truth.dtype, device=truth.device)
    return y, op


def radar_operator(
    cells: Tensor, vr_cells: Tensor, model_config: WurschCraigConfig, config: RadarConfig
) -> RadarOperator:
    """The operator of superobs in given grid cells: reflectivities in ``cells``, radial velocities in ``vr_cells``.

    Args:
        cells: ``(n_dbz,)`` int64 flat cell indices ``j * nx + i`` of the reflectivity superobs, ascending.
        vr_cells: ``(n_vr,)`` int64 flat cell indices of the radial-velocity superobs, ascending.
        model_config: the grid.
        config: the radar (site, error stds, reflectivity settings).

    Returns:
        The `RadarOperator` whose observations are ordered reflectivities then radial velocities.
    """
    mc = model_config
    nx, d = mc.nx, mc.dx
    sy, sx = _site(mc, config)
    cells, vr_cells = cells.to(torch.int64).cpu(), vr_cells.to(torch.int64).cpu()
    cy, cx = (vr_cells // nx).to(torch.float64) * d - sy, (vr_cells % nx).to(torch.float64) * d - sx
    dist = torch.sqrt(cy * cy + cx * cx).clamp(min=1e-9)
    all_cells = torch.cat([cells, vr_cells])
    kind = torch.cat([torch.full_like(cells, DBZ), torch.full_like(vr_cells, VR)])
    zeros = torch.zeros(cells.numel(), dtype=torch.float64)
    return RadarOperator(
        n_state=4 * mc.ny * nx,
        ny=mc.ny,
        nx=nx,
        locations=torch.stack([(all_cells // nx).to(torch.float64), (all_cells % nx).to(torch.float64)], -1)
        * (d / 1000.0),
        error_std=torch.cat(
            [torch.full((cells.numel(),), config.error_dbz), torch.full((vr_cells.numel(),), config.error_vr)]
        ).to(torch.float64),
        kind=kind,
        cell=all_cells,
        ex=torch.cat([zeros, cx / dist]),
        ey=torch.cat([zeros, cy / dist]),
        clear_air_value=config.clear_air_value,
        rain_to_rhoqr=config.rain_to_rhoqr,
        floor_dbz=config.floor_dbz,
    )


__all__ = [
    "DBZ",
    "VR",
    "RadarConfig",
    "RadarOperator",
    "observe_radar",
    "radar_operator",
    "radar_mask",
    "radial_velocity",
    "reflectivity_dbz",
]
