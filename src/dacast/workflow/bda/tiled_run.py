"""The BDA twin with its ensemble kept as spatial tiles on Dask workers (``dacast bda run --tiles 2x2``).

The same cycle engine, radar stream, records and forecasts as `run_cycles`;
only the ensemble is a `TiledEnsemble`: built on the workers (each runs the
spin-up and keeps its tile), forecast with halo exchange, analysed per tile.
The client keeps the truth and runs it, the free run (its first members are
gathered once) and the 30-minute forecasts (they gather their
``forecast_members`` members) in its own process, with the small per-cycle
results. The numbers equal the one-process run (the
forecast bitwise, the analysis to float rounding).

Checkpoints: each worker writes its tiles to ``tiles/cycle-NNNNNN/`` and then
the client writes ``checkpoint-tiled.pt`` (truth, free run, records and the
tile folder) atomically, so the checkpoint always names a complete set of
tiles; older tile folders are removed after it. ``--resume`` reads the tiles
back on the workers, with the same tile layout.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from torch import Tensor

from dacast.da.analysis import Analysis
from dacast.da.tiles import RADAR_RING, TileLayout, halo_reach
from dacast.models.wursch_craig import STEP_READS, WurschCraig
from dacast.workflow import files
from dacast.workflow.bda.checkpoint import TILED_CHECKPOINT, require_same_settings
from dacast.workflow.bda.config import BDAConfig, bda_config_to_dict
from dacast.workflow.bda.forecast import CycleState, Forecaster, Seeds, initial_state, initial_truth, torch_dtype
from dacast.workflow.bda.run import RadarTwin, record_cycles
from dacast.workflow.bda.tile_tasks import TileSpec
from dacast.workflow.bda.tiled import TiledEnsemble, TileFailed, TileLost
from dacast.workflow.cycle import Observation, cycle
from dacast.workflow.runtime import Say, quiet
from dacast.workflow.schema import ConfigError

#: Written into every tiled checkpoint, so that another program's file is refused by name.
FORMAT = "dacast.bda.tiled-checkpoint/1"


def parse_tiles(text: str) -> tuple[int, int]:
    """``"2x2"`` -> ``(2, 2)`` (tiles along y and x); `ConfigError` for anything else."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() and int(p) >= 1 for p in parts):
        raise ConfigError(f"--tiles must look like 2x2 (tiles along y and x, each >= 1), got {text!r}")
    return int(parts[0]), int(parts[1])


def tile_spec(config: BDAConfig, tiles: tuple[int, int]) -> TileSpec:
    """The tiles of ``config``'s grid (halo: what a cycle's model steps read of each variable, `halo_reach`)."""
    try:
        layout = TileLayout(
            (config.grid, config.grid),
            tiles,
            config.letkf.weight_stride,
            halo_reach(STEP_READS, config.steps_per_cycle, RADAR_RING),
        )
    except ValueError as err:
        raise ConfigError(f"--tiles {tiles[0]}x{tiles[1]}: {err}") from None
    return TileSpec(
        layout, config.model, config.letkf, config.dx_km, Seeds.of(config.seed).pool, config.steps_per_cycle
    )


def initial_ensemble(config: BDAConfig, boxes: list[tuple[tuple[int, int], tuple[int, int]]]) -> list[Tensor]:
    """Tiles ``boxes = [((y0, y1), (x0, x1)), ...]`` of the run's initial ensemble, each ``(members, 4, ty, tx)``.

    Each worker spins the pool runs up on the whole grid itself (their triggering needs it), once for all
    its tiles, and keeps only those.
    """
    model = WurschCraig(config.model)
    full = initial_state(config, model, Forecaster(model), torch.device("cpu")).ensemble
    return [full[:, :, y0:y1, x0:x1].clone() for (y0, y1), (x0, x1) in boxes]


@dataclass(frozen=True)
class TiledAnalyser:
    """The gridded LETKF of a `TiledEnsemble`, tile by tile on the workers (an analyser of the cycle engine)."""

    def __call__(self, prior: TiledEnsemble, obs: Observation, hx: Tensor | None, cycle: int) -> Analysis:  # type: ignore[override]
        """The analysis; its ``ensemble`` is a `TiledEnsemble`, its innovation ``(n_obs,)`` a tensor."""
        if obs.operator.n_obs == 0:
            return Analysis.of(prior, obs.y.new_zeros(0))  # type: ignore[arg-type]
        posterior, innovation = prior.analyse(obs.y, obs.operator, cycle)  # type: ignore[arg-type]
        return Analysis.of(posterior, innovation)  # type: ignore[arg-type]


