"""The tiled BDA cycle on a Dask LocalCluster for `bda_cycle.py`: stage times, bytes moved, memory, cost model.

`tiled_cell` builds the ensemble on the workers as tiles (8 spun-up states
repeated, as `bda_cycle.make_states`), runs a warm-up cycle and then timed
cycles of forecast (halo exchange) -> H(x) + neighbour tables -> LETKF (row
exchange), and reads Dask's own transfer log for the bytes the workers
received from each other, and each worker's resident high-water mark (reset
after the ensemble is built). `probe` measures the cluster's worker-to-worker
bandwidth and per-task overhead with payloads unrelated to the cycle.
`predict` is the cost model (docs/scaling.md): it predicts a cycle on W workers
from the one-worker run's per-tile compute, the layout's halo volume and the
measured observation-row volume per tile edge, and the probe.
"""

from __future__ import annotations

import math
import time
from functools import partial

import torch

from dacast.da.gridded import GriddedLETKFConfig
from dacast.da.tiles import RADAR_RING, TileLayout, halo_reach
from dacast.models.wursch_craig import STEP_READS, WurschCraig, WurschCraigConfig
from dacast.obs.radar import RadarConfig, observe_radar
from dacast.workflow.bda.tile_tasks import TileSpec, senders
from dacast.workflow.bda.tiled import TiledEnsemble
from dacast.workflow.bda.tiled_metrics import peak_memory_mb, transfer_bytes

SPINUP_S = 20 * 60.0
STEPS = 3  # model steps per 30-s cycle


