"""Domain tiles of a periodic grid: who owns which cells, which halo each tile needs, and each tile's LETKF table.

A `TileLayout` splits a periodic ``(ny, nx)`` grid into ``parts[0] x parts[1]``
rectangles (bounds multiples of the LETKF's weight stride). A tile that keeps
its members' states for its own cells needs, to forecast one cycle, a halo of
cells around them: its *window*. The halo is either the same for every
variable and side (``halo`` cells), or, from `halo_reach`, per variable and
side: a staggered model reads some variables less far than others, a variable's
cells that nothing reads need not move, and what is kept beyond the tile (the
radar's `RADAR_RING`) is one of the needs the reach is worked out from.
`TileLayout.pieces` says which rectangle of which tile fills each part of a
window (for which variables), wrapping periodically, for any tile count.
Along an axis with a single tile the window is the whole axis and needs no
halo.

For the analysis a tile needs the observations that the neighbour table of its
own weight points names (`tile_table`, the same k-d tree search as
`gridded_neighbours`, for those points only), and `localise` turns their global
indices into the tile's own rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from dacast.da.gridded import GriddedLETKFConfig, weight_rows
from dacast.da.gridded_dask import localise, tile_bounds
from dacast.da.letkf import tapered_neighbours
from dacast.geometry import Grid, neighbours

#: Cells of one variable beyond a tile: ``(south, north, west, east)``.
Reach = tuple[int, int, int, int]
#: What the radar's H(x) reads beyond a forecast tile, per variable ``u, v, h, r``: ``u`` one column
#: west and ``v`` one row south of the tile (`RadarOperator.__call__`).
RADAR_RING: tuple[Reach, ...] = ((0, 0, 1, 0), (1, 0, 0, 0), (0, 0, 0, 0), (0, 0, 0, 0))


@dataclass(frozen=True)
class Piece:
    """One rectangle copied into a window: ``window[:, var, *dst] = tile(source)[:, var, *src]`` (tile-local)."""

    source: int
    src: tuple[slice, slice]
    dst: tuple[slice, slice]
    var: slice = field(default_factory=lambda: slice(None))


def halo_reach(
    reads: tuple[tuple[Reach, ...], ...], steps: int, needs: tuple[Reach, ...] | None = None
) -> tuple[Reach, ...]:
    """Cells of each variable a window must hold beyond its tile for ``steps`` model steps.

    Propagates bounding boxes backwards through the steps: after the last step variable ``b`` is
    needed ``needs[b]`` beyond the tile (default: on the tile only); one step earlier variable ``a``
    is needed wherever a needed ``b`` reads it. Bounding boxes of reads add exactly, so the result
    is the bounding box of the cells the needed outputs depend on.

    Args:
        reads: ``reads[b][a] = (dy0, dy1, dx0, dx1)``, rows/columns relative to a cell of ``b`` that one
            step reads of ``a`` (e.g. `dacast.models.wursch_craig.STEP_READS`).
        steps: model steps per forecast (>= 0).
        needs: ``(south, north, west, east)`` per variable needed after the steps, e.g. `RADAR_RING`.

    Returns:
        ``(south, north, west, east)`` per variable, cells (>= 0).
    """
    n = len(reads)
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    cur = [tuple(r) for r in (needs or ((0, 0, 0, 0),) * n)]
    if len(cur) != n:
        raise ValueError(f"needs has {len(cur)} variables, reads {n}")
    for _ in range(steps):
        cur = [
            (
                max(0, *(c[0] - reads[b][a][0] for b, c in enumerate(cur))),
                max(0, *(c[1] + reads[b][a][1] for b, c in enumerate(cur))),
                max(0, *(c[2] - reads[b][a][2] for b, c in enumerate(cur))),
                max(0, *(c[3] + reads[b][a][3] for b, c in enumerate(cur))),
            )
            for a in range(n)
        ]
    return tuple(cur)  # type: ignore[return-value]


def _runs(positions: Tensor, bounds: list[tuple[int, int]], start: int = 0) -> list[tuple[int, slice, slice]]:
    """Split global indices ``positions`` (one axis of a window, from window cell ``start``) into runs within one band.

    Returns ``(band, slice in the band, slice in the window)`` for each run of consecutive cells.
    """
    starts = torch.tensor([a for a, _ in bounds])
    band = torch.searchsorted(starts, positions, right=True) - 1
    local = positions - starts[band]
    breaks = torch.nonzero((band[1:] != band[:-1]) | (local[1:] != local[:-1] + 1)).reshape(-1) + 1
    edges = [0, *breaks.tolist(), positions.numel()]
    return [
        (int(band[p0]), slice(int(local[p0]), int(local[p0]) + p1 - p0), slice(start + p0, start + p1))
        for p0, p1 in zip(edges[:-1], edges[1:], strict=True)
    ]


@dataclass(frozen=True)
class TileLayout:
    """``parts[0] x parts[1]`` tiles of a periodic ``shape = (ny, nx)`` grid, numbered row by row.

    Attributes:
        shape: grid points ``(ny, nx)``.
        parts: tiles along y and x.
        stride: the LETKF's weight stride; tile bounds are multiples of it.
        halo: cells a window holds beyond its tile: ``n`` for every variable on every side, or
            ``(south, north, west, east)`` per variable (`halo_reach`).
    """

    shape: tuple[int, int]
    parts: tuple[int, int]
    stride: int = 1
    halo: int | tuple[Reach, ...] = 6

    def __post_init__(self) -> None:
        if isinstance(self.halo, int):
            bad = self.halo < 0
        else:
            bad = not self.halo or any(len(r) != 4 or min(r) < 0 for r in self.halo)
        if bad:
            raise ValueError(f"halo must be >= 0 (one number, or four per variable), got {self.halo}")
        for axis in (0, 1):
            n, parts = self.shape[axis], self.parts[axis]
            bounds = tile_bounds(n, parts, self.stride)  # raises for too many tiles
            lo, hi = self.pads(axis)
            widest = max(b - a for a, b in bounds)
            if widest + lo + hi > n:
                raise ValueError(
                    f"{parts} tiles along an axis of {n} points need windows of {widest + lo + hi} > {n} points "
                    f"(halo {self.halo}): use fewer tiles"
                )

    @property
    def n_tiles(self) -> int:
        """Number of tiles."""
        return self.parts[0] * self.parts[1]

    def bounds(self, axis: int) -> list[tuple[int, int]]:
        """Tile bands ``[(start, stop), ...]`` along ``axis`` (0: y, 1: x)."""
        return tile_bounds(self.shape[axis], self.parts[axis], self.stride)

    def box(self, t: int) -> tuple[tuple[int, int], tuple[int, int]]:
        """Global ``((y0, y1), (x0, x1))`` of tile ``t``."""
        if not 0 <= t < self.n_tiles:
            raise ValueError(f"tile {t} out of range 0..{self.n_tiles - 1}")
        return self.bounds(0)[t // self.parts[1]], self.bounds(1)[t % self.parts[1]]

    def describe(self, t: int) -> str:
        """``tile 3 (rows 128:256, cols 0:128)``: how errors name a tile."""
        (y0, y1), (x0, x1) = self.box(t)
        return f"tile {t} (rows {y0}:{y1}, cols {x0}:{x1})"

    def groups(self) -> list[tuple[slice, Reach]]:
        """Consecutive variables with the same halo, and that halo: ``[(variables, (south, north, west, east))]``."""
        if isinstance(self.halo, int):
            return [(slice(None), (self.halo,) * 4)]
        out: list[tuple[slice, Reach]] = []
        for v, reach in enumerate(self.halo):
            if out and out[-1][1] == tuple(reach):
                out[-1] = (slice(out[-1][0].start, v + 1), out[-1][1])
            else:
                out.append((slice(v, v + 1), tuple(reach)))  # type: ignore[arg-type]
        return out

    def pads(self, axis: int) -> tuple[int, int]:
        """Window cells before and after the tile along ``axis`` (the widest halo), or ``(0, 0)`` for one tile."""
        if self.parts[axis] == 1:
            return (0, 0)
        reaches = [r for _, r in self.groups()]
        return max(r[2 * axis] for r in reaches), max(r[2 * axis + 1] for r in reaches)

    def ring(self, axis: int) -> int:
        """The extra cell west/south kept with a forecast for the radial velocities: 1, or 0 for one tile."""
        return 0 if self.parts[axis] == 1 else 1

    def window(self, t: int) -> tuple[tuple[int, int], tuple[int, int]]:
        """``(origin, shape)`` of tile ``t``'s forecast window: global cell of its ``(0, 0)`` and ``(wy, wx)``."""
        origin, shape = [], []
        for axis, (a, b) in enumerate(self.box(t)):
            lo, hi = self.pads(axis)
            origin.append((a - lo) % self.shape[axis])
            shape.append(b - a + lo + hi)
        return (origin[0], origin[1]), (shape[0], shape[1])

    def pieces(self, t: int) -> list[Piece]:
        """The rectangles of other tiles (and of ``t`` itself) that make up tile ``t``'s window, per variable group.

        A variable's window cells outside its own halo are in no piece: the forecast does not read them.
        """
        (oy, ox), (wy, wx) = self.window(t)
        out = []
        for var, reach in self.groups():
            runs = []
            for axis, (o, w) in enumerate(((oy, wy), (ox, wx))):
                lo, hi = self.pads(axis)
                a, b = (0, w) if self.parts[axis] == 1 else (lo - reach[2 * axis], w - hi + reach[2 * axis + 1])
                runs.append(_runs((torch.arange(a, b) + o) % self.shape[axis], self.bounds(axis), a))
            out += [
                Piece(by * self.parts[1] + bx, (sy, sx), (dy, dx), var)
                for by, sy, dy in runs[0]
                for bx, sx, dx in runs[1]
            ]
        return out

    def halo_mask(self, source: int, tiles: list[int], n_var: int) -> Tensor:
        """The cells of tile ``source`` that the windows of ``tiles`` (other than ``source``) read.

        Returns:
            ``(n_var, ty, tx)`` bool over the source tile: what it sends to a worker holding ``tiles``,
            each cell once however many of their windows read it.
        """
        (y0, y1), (x0, x1) = self.box(source)
        mask = torch.zeros((n_var, y1 - y0, x1 - x0), dtype=torch.bool)
        for t in tiles:
            if t != source:
                for p in self.pieces(t):
                    if p.source == source:
                        mask[p.var, p.src[0], p.src[1]] = True
        return mask

    def owner(self, cells: Tensor) -> Tensor:
        """Tile of each flat cell index ``j * nx + i``, ``(n,)`` int64 -> ``(n,)`` int64."""
        ny, nx = self.shape
        starts_y = torch.tensor([a for a, _ in self.bounds(0)])
        starts_x = torch.tensor([a for a, _ in self.bounds(1)])
        by = torch.searchsorted(starts_y, cells.cpu() // nx, right=True) - 1
        bx = torch.searchsorted(starts_x, cells.cpu() % nx, right=True) - 1
        return by * self.parts[1] + bx

    def near(self, t: int, reach: float) -> list[int]:
        """Tiles with a cell within ``reach`` cells (per axis, periodic) of tile ``t``'s weight points, ``t`` first."""
        (y0, y1), (x0, x1) = self.box(t)
        out = [t]
        for u in range(self.n_tiles):
            if u == t:
                continue
            (a0, a1), (b0, b1) = self.box(u)
            if (
                _gap(y0, y1 + self.stride, a0, a1, self.shape[0]) <= reach
                and _gap(x0, x1 + self.stride, b0, b1, self.shape[1]) <= reach
            ):
                out.append(u)
        return out


def _gap(a0: int, a1: int, b0: int, b1: int, n: int) -> int:
    """Cells between the periodic ranges ``[a0, a1)`` and ``[b0, b1)`` on a ring of ``n`` (0 when they meet)."""
    if a1 - a0 >= n or b1 - b0 >= n:
        return 0
    best = n
    for shift in (-n, 0, n):
        lo, hi = b0 + shift, b1 + shift
        best = min(best, max(0, lo - a1 + 1, a0 - hi + 1))
    return best


def tile_table(
    layout: TileLayout, t: int, locations: Tensor, config: GriddedLETKFConfig, dx_km: float, dtype: torch.dtype
) -> tuple[Tensor, Tensor]:
    """The tapered neighbour table of tile ``t``'s weight points (the rows `gridded_letkf` reads for it).

    Args:
        layout: the tiles (``stride`` = ``config.weight_stride``).
        t: the tile.
        locations: every observation's ``(y, x)`` in km, ``(n_obs, 2)``.
        config: localization length and ``max_obs``.
        dx_km: grid spacing (km).
        dtype: dtype of the taper weights.

    Returns:
        ``(index, sqrt_w)``, ``(wr, wc, width)``: global observation indices and square-root taper
        weights of the weight points (``(ty, tx)`` of them with stride 1, the coarse points at and
        around the tile with stride s, see `analyse_tile`).
    """
    (y0, y1), (x0, x1) = layout.box(t)
    ny, nx = layout.shape
    s = config.weight_stride
    spacing = dx_km * s
    rows = weight_rows(y0, y1, ny, s).to(torch.float64) * spacing
    cols = weight_rows(x0, x1, nx, s).to(torch.float64) * spacing
    mesh = torch.meshgrid(rows, cols, indexing="ij")
    grid = Grid(
        coords=torch.stack([m.reshape(-1) for m in mesh], -1), period=((ny // s) * spacing, (nx // s) * spacing)
    )
    taper = config.taper
    index, sqrt_w = tapered_neighbours(
        neighbours(grid, locations, taper.cutoff, taper.max_obs), taper, torch.device("cpu"), dtype
    )
    return index.reshape(rows.numel(), cols.numel(), -1), sqrt_w.reshape(rows.numel(), cols.numel(), -1)


__all__ = ["RADAR_RING", "Piece", "Reach", "TileLayout", "halo_reach", "localise", "tile_table"]
