"""What a Dask worker does with the ensemble tile it owns: forecast with a halo, H(x), its LETKF, checkpoints.

Every function here runs on the worker that holds the tile (the client only
submits them, `dacast.workflow.bda.tiled` wires them per cycle). Shapes:
a tile is ``(k, 4, ty, tx)``; a *forecast* tile keeps one more row south and
column west, ``(k, 4, ty + ry, tx + rx)`` (``ry, rx`` = `TileLayout.ring`),
because the radial velocities of its first row and column read them.
Observations are owned by the tile whose cells they sit in; whitened rows
``(m, k)`` of them travel to the workers whose tiles' localization reaches
them, once per worker, as do the halo cells (`crop`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path

import torch
from dask.sizeof import sizeof
from torch import Tensor

from dacast.da.analysis import whiten
from dacast.da.gridded import GriddedLETKFConfig, analyse_tile
from dacast.da.tiles import Piece, TileLayout, localise, tile_table
from dacast.models.wursch_craig import WurschCraig, WurschCraigConfig
from dacast.obs.radar import RadarOperator
from dacast.workflow.runtime import tune_malloc

#: Members of a tile's window forecast at a time (~20 MB of window at 256^2 / 4 tiles, float32).
WINDOW_MEMBERS = 64


@dataclass(frozen=True)
class TileSpec:
    """The settings every tile task reads (small; sent with each task).

    Attributes:
        layout: the tiles.
        model: the Würsch-Craig model of the ensemble.
        letkf: the gridded LETKF.
        dx_km: grid spacing (km).
        seed: the ensemble's triggering-noise seed.
        steps_per_cycle: model steps between analyses.
    """

    layout: TileLayout
    model: WurschCraigConfig
    letkf: GriddedLETKFConfig
    dx_km: float
    seed: int
    steps_per_cycle: int

    def ring(self) -> tuple[int, int]:
        """Rows south and columns west a forecast tile keeps: ``(ry, rx)``."""
        return self.layout.ring(0), self.layout.ring(1)


@dataclass(frozen=True)
class OwnObs:
    """The whitened observations of one tile's own cells.

    Attributes:
        ids: global observation indices, ascending, ``(p,)`` int64.
        ya_t: whitened anomalies ``(H(x) - mean) / sigma``, ``(p, k)``.
        d: whitened innovations ``(p,)``.
        innovation: ``y - mean(H(x))`` in observation units, ``(p,)``.
    """

    ids: Tensor
    ya_t: Tensor
    d: Tensor
    innovation: Tensor


@dataclass(frozen=True)
class Table:
    """A tile's neighbour table: observations used (global, ascending) and weights indexing them."""

    used: Tensor
    local: Tensor
    sqrt_w: Tensor


@sizeof.register(Tensor)
def _tensor_bytes(x: Tensor) -> int:
    """Dask's size of a tensor (its default reads ~80 bytes; transfer metrics and memory limits need the real one)."""
    return int(x.element_size() * x.nelement())


@sizeof.register(OwnObs)
@sizeof.register(Table)
def _tensors_bytes(x: OwnObs | Table) -> int:
    return sum(_tensor_bytes(getattr(x, f.name)) for f in fields(x))


def crop(x: Tensor, spec: TileSpec, source: int, group: list[int]) -> Tensor:
    """What tile ``source`` sends the worker that holds tiles ``group``: every cell their windows read, once.

    Args:
        x: tile ``source``'s own cells ``(k, 4, ty, tx)``.

    Returns:
        ``(k, values)``: the cells of `TileLayout.halo_mask` in row-major ``(var, y, x)`` order.
    """
    return x[:, spec.layout.halo_mask(source, group, 4)]


def senders(pieces: list[Piece], t: int) -> list[int]:
    """The tiles other than ``t`` that own a piece of ``t``'s window, ascending (one `crop` each)."""
    return sorted({p.source for p in pieces} - {t})


def _routes(
    spec: TileSpec, pieces: list[Piece], t: int, group: list[int], window: tuple[int, int]
) -> list[tuple[Tensor, Tensor]]:
    """For each of `senders`: ``(taken, placed)``, positions in what it sent and flat window positions.

    One gather and one scatter per sender then fill its part of a window ``(k, 4 * wy * wx)``,
    however many pieces it is made of.
    """
    wy, wx = window
    flat = torch.arange(4 * wy * wx).view(4, wy, wx)
    routes = []
    for s in senders(pieces, t):
        mask = spec.layout.halo_mask(s, group, 4)
        rank = torch.full(mask.shape, -1, dtype=torch.int64)  # position of each cell in what s sent
        rank[mask] = torch.arange(int(mask.sum()))
        taken = [rank[p.var, p.src[0], p.src[1]].reshape(-1) for p in pieces if p.source == s]
        placed = [flat[p.var, p.dst[0], p.dst[1]].reshape(-1) for p in pieces if p.source == s]
        routes.append((torch.cat(taken), torch.cat(placed)))
    return routes