def make_tile(boxes: list, members: int, grid: int, dtype: torch.dtype) -> list[torch.Tensor]:
    """Tiles ``boxes`` of ``members`` states repeated from 8 spun-up runs (built on the worker)."""
    model = WurschCraig(WurschCraigConfig(ny=grid, nx=grid))
    pool = model.forecast(model.initial_state(min(members, 8), seed=2, dtype=dtype), SPINUP_S, seed=2, start_step=0)
    reps = -(-members // pool.shape[0])
    return [pool[:, :, y0:y1, x0:x1].repeat(reps, 1, 1, 1)[:members].contiguous() for (y0, y1), (x0, x1) in boxes]


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as fh:  # "5": reset the resident high-water mark (Linux)
        fh.write("5")


def layout_for(grid: int, tiles: tuple[int, int], stride: int) -> TileLayout:
    return TileLayout((grid, grid), tiles, stride, halo_reach(STEP_READS, STEPS, RADAR_RING))


def tiled_cell(
    members: int, grid: int, workers: int, tiles: tuple[int, int], stride: int, dtype: torch.dtype, cycles: int = 2
) -> dict:
    """Time ``cycles`` tiled cycles after a warm-up one; seconds per stage (mean), bytes, peak memory per worker."""
    from dask.distributed import Client, LocalCluster

    config = GriddedLETKFConfig(weight_stride=stride)
    mc = WurschCraigConfig(ny=grid, nx=grid)
    spec = TileSpec(layout_for(grid, tiles, stride), mc, config, 0.5, 2, STEPS)
    model = WurschCraig(mc)
    truth = model.forecast(model.initial_state(1, seed=1, dtype=dtype), SPINUP_S, seed=1, start_step=0)
    truth = model.forecast(truth, 30.0, seed=1, start_step=0)  # the truth and volume of bda_cycle.run_cell
    y, op = observe_radar(truth[0], mc, RadarConfig(), torch.Generator().manual_seed(1))
    y = y.to(dtype)
    with (
        LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        import bda_tiled
        import cloudpickle

        cloudpickle.register_pickle_by_value(bda_tiled)  # the workers cannot import this script's folder
        t0 = time.perf_counter()
        ens = TiledEnsemble.build(client, spec, partial(make_tile, members=members, grid=grid, dtype=dtype), members)
        build_s = time.perf_counter() - t0
        client.run(_reset_peak)
        probe_row = probe(client) if workers > 1 else {}
        stages: dict[str, list[float]] = {
            "forecast_s": [],
            "hx_s": [],
            "letkf_s": [],
            "halo_bytes": [],
            "row_bytes": [],
        }
        for c in range(cycles + 1):
            b0 = transfer_bytes(client)
            t0 = time.perf_counter()
            prior = ens.forecast(c)
            t1 = time.perf_counter()
            b1 = transfer_bytes(client)
            ens, _ = prior.analyse(y, op, c)
            b2 = transfer_bytes(client)
            del prior  # as the run: the forecast tiles go once the analysis has them
            if c == 0:
                continue  # warm-up
            stages["forecast_s"].append(t1 - t0)
            stages["hx_s"].append(ens.cache["seconds"]["observation"])
            stages["letkf_s"].append(ens.cache["seconds"]["analysis"])
            stages["halo_bytes"].append(b1 - b0)
            stages["row_bytes"].append(b2 - b1)
        peaks = peak_memory_mb(client)
    row = {key: sum(v) / len(v) for key, v in stages.items()}
    row["cycle_s"] = row["forecast_s"] + row["hx_s"] + row["letkf_s"]
    row["bytes_moved"] = row["halo_bytes"] + row["row_bytes"]
    row["ensemble_bytes"] = members * 4 * grid * grid * torch.finfo(dtype).bits // 8
    row["moved_fraction"] = row["bytes_moved"] / row["ensemble_bytes"]
    row["worker_peak_mb"] = max(peaks.values())
    row["build_s"] = build_s
    row["n_obs_dbz"], row["n_obs_vr"] = op.n_dbz, op.n_vr
    row.update(probe_row)
    return row


def _payload(n: int) -> torch.Tensor:
    return torch.ones(n, dtype=torch.uint8)


def _size(x: torch.Tensor) -> int:
    return int(x.numel())


def probe(client) -> dict:
    """Worker-to-worker bandwidth (bytes/s, a 200 MB tensor) and per-task overhead (s, 200 tiny tasks)."""
    a, b = sorted(client.ncores())[:2]
    opts = {"allow_other_workers": False, "pure": False}
    big = client.submit(_payload, 200 * 2**20, workers=[a], **opts)
    big.result()
    t0 = time.perf_counter()
    client.submit(_size, big, workers=[b], **opts).result()
    bandwidth = 200 * 2**20 / (time.perf_counter() - t0)
    small = client.submit(_payload, 8, workers=[a], **opts)
    small.result()
    t0 = time.perf_counter()
    client.gather([client.submit(_size, small, workers=[b], **opts) for _ in range(200)])
    return {"bandwidth_Bps": bandwidth, "task_overhead_s": (time.perf_counter() - t0) / 200}


def _owners(layout: TileLayout, workers: int) -> list[int]:
    """Worker of each tile, as `tile_workers` assigns them (consecutive tiles share a worker)."""
    return [t * workers // layout.n_tiles for t in range(layout.n_tiles)]


def halo_cells(layout: TileLayout, workers: int) -> list[int]:
    """Halo values (variables x cells) per member each worker receives per forecast, each cell once per worker."""
    owner = _owners(layout, workers)
    received = [0] * workers
    for w in range(workers):
        group = [t for t in range(layout.n_tiles) if owner[t] == w]
        for s in sorted({p.source for t in group for p in layout.pieces(t)}):
            if owner[s] != w:
                received[w] += int(layout.halo_mask(s, group, 4).sum())
    return received


def rates(one: dict, layout: TileLayout, members: int) -> dict:
    """Seconds per member and cell from a one-worker run: forecast per window cell, H(x) + LETKF per tile cell."""
    windows = sum(math.prod(layout.window(t)[1]) for t in range(layout.n_tiles))
    cells = math.prod(layout.shape)
    return {
        "forecast": one["forecast_s"] / (windows * members),
        "analysis": (one["hx_s"] + one["letkf_s"]) / (cells * members),
    }


def predict(
    rate: dict,
    layout: TileLayout,
    workers: int,
    members: int,
    itemsize: int,
    probe_row: dict,
    row_bytes_per_halo_value: float,
) -> dict:
    """Seconds per cycle on ``workers`` workers for ``layout``: the busiest worker's compute, transfer, overhead.

    compute: `rates` x its tiles' window cells (forecast) and own cells (H(x), LETKF) x members;
    transfer: the halo state it receives (from the layout) plus the observation rows, measured per
    halo value (they cross the same tile edges), at the probe's bandwidth; overhead: the probe's
    per-task time for each task it runs (6 per tile, one per tile sending it halo cells, 2 per tile asked for rows).
    """
    owner = _owners(layout, workers)
    halos = halo_cells(layout, workers)
    best = {"cycle_s": 0.0}
    for w in range(workers):
        mine = [t for t in range(layout.n_tiles) if owner[t] == w]
        compute = sum(
            members * (rate["forecast"] * math.prod(layout.window(t)[1]) + rate["analysis"] * _cells(layout, t))
            for t in mine
        )
        moved = halos[w] * (members * itemsize + row_bytes_per_halo_value)
        sending = {s for t in mine for s in senders(layout.pieces(t), t)}
        asked = {n for t in mine for n in layout.near(t, 15.0)}
        tasks = 6 * len(mine) + len(sending) + 2 * len(asked)
        row = {
            "compute_s": compute,
            "transfer_s": moved / probe_row["bandwidth_Bps"],
            "overhead_s": tasks * probe_row["task_overhead_s"],
            "bytes_in": moved,
        }
        row["cycle_s"] = row["compute_s"] + row["transfer_s"] + row["overhead_s"]
        if row["cycle_s"] > best["cycle_s"]:
            best = row
    return best


def _cells(layout: TileLayout, t: int) -> int:
    (y0, y1), (x0, x1) = layout.box(t)
    return (y1 - y0) * (x1 - x0)


__all__ = ["halo_cells", "layout_for", "make_tile", "predict", "probe", "rates", "tiled_cell"]
