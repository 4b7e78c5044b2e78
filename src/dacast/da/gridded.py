"""Gridded LETKF on ``(member, var, y, x)`` states, with weights on a coarse grid (SCALE-LETKF).

Conventions: the grid is periodic with spacing ``dx_km`` in both directions;
grid point ``(i, j)`` (row ``i`` along y, column ``j`` along x) sits at
``(i dx, j dx)`` km, and points are flattened in C order over ``(y, x)``, as
`Grid.cartesian((ny, nx), spacing=dx_km, periodic=True)` lays them out.
Observation locations are ``(y, x)`` in km. A state ``(k, n_var, ny, nx)``
flattened to ``(k, n_var * ny * nx)`` is the ``(var, point)`` layout of
`dacast.da.letkf`, so ``gridded_letkf`` with ``weight_stride=1`` is that LETKF
with SCALE-LETKF's Gaussian localization, one set of weights per grid point
shared by all variables.

Coarse weights (``weight_stride = s > 1``): the ensemble transform is computed
on every s-th point in y and x and interpolated bilinearly (periodically) to
the points between (Yang et al. 2009; SCALE-LETKF). Per coarse point c the
transform is kept in factored form: with ``V_c`` (r × k) the eigenvector
rotation of the whitened local anomalies (r = min(p, k)),

    mean weights w̄_c = V_cᵀ g_c,      W_c = s_c I + V_cᵀ diag(coef_c) V_c,

so the interpolated analysis of a fine point f with prior anomalies X'_f
(k × n_var) and bilinear weights b_c(f) over the four corners of its cell,

    x̄_f + Σ_c b_c(f) (w̄_cᵀ X'_f + W_c X'_f),

costs four rank-r products instead of four dense k × k ones. It equals the
stride-1 analysis exactly at the coarse points. The factor algebra lives in
`dacast.da.gridded_factors`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from dacast.da.analysis import Analysis, check_inputs, relax, whiten
from dacast.da.gridded_factors import TransformFactors, corner_weights, local_factors, pad_rank
from dacast.da.inflation import check_inflation
from dacast.da.letkf import solve_points, tapered_neighbours
from dacast.da.localization import Localization
from dacast.da.threads import cpu_workers, map_tasks
from dacast.da.transform import choose_form
from dacast.geometry import Grid, Neighbours, neighbours
from dacast.obs.operators import ObsOperator


@dataclass(frozen=True, kw_only=True)
class GriddedLETKFConfig:
    """Gridded LETKF settings (SCALE-LETKF defaults).

    Attributes:
        localization: Gaussian localization length L (km), taper ``exp(-r²/2L²)``
            cut to zero at 2·sqrt(10/3)·L ≈ 3.65 L.
        max_obs: at most this many nearest observations per grid point.
        rtpp: relaxation to prior perturbations weight in [0, 1].
        rtps: relaxation to prior spread weight in [0, 1].
        inflation: multiplicative inflation of prior anomalies inside the transform.
        weight_stride: compute the weights on every ``weight_stride``-th point in
            y and x and interpolate them bilinearly (periodic); 1 = every point.
            The grid size must be a multiple of it.
        chunk_mb: memory budget (MB) of one chunk of gathered local anomalies;
            default 16 MB on CPU and 2 GB on CUDA (stride 1), and 8× that for the
            bands of coarse factors (stride > 1).
    """

    localization: float = 2.0
    max_obs: int = 100
    rtpp: float = 0.95
    rtps: float = 0.0
    inflation: float = 1.0
    weight_stride: int = 1
    chunk_mb: float | None = None

    def __post_init__(self) -> None:
        if not self.localization > 0:
            raise ValueError(f"localization length must be positive, got {self.localization}")
        if self.max_obs < 1:
            raise ValueError(f"max_obs must be at least 1, got {self.max_obs}")
        for name in ("rtpp", "rtps"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {value}")
        if not self.inflation > 0:
            raise ValueError(f"inflation must be positive, got {self.inflation}")
        check_inflation(self.inflation)
        if self.weight_stride < 1:
            raise ValueError(f"weight_stride must be at least 1, got {self.weight_stride}")
        if self.chunk_mb is not None and not self.chunk_mb > 0:
            raise ValueError(f"chunk_mb must be positive, got {self.chunk_mb}")

    @property
    def taper(self) -> Localization:
        """The equivalent `Localization` (Gaussian, km, nearest ``max_obs``)."""
        return Localization(length=self.localization, taper="gaussian", max_obs=self.max_obs)


def weight_grid(shape: tuple[int, int], dx_km: float, stride: int = 1) -> Grid:
    """The periodic grid of the points where weights are computed.

    Args:
        shape: ``(ny, nx)`` of the model grid, multiples of ``stride``.
        dx_km: model grid spacing (km).
        stride: weight stride (1: the model grid itself).

    Returns:
        `Grid` of ``(ny/stride) * (nx/stride)`` points, coordinates ``(y, x)`` in km, C order.
    """
    ny, nx = shape
    if ny % stride or nx % stride:
        raise ValueError(f"grid {ny}x{nx} is not a multiple of weight_stride {stride}")
    return Grid.cartesian((ny // stride, nx // stride), spacing=dx_km * stride, periodic=True)


def gridded_neighbours(
    shape: tuple[int, int], dx_km: float, locations: Tensor, config: GriddedLETKFConfig
) -> Neighbours:
    """Neighbour table of the weight points (k-d tree); reuse it while the observation network is fixed.

    Args:
        shape: ``(ny, nx)`` of the model grid.
        dx_km: grid spacing (km).
        locations: observation coordinates ``(n_obs, 2)``, ``(y, x)`` in km.
        config: filter settings (length, ``max_obs``, ``weight_stride``).

    Returns:
        `Neighbours` with ``(ny/stride) * (nx/stride)`` rows in C order.
    """
    grid = weight_grid(shape, dx_km, config.weight_stride)
    loc = config.taper
    return neighbours(grid, locations, loc.cutoff, loc.max_obs)


def _copy_members(dst: Tensor, src: Tensor, step: int = 64) -> None:
    """``dst[...] = src`` for ``(rows, cols, k, ...)`` views, a few members at a time.

    Cell-major copies from / to the ``(k, var, y, x)`` layout read short runs
    of ``s`` numbers; by member blocks the source stays in cache (~4x faster).
    """
    for a in range(0, dst.shape[2], step):
        dst[:, :, a : a + step] = src[:, :, a : a + step]


def analyse_tile(
    prior: Tensor,
    ya_t: Tensor,
    d: Tensor,
    index: Tensor,
    sqrt_w: Tensor,
    config: GriddedLETKFConfig,
) -> Tensor:
    """Analysis of one rectangle of the grid from its own prior columns and nearby observations.

    Args:
        prior: prior ensemble on the rectangle, shape ``(k, n_var, ty, tx)``.
        ya_t: whitened observation anomalies transposed, shape ``(n_obs, k)``.
        d: whitened innovations, shape ``(n_obs,)``.
        index: observation indices of the weight points, shape ``(ty, tx, width)``
            with stride 1, ``(ty/s + 1, tx/s + 1, width)`` with stride s > 1 (the
            coarse points at and around the rectangle: its last row and column are
            the first ones of the next rectangle, wrapped periodically).
        sqrt_w: square roots of the taper weights, same shape as ``index``.
        config: filter settings.

    Returns:
        Analysis ensemble on the rectangle, shape ``(k, n_var, ty, tx)``, RTPP/RTPS applied.
    """
    k, n_var, ty, tx = prior.shape
    s = config.weight_stride
    if s == 1:
        fields = prior.permute(2, 3, 0, 1).reshape(ty * tx, k, n_var)
        xmean = fields.mean(1)
        out = solve_points(
            ya_t,
            d,
            index.reshape(ty * tx, -1),
            sqrt_w.reshape(ty * tx, -1),
            fields - xmean[:, None, :],
            xmean,
            config.inflation,
            chunk_mb=config.chunk_mb,
            informative=(ya_t != 0).any(-1),
        )
        post = out.reshape(ty, tx, k, n_var).permute(2, 3, 0, 1)
        return relax(prior, post, config.rtpp, config.rtps)
    if ty % s or tx % s:
        raise ValueError(f"tile {ty}x{tx} is not a multiple of weight_stride {s}")
    cy, cx = ty // s, tx // s
    if index.shape[:2] != (cy + 1, cx + 1):
        raise ValueError(f"expected a ({cy + 1}, {cx + 1}, width) table of coarse points, got {tuple(index.shape)}")
    width = index.shape[-1]
    m = n_var * s * s
    informative = (ya_t != 0).any(-1)
    # cells (cy, cx, k, var, s, s) as views of the prior and of the result
    cells = prior.reshape(k, n_var, cy, s, cx, s).permute(2, 4, 0, 1, 3, 5)
    analysis = torch.empty((k, n_var, ty, tx), dtype=prior.dtype, device=prior.device)
    out_cells = analysis.view(k, n_var, cy, s, cx, s).permute(2, 4, 0, 1, 3, 5)
    corner_w = corner_weights(s, n_var, prior.device, prior.dtype)  # (4, m)
    r = width if choose_form(k, width) == "gram" else k
    workers = cpu_workers(prior.device)
    budget = 8.0 * (config.chunk_mb or (16.0 if prior.device.type == "cpu" else 2048.0)) / workers
    per_row = prior.element_size() * ((cx + 1) * (width + r) * k * 2 + 3 * cx * k * m)
    band = max(1, min(cy, int(budget * 2**20 // per_row)))

    def factors(rows: slice) -> TransformFactors:
        n_rows = index[rows].shape[0]
        f = local_factors(
            ya_t, d, informative, index[rows].reshape(-1, width), sqrt_w[rows].reshape(-1, width), config.inflation
        )
        rank = f.v.shape[-2]
        return TransformFactors(
            v=f.v.reshape(n_rows, cx + 1, rank, k),
            coef=f.coef.reshape(n_rows, cx + 1, rank),
            g=f.g.reshape(n_rows, cx + 1, rank),
            scale=f.scale,
        )

    def rows_task(r0: int, r1: int) -> None:
        """Cell rows ``r0..r1-1``: coarse rows ``r0..r1`` in bands, each band's upper row kept for the next."""
        prev = factors(slice(r0, r0 + 1))
        for i0 in range(r0, r1, band):
            i1 = min(i0 + band, r1)
            new = factors(slice(i0 + 1, i1 + 1))
            rank = max(prev.v.shape[-2], new.v.shape[-2])
            prev, new = pad_rank(prev, rank), pad_rank(new, rank)
            v = torch.cat([prev.v, new.v])
            coef = torch.cat([prev.coef, new.coef])
            g = torch.cat([prev.g, new.g])
            nb = i1 - i0
            xp = torch.empty((nb, cx, k, m), dtype=prior.dtype, device=prior.device)
            _copy_members(xp.view(nb, cx, k, n_var, s, s), cells[i0:i1])
            xmean = xp.mean(2, keepdim=True)  # (nb, cx, 1, m)
            xp -= xmean
            out = xp * new.scale
            mean = xmean.clone()  # analysis mean: prior mean plus the mean increments
            for i in range(nb) if rank else ():
                # one row of cells: the corners' factors are (cx, r, k) batches read in place
                xi, oi = xp[i], out[i]
                for c, (dy, dx) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
                    vc = v[i + dy, dx : dx + cx]  # (cx, r, k)
                    q = torch.bmm(vc, xi)  # (cx, r, m)
                    mean[i].baddbmm_(g[i + dy, dx : dx + cx, None, :], q * corner_w[c])
                    oi.baddbmm_(vc.transpose(-1, -2), q.mul_(coef[i + dy, dx : dx + cx, :, None] * corner_w[c]))
            out += mean
            post = relax((xp + xmean).movedim(2, 0), out.movedim(2, 0), config.rtpp, config.rtps).movedim(0, 2)
            _copy_members(out_cells[i0:i1], post.view(nb, cx, k, n_var, s, s))
            prev = TransformFactors(v=new.v[-1:], coef=new.coef[-1:], g=new.g[-1:], scale=new.scale)

    # contiguous row ranges (a few per worker, for balance); each recomputes its first coarse row
    n_tasks = min(cy, 1 if workers == 1 else 2 * workers)
    edges = [round(i * cy / n_tasks) for i in range(n_tasks + 1)]
    map_tasks(
        [lambda r0=r0, r1=r1: rows_task(r0, r1) for r0, r1 in zip(edges[:-1], edges[1:], strict=True)], prior.device
    )
    return analysis


