"""The BDA ensemble as spatial tiles that stay on Dask workers: only halos, observations and small results move.

`TiledEnsemble` is a handle: each tile ``(k, 4, ty, tx)`` lives on the worker
that owns it (neighbouring tiles on the same worker where there are fewer
workers than tiles) and is never sent to the client. One cycle is a small
task graph per tile, every task pinned to the tile's worker:

1. *forecast*: the tile's window (its cells plus, per variable, the cells
   around them that one cycle reads, copied from the tiles that own them and
   sent once per worker: the only state that moves) runs one cycle; the cells
   inside equal the whole-grid forecast bitwise;
2. *H(x)*: the tile computes the whitened model equivalents of the
   observations in its own cells;
3. *table*: the tile searches the neighbours of its own weight points
   (every tile gets the observation list, a few MB); its worker asks each
   owner once for the rows its tiles use, and owners send those rows ``(m, k)``;
4. *analysis*: `analyse_tile` on the tile, with RTPP/RTPS.

Mean and spread fields ``(4, ny, nx)``, innovations ``(n_obs,)`` and, for the
extended forecasts, the first members are all that reach the client.
A worker that disappears mid-cycle raises `TileLost` naming its tiles; the
run resumes from the last per-tile checkpoint (`save` / `load`).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from dacast.obs.radar import RadarOperator
from dacast.workflow.bda import tile_tasks as tasks
from dacast.workflow.bda.tile_tasks import TileSpec

#: A tile's global bounds ``((y0, y1), (x0, x1))``.
Box = tuple[tuple[int, int], tuple[int, int]]
#: Seconds between checks that every tile's worker is still there while a cycle runs.
POLL_SECONDS = 0.5


class TileLost(RuntimeError):
    """A worker holding tiles left the cluster; the message names the tiles and the cycle."""


class TileFailed(RuntimeError):
    """A tile task raised; the message names the tile and the error."""


def tile_workers(client: Any, n_tiles: int) -> tuple[str, ...]:
    """Worker address of each tile: consecutive tiles (neighbours along x) share a worker."""
    workers = sorted(client.ncores())
    if not workers:
        raise TileLost("the Dask cluster has no workers")
    return tuple(workers[t * len(workers) // n_tiles] for t in range(n_tiles))


@dataclass(frozen=True)
class TiledEnsemble:
    """An ensemble ``(members, 4, ny, nx)`` held as tiles on Dask workers (see the module docs).

    Attributes:
        client: the ``dask.distributed.Client``.
        spec: the tiles and the model and filter settings the tasks read.
        workers: the worker address of each tile.
        futures: one future per tile: a tile, or a forecast tile (``ring``).
        ring: whether the tiles carry the extra row and column of a forecast.
        members: ensemble size.
        label: what errors call the step that made these tiles (``cycle 12``).
    """

    client: Any
    spec: TileSpec
    workers: tuple[str, ...]
    futures: tuple[Any, ...]
    ring: bool
    members: int
    label: str = "start"
    cache: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    device = torch.device("cpu")  # the cycle engine synchronises on it; tiles live on the workers

    # ------------------------------------------------------------------ construction
    @staticmethod
    def build(client: Any, spec: TileSpec, make: Callable[[list[Box]], list[Tensor]], members: int) -> TiledEnsemble:
        """Tiles built on their workers: ``make([((y0, y1), (x0, x1)), ...])`` gives each ``(members, 4, ty, tx)``.

        One call per worker for all its tiles; ``make`` must be picklable (a module-level function or a
        `functools.partial` of one).
        """
        workers = tile_workers(client, spec.layout.n_tiles)
        futures: list[Any] = [None] * spec.layout.n_tiles
        for w in dict.fromkeys(workers):
            mine = [t for t, u in enumerate(workers) if u == w]
            built = _submit(client, w, tasks.initial_tiles, make, mine, spec.layout, key=f"initial-{mine[0]}")
            for i, t in enumerate(mine):
                futures[t] = _submit(client, w, tasks.pick, built, i, key=f"tile-{t}")
        out = TiledEnsemble(client, spec, workers, tuple(futures), ring=False, members=members)
        out.settle(out.futures, "building the ensemble")
        return out

    @staticmethod
    def scatter(client: Any, spec: TileSpec, ensemble: Tensor) -> TiledEnsemble:
        """Tiles of an ensemble ``(k, 4, ny, nx)`` held by the client, sent once to their workers."""
        workers = tile_workers(client, spec.layout.n_tiles)
        futures = []
        for t, w in enumerate(workers):
            (y0, y1), (x0, x1) = spec.layout.box(t)
            futures.append(client.scatter(ensemble[:, :, y0:y1, x0:x1].contiguous(), workers=[w], direct=True))
        return TiledEnsemble(client, spec, workers, tuple(futures), ring=False, members=ensemble.shape[0])

    @staticmethod
    def load(client: Any, spec: TileSpec, paths: Sequence[str], members: int, dtype: torch.dtype) -> TiledEnsemble:
        """Tiles read by their workers from the files `save` wrote (one per tile)."""
        workers = tile_workers(client, spec.layout.n_tiles)
        futures = []
        for t, w in enumerate(workers):
            (y0, y1), (x0, x1) = spec.layout.box(t)
            shape = (members, 4, y1 - y0, x1 - x0)
            futures.append(_submit(client, w, tasks.load_tile, paths[t], shape, dtype, key=f"load-{t}"))
        out = TiledEnsemble(client, spec, workers, tuple(futures), ring=False, members=members, label="resume")
        out.settle(out.futures, "reading the tile checkpoints")
        return out

    # ------------------------------------------------------------------ one cycle
    def forecast(self, cycle: int) -> TiledEnsemble:
        """The forecast tiles of cycle ``cycle`` (0-based): each window assembled from its pieces, run one cycle.

        Every tile that owns cells of the windows on a worker crops them on its own worker and sends
        them there once, packed in one tensor, for all that worker's tiles; a tile's own cells are read
        in place.
        """
        layout = self.spec.layout
        pieces = [layout.pieces(t) for t in range(layout.n_tiles)]
        groups = self.groups()
        # the halo crops first and at a higher priority: a worker crops what others need before it
        # starts its own (long) forecasts, so that no other worker waits for them
        sent = {
            (w, s): self._on(
                s,
                _crop,
                self.futures[s],
                self.spec,
                self.ring,
                s,
                group,
                key=f"halo-{cycle}-{s}-to-{group[0]}",
                priority=1,
            )
            for w, group in groups.items()
            for s in sorted({s for t in group for s in tasks.senders(pieces[t], t)})
        }
        parts = [[sent[self.workers[t], s] for s in tasks.senders(pieces[t], t)] for t in range(layout.n_tiles)]
        out = [
            self._on(
                t,
                tasks.forecast_tile,
                self.spec,
                t,
                cycle,
                pieces[t],
                groups[self.workers[t]],
                parts[t],
                self.futures[t],
                self.ring,
                key=f"forecast-{cycle}-{t}",
            )
            for t in range(layout.n_tiles)
        ]
        forecast = replace(self, futures=tuple(out), ring=True, label=f"cycle {cycle + 1}")
        forecast.settle(forecast.futures, "the forecast")  # the stage's time is its own; a lost worker shows here
        return forecast

    def analyse(self, y: Tensor, operator: RadarOperator, cycle: int) -> tuple[TiledEnsemble, Tensor]:
        """The LETKF analysis of these forecast tiles and the innovation ``y - mean(H(x))`` ``(n_obs,)``.

        The analysis's ``cache["seconds"]`` holds the wall time of H(x) with the neighbour tables
        (``observation``) and of the LETKF with the row exchange (``analysis``).
        """
        if not self.ring:
            raise ValueError("analyse needs forecast tiles")
        layout, client = self.spec.layout, self.client
        t0 = time.perf_counter()
        # the observations go to every worker (a few MB); each tile picks what it needs
        y_f, op_f, owners_f = client.scatter(
            [y.cpu(), operator, layout.owner(operator.cell)], broadcast=True, hash=False
        )
        dtype = y.dtype
        own = [
            self._on(t, tasks.own_obs, self.spec, t, f, y_f, op_f, key=f"hx-{cycle}-{t}")
            for t, f in enumerate(self.futures)
        ]
        tabs = [self._on(t, _table, self.spec, t, op_f, dtype, key=f"table-{cycle}-{t}") for t in range(layout.n_tiles)]
        self.settle(own + tabs, "H(x) and the neighbour tables")
        t1 = time.perf_counter()
        reach = self.spec.letkf.taper.cutoff / self.spec.dx_km
        # every exchange first and at a higher priority: a worker sends its rows before it starts its
        # own (long) analyses, so that no other worker waits for them
        # (once per worker and owner: the rows any of the worker's tiles use)
        near = [layout.near(t, reach) for t in range(layout.n_tiles)]
        received: list[list[Any]] = [[] for _ in range(layout.n_tiles)]
        for group in self.groups().values():
            for n in sorted({n for t in group for n in near[t]}):
                askers = [t for t in group if n in near[t]]
                key = f"{cycle}-{group[0]}-{n}"
                ids = self._on(
                    group[0], tasks.asked, [tabs[t] for t in askers], owners_f, n, key=f"ask-{key}", priority=1
                )
                sent = self._on(n, tasks.rows, own[n], ids, key=f"rows-{key}", priority=1)
                for t in askers:
                    received[t].append(sent)
        out = [
            self._on(t, tasks.analyse, self.spec, self.futures[t], tabs[t], received[t], key=f"letkf-{cycle}-{t}")
            for t in range(layout.n_tiles)
        ]
        innov = [self._on(t, _innovation, own[t], key=f"innov-{cycle}-{t}") for t in range(layout.n_tiles)]
        parts = self.wait(innov, "the analysis", out)
        innovation = torch.empty(operator.n_obs, dtype=dtype)
        for ids, values in parts:
            innovation[ids] = values.to(dtype)
        posterior = replace(self, futures=tuple(out), ring=False)
        posterior.cache["seconds"] = {"observation": t1 - t0, "analysis": time.perf_counter() - t1}
        return posterior, innovation

    # ------------------------------------------------------------------ small results
    def moments(self) -> tuple[Tensor, Tensor]:
        """Mean and spread (ddof 1) over members, each ``(4, ny, nx)``, reduced on the workers (once)."""
        if "moments" not in self.cache:
            self.cache["moments"] = self._moments()
        return self.cache["moments"]

    def _moments(self) -> tuple[Tensor, Tensor]:
        parts = self.wait(
            [self._on(t, tasks.moments, f, self.spec, self.ring, key=None) for t, f in enumerate(self.futures)],
            "the mean and spread",
        )
        return self._assemble([p[0] for p in parts]), self._assemble([p[1] for p in parts])

    # The few tensor operations the BDA records and forecasts apply to an ensemble, over members only.
    @property
    def shape(self) -> tuple[int, int, int, int]:
        """``(members, 4, ny, nx)``."""
        return (self.members, 4, *self.spec.layout.shape)

    def mean(self, dim: int = 0, keepdim: bool = False) -> Tensor:
        """Mean over members ``(4, ny, nx)`` (``(1, 4, ny, nx)`` with ``keepdim``)."""
        _member_axis(dim)
        mean = self.moments()[0]
        return mean[None] if keepdim else mean

    def std(self, dim: int = 0) -> Tensor:
        """Spread over members (ddof 1) ``(4, ny, nx)``."""
        _member_axis(dim)
        return self.moments()[1]

    def var(self, dim: int = 0) -> Tensor:
        """Variance over members (ddof 1) ``(4, ny, nx)``."""
        return self.std(dim).square()

    def __getitem__(self, index: slice) -> Tensor:
        """``ensemble[:m]``: the first ``m`` members on the client, ``(m, 4, ny, nx)``."""
        if not isinstance(index, slice) or index.start not in (None, 0) or index.step not in (None, 1):
            raise TypeError("a tiled ensemble gives only its first members, as ensemble[:m]")
        return self.first_members(min(self.members, self.members if index.stop is None else index.stop))

    def first_members(self, m: int) -> Tensor:
        """The first ``m`` members, ``(m, 4, ny, nx)``, gathered to the client (extended forecasts)."""
        parts = self.wait(
            [self._on(t, tasks.members, f, self.spec, self.ring, m, key=None) for t, f in enumerate(self.futures)],
            "gathering members",
        )
        return self._assemble(parts)

    def gather(self) -> Tensor:
        """The whole ensemble ``(k, 4, ny, nx)`` on the client (tests and small runs only)."""
        return self.first_members(self.members)

    def save(self, folder: Path) -> list[str]:
        """Each worker writes its tiles to ``folder/tile-<t>.pt`` (atomically); returns the paths."""
        paths = [str(Path(folder) / f"tile-{t:04d}.pt") for t in range(self.spec.layout.n_tiles)]
        futures = [
            self._on(t, tasks.save_tile, f, self.spec, self.ring, paths[t], key=None)
            for t, f in enumerate(self.futures)
        ]
        return self.wait(futures, "writing the tile checkpoints")

    # ------------------------------------------------------------------ plumbing
    def groups(self) -> dict[str, list[int]]:
        """The tiles on each worker, ascending: ``{address: [tile, ...]}``."""
        out: dict[str, list[int]] = {}
        for t, w in enumerate(self.workers):
            out.setdefault(w, []).append(t)
        return out

    def _on(self, t: int, fn: Callable[..., Any], *args: Any, key: str | None, priority: int = 0) -> Any:
        return _submit(self.client, self.workers[t], fn, *args, key=key, priority=priority)

    def _assemble(self, parts: list[Tensor]) -> Tensor:
        ny, nx = self.spec.layout.shape
        out = torch.empty((*parts[0].shape[:-2], ny, nx), dtype=parts[0].dtype)
        for t, part in enumerate(parts):
            (y0, y1), (x0, x1) = self.spec.layout.box(t)
            out[..., y0:y1, x0:x1] = part
        return out

    def wait(self, futures: Sequence[Any], what: str, also: Sequence[Any] = ()) -> list[Any]:
        """Results of ``futures`` on the client (small ones only), after ``also`` finish too (see `settle`)."""
        self.settle([*futures, *also], what)
        return self.client.gather(list(futures))

    def settle(self, futures: Sequence[Any], what: str) -> None:
        """Wait until ``futures`` are done, results left on the workers; `TileLost` / `TileFailed` name the tile.

        Futures are taken as one per tile in tile order, repeated (``i``-th: tile ``i % n_tiles``).
        """
        from distributed import wait

        everything = list(futures)
        while True:
            try:
                wait(everything, timeout=POLL_SECONDS)
                break
            except TimeoutError:
                self._check_workers(what)
            except Exception as err:  # noqa: BLE001 - Dask cancels what depended on a lost worker's data
                self._check_workers(what)
                raise TileFailed(f"{self.label}, {what}: {type(err).__name__}: {err}".splitlines()[0]) from None
        for t, f in enumerate(everything):
            if f.status == "error":
                tile = self.spec.layout.describe(t % self.spec.layout.n_tiles)
                raise TileFailed(f"{self.label}, {what}: {tile} failed: {f.exception()}")
            if f.status != "finished":
                self._check_workers(what)
                raise TileLost(f"{self.label}, {what}: a tile's result was lost ({f.status})")

    def _check_workers(self, what: str) -> None:
        alive = set(self.client.ncores())
        lost = [t for t, w in enumerate(self.workers) if w not in alive]
        if lost:
            tiles = ", ".join(self.spec.layout.describe(t) for t in lost)
            raise TileLost(
                f"{self.label}, {what}: the Dask worker {self.workers[lost[0]]} holding {tiles} left the cluster"
            )


def _member_axis(dim: int) -> None:
    if dim != 0:
        raise ValueError(f"a tiled ensemble reduces over members only (dim 0), got dim {dim}")


def _submit(client: Any, worker: str, fn: Callable[..., Any], *args: Any, key: str | None, priority: int = 0) -> Any:
    kwargs: dict[str, Any] = {"workers": [worker], "allow_other_workers": False, "pure": False, "priority": priority}
    if key is not None:
        kwargs["key"] = f"{key}-{uuid.uuid4().hex[:12]}"
    return client.submit(fn, *args, **kwargs)


def _crop(x: Tensor, spec: TileSpec, ring: bool, source: int, group: list[int]) -> Tensor:
    return tasks.crop(tasks.tile_of(x, spec, ring), spec, source, group)


def _table(spec: TileSpec, t: int, operator: RadarOperator, dtype: torch.dtype) -> tasks.Table:
    return tasks.table(spec, t, operator.locations, dtype)


def _innovation(own: tasks.OwnObs) -> tuple[Tensor, Tensor]:
    return own.ids, own.innovation


__all__ = [
    "POLL_SECONDS",
    "TileFailed",
    "TileLost",
    "TiledEnsemble",
    "tile_workers",
]
