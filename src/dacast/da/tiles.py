"""Domain tiles of a periodic grid: who owns which cells, which halo each tile needs, and each tile's LETKF table.

A `TileLayout` splits a periodic ``(ny, nx)`` grid into ``parts[0] x parts[1]``
rectangles (bounds multiples of the LETKF's weight stride). A tile that keeps
its members' states for its own cells needs, to forecast one cycle, a halo of
``halo`` cells around them (``STENCIL_RADIUS`` cells per model step) plus one
more cell to the west and south (a radial velocity reads the ``u`` west and the
``v`` south of its cell): its *window*. `TileLayout.pieces` says which rectangle
of which tile fills each part of a window, wrapping periodically, for any tile
count. Along an axis with a single tile the window is the whole axis and
needs no halo.

For the analysis a tile needs the observations that the neighbour table of its
own weight points names (`tile_table`, the same k-d tree search as
`gridded_neighbours`, for those points only), and `localise` turns their global
indices into the tile's own rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from dacast.da.gridded import GriddedLETKFConfig, weight_rows
from dacast.da.gridded_dask import localise, tile_bounds
from dacast.da.letkf import tapered_neighbours
from dacast.geometry import Grid, neighbours


@dataclass(frozen=True)
class Piece:
    """One rectangle copied into a window: ``window[..., dst] = tile(source)[..., src]`` (tile-local slices)."""

    source: int
    src: tuple[slice, slice]
    dst: tuple[slice, slice]


def _runs(positions: Tensor, bounds: list[tuple[int, int]]) -> list[tuple[int, slice, slice]]:
    """Split global indices ``positions`` (one axis of a window) into runs within one tile band.

    Returns ``(band, slice in the band, slice in the window)`` for each run of consecutive cells.
    """
    starts = torch.tensor([a for a, _ in bounds])
    band = torch.searchsorted(starts, positions, right=True) - 1
    local = positions - starts[band]
    out: list[tuple[int, slice, slice]] = []
    p0 = 0
    for p in range(1, positions.numel() + 1):
        if p == positions.numel() or band[p] != band[p0] or local[p] != local[p - 1] + 1:
            b, a = int(band[p0]), int(local[p0])
            out.append((b, slice(a, a + p - p0), slice(p0, p)))
            p0 = p
    return out


@dataclass(frozen=True)
class TileLayout:
    """``parts[0] x parts[1]`` tiles of a periodic ``shape = (ny, nx)`` grid, numbered row by row.

    Attributes:
        shape: grid points ``(ny, nx)``.
        parts: tiles along y and x.
        stride: the LETKF's weight stride; tile bounds are multiples of it.
        halo: cells a forecast of one cycle reaches (``STENCIL_RADIUS`` x steps per cycle).
    """

    shape: tuple[int, int]
    parts: tuple[int, int]
    stride: int = 1
    halo: int = 6

    def __post_init__(self) -> None:
        if self.halo < 0:
            raise ValueError(f"halo must be >= 0, got {self.halo}")
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

    def pads(self, axis: int) -> tuple[int, int]:
        """Window cells before and after the tile along ``axis``: ``(halo + 1, halo)``, or ``(0, 0)`` for one tile."""
        return (0, 0) if self.parts[axis] == 1 else (self.halo + 1, self.halo)

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
        """The rectangles of other tiles (and of ``t`` itself) that make up tile ``t``'s window."""
        (oy, ox), (wy, wx) = self.window(t)
        ys = _runs((torch.arange(wy) + oy) % self.shape[0], self.bounds(0))
        xs = _runs((torch.arange(wx) + ox) % self.shape[1], self.bounds(1))
        return [Piece(by * self.parts[1] + bx, (sy, sx), (dy, dx)) for by, sy, dy in ys for bx, sx, dx in xs]

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


__all__ = ["Piece", "TileLayout", "localise", "tile_table"]