def check_gridded_inputs(prior: Tensor, y: Tensor, operator: ObsOperator) -> None:
    if prior.ndim != 4:
        raise ValueError(f"prior must have shape (members, n_var, ny, nx), got {tuple(prior.shape)}")
    check_inputs(prior.reshape(prior.shape[0], -1), y, operator)
    if operator.locations.ndim != 2 or operator.locations.shape[-1] != 2:
        raise ValueError(f"observation locations must have shape (n_obs, 2), got {tuple(operator.locations.shape)}")


def weight_rows(start: int, stop: int, n: int, stride: int) -> Tensor:
    """Weight-point indices along one axis needed by fine points ``start..stop-1`` (periodic, length n)."""
    if stride == 1:
        return torch.arange(start, stop)
    if start % stride or (stop % stride and stop != n):
        raise ValueError(f"tile bounds {start}:{stop} must be multiples of weight_stride {stride}")
    nc = n // stride
    return torch.arange(start // stride, stop // stride + 1) % nc


def prepare(
    prior: Tensor,
    y: Tensor,
    operator: ObsOperator,
    config: GriddedLETKFConfig,
    dx_km: float,
    local: Neighbours | None,
    hx: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """``H(prior)`` once (or the given ``hx``, shape ``(k, n_obs)``) and the tapered neighbour table of the weight grid.

    Returns:
        ``(ya_t (n_obs, k), d (n_obs,), index (wy, wx, width), sqrt_w (wy, wx, width), innovation (n_obs,))``
        with ``(wy, wx) = (ny, nx) / weight_stride`` and ``innovation = y - mean(H(prior))``
        in observation units.
    """
    k, _, ny, nx = prior.shape
    s = config.weight_stride
    if local is None:
        local = gridded_neighbours((ny, nx), dx_km, operator.locations, config)
    if local.index.shape[0] != (ny // s) * (nx // s):
        raise ValueError(f"neighbour table has {local.index.shape[0]} rows, expected {(ny // s) * (nx // s)}")
    y_anom, d, innovation = whiten(prior.reshape(k, -1), y, operator, hx)
    index, sqrt_w = tapered_neighbours(local, config.taper, prior.device, prior.dtype)
    wy, wx = ny // s, nx // s
    return y_anom.T.contiguous(), d, index.reshape(wy, wx, -1), sqrt_w.reshape(wy, wx, -1), innovation


def gridded_letkf(
    prior: Tensor,
    y: Tensor,
    operator: ObsOperator,
    config: GriddedLETKFConfig,
    *,
    dx_km: float,
    local: Neighbours | None = None,
    tile: tuple[slice, slice] | None = None,
    hx: Tensor | None = None,
) -> Analysis:
    """One gridded LETKF analysis; inputs are not modified.

    Args:
        prior: forecast ensemble, shape ``(k, n_var, ny, nx)`` on a periodic grid.
        y: observations, shape ``(n_obs,)``.
        operator: maps ``prior.reshape(k, -1)`` to ``(k, n_obs)``; ``locations``
            shape ``(n_obs, 2)``, ``(y, x)`` in km.
        config: filter settings.
        dx_km: grid spacing (km).
        local: `gridded_neighbours` of this network (searched when omitted).
        tile: optional ``(y slice, x slice)`` of grid points to analyse (steps of 1;
            bounds multiples of ``weight_stride``); the whole grid when omitted.
        hx: ``operator(prior.reshape(k, -1))`` when the caller has it, shape ``(k, n_obs)``.

    Returns:
        `Analysis` whose ``ensemble`` is ``(k, n_var, ny, nx)`` (or the tile's
        ``(k, n_var, ty, tx)``; a copy of the prior when there are no observations)
        and whose ``innovation`` is ``y - mean(H(prior))``, shape ``(n_obs,)``, over all
        observations (also for a tile).
    """
    check_gridded_inputs(prior, y, operator)
    k, _, ny, nx = prior.shape
    ys, xs = tile if tile is not None else (slice(0, ny), slice(0, nx))
    y0, y1, _ = ys.indices(ny)
    x0, x1, _ = xs.indices(nx)
    if y1 <= y0 or x1 <= x0:
        raise ValueError(f"empty tile {tile}")
    part = prior[:, :, y0:y1, x0:x1]
    if y.shape[0] == 0:
        return Analysis.of(part.clone(), prior.new_zeros(0))
    ya_t, d, index, sqrt_w, innovation = prepare(prior, y, operator, config, dx_km, local, hx)
    rows = weight_rows(y0, y1, ny, config.weight_stride).to(index.device)
    cols = weight_rows(x0, x1, nx, config.weight_stride).to(index.device)
    return Analysis.of(analyse_tile(part, ya_t, d, index[rows][:, cols], sqrt_w[rows][:, cols], config), innovation)


__all__ = [
    "GriddedLETKFConfig",
    "analyse_tile",
    "gridded_letkf",
    "gridded_neighbours",
    "prepare",
    "weight_grid",
    "weight_rows",
]