def tile_of(x: Tensor, spec: TileSpec, ring: bool) -> Tensor:
    """The tile's own cells ``(k, 4, ty, tx)`` of a tile (``ring=False``) or a forecast tile (``ring=True``)."""
    if not ring:
        return x
    ry, rx = spec.ring()
    return x[:, :, ry:, rx:]


def forecast_tile(
    spec: TileSpec,
    t: int,
    cycle: int,
    pieces: list[Piece],
    group: list[int],
    parts: list[Tensor],
    own: Tensor,
    ring: bool,
) -> Tensor:
    """One cycle's forecast of tile ``t`` from its window: its own cells and the halo ``parts``.

    The window is assembled and run `WINDOW_MEMBERS` members at a time (each with its own noise), so
    a worker holds one tile, its forecast and a few small windows, never a second copy of the tile.
    Window cells in no piece (outside a variable's own halo) hold the model's state at rest; the
    cells kept do not depend on them.

    Args:
        pieces: the window's pieces (`TileLayout.pieces`).
        group: the tiles on this worker (each sender's `crop` served all of them).
        parts: what each of `senders` sent (`crop`), ``(k, values)``.
        own: tile ``t`` (``ring``: a forecast tile).

    Returns:
        The forecast tile ``(k, 4, ty + ry, tx + rx)``: its own cells equal the same cells of the
        whole-grid forecast, and so do the ring cells the radial velocities read (with a per-variable
        halo the other ring cells are not kept up to date).
    """
    tune_malloc()
    layout = spec.layout
    origin, (wy, wx) = layout.window(t)
    (y0, y1), (x0, x1) = layout.box(t)
    (ly, _), (lx, _) = layout.pads(0), layout.pads(1)
    ry, rx = spec.ring()
    mine = tile_of(own, spec, ring)
    k = mine.shape[0]
    out = torch.empty((k, 4, y1 - y0 + ry, x1 - x0 + rx), dtype=mine.dtype, device=mine.device)
    model = WurschCraig(spec.model)
    seconds = spec.steps_per_cycle * spec.model.dt
    routes = [(a.to(mine.device), b.to(mine.device)) for a, b in _routes(spec, pieces, t, group, (wy, wx))]
    rest = torch.tensor([0.0, 0.0, spec.model.H0, 0.0], dtype=mine.dtype, device=mine.device).view(1, 4, 1, 1)
    for lo in range(0, k, WINDOW_MEMBERS):
        hi = min(k, lo + WINDOW_MEMBERS)
        window = rest.expand(hi - lo, 4, wy, wx).clone()
        for p in pieces:
            if p.source == t:
                window[:, p.var, p.dst[0], p.dst[1]] = mine[lo:hi, p.var, p.src[0], p.src[1]]
        for part, (taken, placed) in zip(parts, routes, strict=True):
            window.view(hi - lo, -1).index_copy_(1, placed, part[lo:hi].index_select(1, taken))
        fc = model.forecast(
            window, seconds, seed=spec.seed, start_step=cycle * spec.steps_per_cycle, member_offset=lo, origin=origin
        )
        out[lo:hi] = fc[:, :, ly - ry : ly + y1 - y0, lx - rx : lx + x1 - x0]
    return out


def own_obs(spec: TileSpec, t: int, fc: Tensor, y: Tensor, operator: RadarOperator) -> OwnObs:
    """H(x) of the forecast tile ``fc`` for the observations in tile ``t``'s cells, whitened."""
    tune_malloc()
    layout = spec.layout
    ids = torch.nonzero(layout.owner(operator.cell) == t).reshape(-1)
    (y0, _), (x0, _) = layout.box(t)
    ry, rx = spec.ring()
    origin = ((y0 - ry) % layout.shape[0], (x0 - rx) % layout.shape[1])
    sub = operator.window(ids, origin, (fc.shape[2], fc.shape[3]))
    flat = fc.reshape(fc.shape[0], -1)
    ya, d, innovation = whiten(flat, y[ids.to(y.device)], sub, sub(flat))
    return OwnObs(ids=ids, ya_t=ya.T.contiguous(), d=d, innovation=innovation)


def table(spec: TileSpec, t: int, locations: Tensor, dtype: torch.dtype) -> Table:
    """Tile ``t``'s neighbour table from every observation's location ``(n_obs, 2)`` km."""
    index, sqrt_w = tile_table(spec.layout, t, locations, spec.letkf, spec.dx_km, dtype)
    used, local = localise(index, sqrt_w)
    return Table(used=used, local=local, sqrt_w=sqrt_w)