def run_tiled_cycles(
    config: BDAConfig,
    client: object,
    tiles: tuple[int, int],
    *,
    state: CycleState | None = None,
    on_cycle: Callable[[CycleState], None] | None = None,
    say: Say = quiet,
) -> CycleState:
    """Cycle from ``state`` (its ``ensemble`` a `TiledEnsemble`) or from the spun-up start to ``config.cycles``.

    Raises:
        ConfigError: a worker holding tiles was lost, or a tile task failed (the message names the
            tile and says to resume).
    """
    if config.device == "cuda":
        raise ConfigError("--tiles runs the ensemble on the Dask workers' CPUs: use --device cpu or auto")
    model = WurschCraig(config.model)
    seeds = Seeds.of(config.seed)
    spec = tile_spec(config, tiles)
    try:
        if state is None:  # built in its own function: no name here keeps the first tiles on the workers
            state = _first_state(config, client, spec, model)
        radar = RadarTwin(config, model, seeds, state, say)
        steps = cycle(
            state.ensemble,
            forecast=lambda ensemble, c: ensemble.forecast(c),  # type: ignore[attr-defined]
            observations=radar,
            analyse=TiledAnalyser(),  # type: ignore[arg-type]
            cycles=range(state.cycle, config.cycles),
        )
        # the free run and the 30-minute forecasts run here: sending their members to the workers
        # every cycle would move more than the tiles' halos do
        record_cycles(config, steps, state, model, Forecaster(model), radar, seeds, on_cycle, say)
    except (TileLost, TileFailed) as err:
        done = 0 if state is None else state.cycle
        raise ConfigError(f"{err}; completed cycles: {done} (--resume continues from the last checkpoint)") from None
    return state


def _first_state(config: BDAConfig, client: object, spec: TileSpec, model: WurschCraig) -> CycleState:
    """Cycle 0: the initial tiles built on the workers, the free-run members and the truth on the client."""
    ensemble = TiledEnsemble.build(client, spec, partial(initial_ensemble, config), config.members)
    free = ensemble[: config.n_free_members].clone()
    truth = initial_truth(config, model, torch.device("cpu"))
    return CycleState(cycle=0, truth=truth, ensemble=ensemble, free=free)  # type: ignore[arg-type]


def save_tiled_checkpoint(state: CycleState, config: BDAConfig, tiles: tuple[int, int], out: Path) -> Path:
    """Tiles first (by their workers), then ``checkpoint-tiled.pt`` naming them; older tile folders go last."""
    folder = Path(out) / "tiles" / f"cycle-{state.cycle:06d}"
    paths = state.ensemble.save(folder)  # type: ignore[attr-defined]
    path = files.save_checkpoint(
        {
            "format": FORMAT,
            "config": bda_config_to_dict(config),
            "tiles": list(tiles),
            "cycle": state.cycle,
            "tile_files": [str(Path(p).relative_to(out)) for p in paths],
            "truth": state.truth.cpu(),
            "free": state.free.cpu(),
            "records": state.records,
            "forecasts": state.forecasts,
            "fields": state.fields,
        },
        Path(out) / TILED_CHECKPOINT,
    )
    for old in (Path(out) / "tiles").glob("cycle-*"):
        if old.name != folder.name:
            shutil.rmtree(old, ignore_errors=True)
    return path


def load_tiled_checkpoint(out: Path, config: BDAConfig, tiles: tuple[int, int], client: object) -> CycleState:
    """The state of ``checkpoint-tiled.pt`` with its tiles read back by their workers.

    Raises:
        ConfigError: missing or foreign file, other settings or another tile layout, missing tile files.
    """
    path = Path(out) / TILED_CHECKPOINT
    data = files.load_checkpoint(path)
    if data.get("format") != FORMAT:
        raise ConfigError(f"cannot resume from {path}: not a checkpoint of a tiled dacast bda run")
    require_same_settings(data, config, path)
    if tuple(data["tiles"]) != tuple(tiles):
        got = "x".join(str(t) for t in data["tiles"])
        raise ConfigError(f"checkpoint {path} holds {got} tiles; resume with --tiles {got}")
    paths = [str(Path(out) / p) for p in data["tile_files"]]
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        raise ConfigError(f"checkpoint {path} names tile files that are missing: {missing[0]}")
    if not 0 <= int(data["cycle"]) <= config.cycles:
        raise ConfigError(
            f"checkpoint {path} is after cycle {data['cycle']}, beyond the {config.cycles} cycles asked for"
        )
    try:
        ensemble = TiledEnsemble.load(client, tile_spec(config, tiles), paths, config.members, torch_dtype(config))
    except (TileLost, TileFailed) as err:
        raise ConfigError(f"cannot resume from {path}: {err}") from None
    return CycleState(
        cycle=int(data["cycle"]),
        truth=data["truth"],
        ensemble=ensemble,  # type: ignore[arg-type]
        free=data["free"],
        records=list(data["records"]),
        forecasts=list(data["forecasts"]),
        fields=list(data["fields"]),
    )


__all__ = [
    "FORMAT",
    "TILED_CHECKPOINT",
    "TiledAnalyser",
    "initial_ensemble",
    "load_tiled_checkpoint",
    "parse_tiles",
    "run_tiled_cycles",
    "save_tiled_checkpoint",
    "tile_spec",
]