def asked(tabs: list[Table], owners: Tensor, source: int) -> Tensor:
    """The observations (global indices, ascending) that any of ``tabs`` uses and tile ``source`` owns.

    A worker asks once for all its tiles, so a row two of them use crosses the network once.

    Args:
        tabs: the neighbour tables of the tiles on one worker.
        owners: the owning tile of every observation, ``(n_obs,)``.
    """
    wanted = [tab.used[owners[tab.used] == source] for tab in tabs if bool((tab.sqrt_w > 0).any())]
    return torch.unique(torch.cat(wanted)) if wanted else tabs[0].used[:0]


def rows(own: OwnObs, ids: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(ids, ya_t[ids], d[ids])`` of observations ``ids`` (owned by this tile): what a neighbour receives."""
    at = torch.searchsorted(own.ids, ids)
    return ids, own.ya_t[at], own.d[at]


def analyse(spec: TileSpec, fc: Tensor, tab: Table, received: list[tuple[Tensor, Tensor, Tensor]]) -> Tensor:
    """The LETKF analysis of the forecast tile ``fc`` from the rows its table uses: ``(k, 4, ty, tx)``.

    ``received`` holds the rows its worker asked for (`asked`: for all its tiles); the table's are picked.
    """
    tune_malloc()
    prior = tile_of(fc, spec, ring=True)  # a view: analyse_tile reads it by cells, no copy of the tile
    k = prior.shape[0]
    if not bool((tab.sqrt_w > 0).any()):  # no observation reaches the tile: weights all zero, a padding row
        ya_t, d = prior.new_zeros((1, k)), prior.new_zeros(1)
    else:
        ids = torch.cat([r[0] for r in received]) if received else tab.used[:0]
        order = torch.argsort(ids)
        at = torch.searchsorted(ids[order], tab.used)
        if not bool((at < ids.numel()).all()) or not torch.equal(ids[order[at]], tab.used):
            raise RuntimeError("the observation rows received do not match the tile's neighbour table")
        pick = order[at]
        ya_t = torch.cat([r[1] for r in received])[pick]
        d = torch.cat([r[2] for r in received])[pick]
    return analyse_tile(prior, ya_t, d, tab.local, tab.sqrt_w, spec.letkf)


def moments(x: Tensor, spec: TileSpec, ring: bool) -> Tensor:
    """Mean and spread (ddof 1) over members of a tile: ``(2, 4, ty, tx)``, the tile's dtype."""
    tile = tile_of(x, spec, ring)
    return torch.stack([tile.mean(0), tile.std(0)])


def members(x: Tensor, spec: TileSpec, ring: bool, m: int) -> Tensor:
    """The first ``m`` members of a tile, ``(m, 4, ty, tx)``."""
    return tile_of(x, spec, ring)[:m].contiguous()


def save_tile(x: Tensor, spec: TileSpec, ring: bool, path: str) -> str:
    """Write the tile's own cells to ``path`` atomically (temporary file, fsync, rename); returns ``path``."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        torch.save(tile_of(x, spec, ring).contiguous().cpu(), fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, target)
    return str(target)


def load_tile(path: str, shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
    """A tile written by `save_tile` (weights-only load, on the CPU), checked against ``shape`` and ``dtype``."""
    tune_malloc()
    x = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(x, Tensor) or tuple(x.shape) != shape or x.dtype != dtype:
        got = f"{tuple(x.shape)} {x.dtype}" if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"tile file {path} holds {got}, expected {shape} {dtype}")
    return x


def initial_tiles(make: object, tiles: list[int], layout: TileLayout) -> list[Tensor]:
    """Tiles ``tiles`` built on this worker, all by one call ``make([box, ...])`` (no ensemble crosses the network).

    One call per worker: building the initial ensemble spins model runs up on the whole grid, once.
    """
    tune_malloc()
    return [x.contiguous() for x in make([layout.box(t) for t in tiles])]  # type: ignore[operator]


def pick(parts: list[Tensor], i: int) -> Tensor:
    """``parts[i]`` (one tile out of a worker's `initial_tiles`)."""
    return parts[i]


__all__ = [
    "OwnObs",
    "Table",
    "TileSpec",
    "WINDOW_MEMBERS",
    "analyse",
    "asked",
    "crop",
    "forecast_tile",
    "initial_tiles",
    "load_tile",
    "members",
    "moments",
    "own_obs",
    "pick",
    "rows",
    "save_tile",
    "senders",
    "table",
    "tile_of",
]
