"""Wall time and peak memory of one 30-second Big Data Assimilation cycle, by stage.

For every (members, grid) cell a fresh process builds a spun-up truth and an
ensemble, then times one cycle: the 30-s ensemble forecast, the observation
operator H(x) on all members, and the gridded LETKF (neighbour search
included). The radar volume itself is simulated from the truth and not timed
(in the real system it arrives from the radar). Peak memory is the process's
resident high-water mark (VmHWM). Modes: one process (``cpu``), a Dask
LocalCluster with 2 worker processes (``dask``: member chunks and LETKF tiles),
and ``cuda`` when a GPU is present.

The last table runs the same gridded LETKF analysis (RTPP off, float64, stride
1) through DAPPER's ``local_analyses`` — the path of the foundation's DAPPER
benchmark — at a size DAPPER handles, with the largest difference of the two
analysis ensembles.

    pip install -e ".[bench]"
    python benchmarks/bda_cycle.py                                  # full table (long: 1000 x 256^2 cells)
    python benchmarks/bda_cycle.py --members 50,100 --grids 64,128 --modes cpu
    python benchmarks/bda_cycle.py --members 1000 --grids 256 --stride 4 --json docs/bda_cycle.json
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import subprocess
import sys
import time
from dataclasses import replace

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from dacast.da.gridded import GriddedLETKFConfig, gridded_letkf, gridded_neighbours
from dacast.models.wursch_craig import WurschCraig, WurschCraigConfig
from dacast.obs.radar import RadarConfig, observe_radar

SPINUP_S = 20 * 60.0


def _peak_mb() -> float:
    return int(re.search(r"VmHWM:\s+(\d+)", open("/proc/self/status").read()).group(1)) / 1024


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def make_states(
    members: int, grid: int, device: str, dtype: torch.dtype
) -> tuple[WurschCraig, torch.Tensor, torch.Tensor]:
    """A model, a spun-up truth ``(1, 4, g, g)`` and ``members`` states from 8 spun-up runs ``(k, 4, g, g)``."""
    model = WurschCraig(WurschCraigConfig(ny=grid, nx=grid))
    truth = model.initial_state(1, seed=1, dtype=dtype, device=device)
    truth = model.forecast(truth, SPINUP_S, seed=1, start_step=0)
    pool = model.initial_state(min(members, 8), seed=2, dtype=dtype, device=device)
    pool = model.forecast(pool, SPINUP_S, seed=2, start_step=0)
    reps = -(-members // pool.shape[0])
    ens = pool.repeat(reps, 1, 1, 1)[:members].contiguous()
    return model, truth, ens


def run_cell(members: int, grid: int, mode: str, stride: int, dtype_name: str, tiles: str = "2x2") -> dict:
    """Time one cycle; returns seconds per stage, observation counts and peak memory."""
    device = "cuda" if mode == "cuda" else "cpu"
    dtype = torch.float32 if dtype_name == "float32" else torch.float64
    if mode.startswith("tiled"):
        from bda_tiled import tiled_cell

        ty, tx = (int(n) for n in tiles.split("x"))
        return {"tiles": tiles, **tiled_cell(members, grid, int(mode[5:] or 1), (ty, tx), stride, dtype)}
    if mode == "cpu1":
        torch.set_num_threads(1)
    config = GriddedLETKFConfig(weight_stride=stride)
    dx_km = 0.5
    model, truth, ens = make_states(members, grid, device, dtype)
    truth = model.forecast(truth, 30.0, seed=1, start_step=0)  # the observed time (as bda_tiled)
    client = cluster = None
    if mode == "dask":
        from dask.distributed import Client, LocalCluster

        from dacast.da.gridded_dask import gridded_letkf_dask
        from dacast.workflow.bda.forecast import Forecaster

        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
        client = Client(cluster)
        forecaster = Forecaster(model, client)
    # Warm-up on a small problem (thread pools, kernels).
    w_model, w_truth, w_ens = make_states(4, 16, device, dtype) if grid > 16 else (model, truth, ens)
    wy, wop = observe_radar(w_truth[0], w_model.config, RadarConfig(), torch.Generator().manual_seed(0))
    if wop.n_obs:
        gridded_letkf(w_ens, wy.to(device=device, dtype=dtype), wop, config, dx_km=dx_km)
    y, op = observe_radar(truth[0], model.config, RadarConfig(), torch.Generator().manual_seed(1))
    y = y.to(device=device, dtype=dtype)
    _sync(device)
    t0 = time.perf_counter()
    if client is not None:
        prior = forecaster(ens, 30.0, seed=2, start_step=0)
    else:
        prior = model.forecast(ens, 30.0, seed=2, start_step=0)
    _sync(device)
    t1 = time.perf_counter()
    hx = op(prior.reshape(members, -1))
    _sync(device)
    t2 = time.perf_counter()
    local = gridded_neighbours((grid, grid), dx_km, op.locations, config)
    t3 = time.perf_counter()
    if client is not None:
        post = gridded_letkf_dask(client, prior, y, op, config, dx_km=dx_km, local=local, hx=hx).ensemble
    else:
        post = gridded_letkf(prior, y, op, config, dx_km=dx_km, local=local, hx=hx).ensemble
    _sync(device)
    t4 = time.perf_counter()
    # Accuracy: RMSE of the analysis mean against the truth (h in m, r dimensionless); compare strides.
    err = (post.mean(0) - truth[0]).double().pow(2).mean(dim=(-2, -1)).sqrt().cpu()
    prior_err = (prior.mean(0) - truth[0]).double().pow(2).mean(dim=(-2, -1)).sqrt().cpu()
    if client is not None:
        client.close()
        cluster.close()
    row = {
        "members": members,
        "grid": grid,
        "mode": mode,
        "stride": stride,
        "dtype": dtype_name,
        "n_obs_dbz": int((op.kind == 0).sum()),
        "n_obs_vr": int((op.kind == 1).sum()),
        "forecast_s": t1 - t0,
        "hx_s": t2 - t1,
        "neighbours_s": t3 - t2,
        "letkf_s": t4 - t2,
        "peak_mb": _peak_mb(),
        "rmse_prior_h": float(prior_err[2]),
        "rmse_prior_r": float(prior_err[3]),
        "rmse_analysis_h": float(err[2]),
        "rmse_analysis_r": float(err[3]),
    }
    if device == "cuda":
        row["gpu_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    row["cycle_s"] = row["forecast_s"] + row["hx_s"] + row["letkf_s"]
    return row


def dapper_comparison(members: int = 50, grid: int = 48) -> dict:
    """The same analysis (float64, RTPP off, stride 1) by dacast and by DAPPER's ``local_analyses``."""
    from dapper.da_methods.ensemble import local_analyses
    from dapper.tools.matrices import CovMat

    config = GriddedLETKFConfig(rtpp=0.0, weight_stride=1)
    model, truth, ens = make_states(members, grid, "cpu", torch.float64)
    ens = model.forecast(ens, 30.0, seed=2, start_step=0)
    y, op = observe_radar(truth[0], model.config, RadarConfig(), torch.Generator().manual_seed(1))
    y = y.double()
    t0 = time.perf_counter()
    post = gridded_letkf(ens, y, op, config, dx_km=0.5).ensemble
    t_dacast = time.perf_counter() - t0

    local = gridded_neighbours((grid, grid), 0.5, op.locations, config)
    weights = config.taper.weights(local.distance).numpy()
    index = local.index.numpy()
    n_points = grid * grid
    e = ens.reshape(members, -1).numpy().copy()
    eo = op(ens.reshape(members, -1)).numpy()
    batches = [np.array([p + v * n_points for v in range(4)]) for p in range(n_points)]

    def taperer(ii: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p = int(ii[0])
        keep = weights[p] > 0
        return index[p][keep], weights[p][keep]

    r = CovMat(op.error_std.double().numpy() ** 2, "diag")
    t0 = time.perf_counter()
    dapper_post, _ = local_analyses(e, eo, r, y.numpy(), batches, taperer)
    t_dapper = time.perf_counter() - t0
    diff = float(np.abs(dapper_post - post.reshape(members, -1).numpy()).max())
    scale = float(np.abs(post.numpy()).max())
    return {
        "members": members,
        "grid": grid,
        "n_obs": op.n_obs,
        "dacast_s": t_dacast,
        "dapper_s": t_dapper,
        "ratio": t_dapper / t_dacast,
        "max_abs_diff": diff,
        "max_abs_value": scale,
    }


def stride_cost(checkpoint: str, strides: list[int]) -> list[dict]:
    """Analysis RMSE and LETKF time per weight stride, from the state saved by ``dacast bda run``.

    The saved analysis ensemble is forecast one cycle, the truth too, the radar
    observes it, and the same prior is analysed at every stride.
    """
    from dacast.workflow.bda.config import bda_config_from_dict
    from dacast.workflow.bda.forecast import Seeds, obs_generator

    data = torch.load(checkpoint, map_location="cpu", weights_only=False)
    saved = dict(data["config"])
    saved["model"] = {k: v for k, v in saved["model"].items() if k not in ("ny", "nx")}  # they follow grid
    config = bda_config_from_dict(saved)
    seeds = Seeds.of(config.seed)
    model = WurschCraig(config.model)
    start = data["cycle"] * config.steps_per_cycle
    truth = model.forecast(data["truth"], config.cycle_seconds, seed=seeds.truth, start_step=start)
    prior = model.forecast(data["ensemble"], config.cycle_seconds, seed=seeds.pool, start_step=start)
    y, op = observe_radar(truth[0], config.model, config.radar, obs_generator(seeds.obs, data["cycle"]))
    prior_err = (prior.mean(0) - truth[0]).double().pow(2).mean(dim=(-2, -1)).sqrt()
    rows = []
    for stride in strides:
        letkf_config = replace(config.letkf, weight_stride=stride)
        t0 = time.perf_counter()
        post = gridded_letkf(prior, y.to(prior.dtype), op, letkf_config, dx_km=config.dx_km).ensemble
        seconds = time.perf_counter() - t0
        err = (post.mean(0) - truth[0]).double().pow(2).mean(dim=(-2, -1)).sqrt()
        rows.append(
            {
                "stride": stride,
                "members": config.members,
                "letkf_s": seconds,
                **{f"rmse_prior_{v}": float(e) for v, e in zip("uvhr", prior_err, strict=True)},
                **{f"rmse_analysis_{v}": float(e) for v, e in zip("uvhr", err, strict=True)},
            }
        )
        del post
    return rows


def _child(args: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    if out.returncode != 0:
        return {"error": (out.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def render(rows: list[dict], console: Console) -> None:
    table = Table(title="one 30-s cycle (seconds) and peak memory")
    cols = ("mode", "members", "grid", "stride", "obs (dBZ+Vr)", "forecast", "H(x)", "LETKF", "cycle", "peak MB")
    for col in (*cols, "rmse r a/f", "moved MB (% ens)"):
        table.add_column(col, justify="right")
    for r in rows:
        if "error" in r:
            table.add_row(r["mode"], str(r["members"]), str(r["grid"]), str(r["stride"]), r["error"], *[""] * 7)
            continue
        tiled = "tiles" in r  # a tiled run: peak per worker, bytes the workers received from each other
        gpu = f" (GPU {r['gpu_peak_mb']:.0f})" if "gpu_peak_mb" in r else ""
        table.add_row(
            f"{r['mode']} {r['tiles']}" if tiled else r["mode"],
            str(r["members"]),
            f"{r['grid']}²",
            str(r["stride"]),
            f"{r['n_obs_dbz']}+{r['n_obs_vr']}",
            f"{r['forecast_s']:.2f}",
            f"{r['hx_s']:.3f}",
            f"{r['letkf_s']:.2f}",
            f"{r['cycle_s']:.2f}",
            f"{r['worker_peak_mb']:.0f}/worker" if tiled else f"{r['peak_mb']:.0f}{gpu}",
            "" if tiled else f"{r['rmse_analysis_r'] / r['rmse_prior_r']:.3f}",
            f"{r['bytes_moved'] / 2**20:.0f} ({100 * r['moved_fraction']:.0f} %)" if tiled else "",
        )
    console.print(table)


def cost_model(rows: list[dict], dtype_name: str, console: Console) -> list[dict]:
    """Predicted seconds per cycle for 1-256 workers (one tile each) from the tiled1 and tiled2 rows; a table."""
    from bda_tiled import halo_cells, layout_for, predict, rates

    one = next((r for r in rows if r["mode"] == "tiled1" and "error" not in r), None)
    two = next((r for r in rows if r["mode"] == "tiled2" and "error" not in r), None)
    if one is None or two is None:
        console.print("cost model: needs a tiled1 and a tiled2 row of the same size")
        return []
    itemsize = 4 if dtype_name == "float32" else 8
    k, grid, stride = one["members"], one["grid"], one["stride"]
    ty, tx = (int(n) for n in one["tiles"].split("x"))
    base = layout_for(grid, (ty, tx), stride)
    rate = rates(one, base, k)
    # the one-worker times include its own task overhead: take it out of the compute rates
    overhead_1 = predict(rate, base, 1, k, itemsize, two, 0.0)["overhead_s"]
    rate = {key: value * max(0.0, 1.0 - overhead_1 / one["cycle_s"]) for key, value in rate.items()}
    per_cell = two["row_bytes"] / max(1, sum(halo_cells(base, 2)))  # observation rows per halo value, measured
    out = []
    table = Table(title=f"cost model: {k} members, {grid}², stride {stride} (from tiled1 rates; probe of tiled2)")
    for col in ("workers", "tiles", "compute s", "transfer s", "overhead s", "cycle s", "measured s"):
        table.add_column(col, justify="right")
    for workers, tiles in ((1, (ty, tx)), (2, (ty, tx)), (16, (4, 4)), (64, (8, 8)), (256, (16, 16))):
        try:
            layout = layout_for(grid, tiles, stride)
        except ValueError as err:
            table.add_row(str(workers), f"{tiles[0]}x{tiles[1]}", str(err)[:40], *[""] * 4)
            continue
        p = predict(rate, layout, workers, k, itemsize, two, per_cell)
        measured = {1: one["cycle_s"], 2: two["cycle_s"]}.get(workers) if tiles == (ty, tx) else None
        out.append({"workers": workers, "tiles": list(tiles), **p, "measured_s": measured})
        table.add_row(
            str(workers),
            f"{tiles[0]}x{tiles[1]}",
            *(f"{p[key]:.2f}" for key in ("compute_s", "transfer_s", "overhead_s", "cycle_s")),
            "" if measured is None else f"{measured:.2f}",
        )
    console.print(table)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", default="50,100,250,1000")
    parser.add_argument("--grids", default="64,128,256")
    parser.add_argument(
        "--modes",
        default=None,
        help="cpu,cpu1,dask,tiled1,tiled2[,cuda]: cpu1 = one thread, tiledN = N workers x 1 thread holding --tiles "
        "(default: cpu,dask and cuda when present)",
    )
    parser.add_argument("--tiles", default="2x2", help="tile layout of the tiled modes (tiles along y x x)")
    parser.add_argument(
        "--cost-model", action="store_true", help="after the table: predicted cycle time, 1-256 workers"
    )
    parser.add_argument("--stride", default="1", help="weight strides to time, e.g. 1,2,4")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    parser.add_argument("--no-dapper", action="store_true", help="skip the DAPPER comparison")
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    parser.add_argument("--cell", nargs=4, metavar=("MEMBERS", "GRID", "MODE", "STRIDE"), help=argparse.SUPPRESS)
    parser.add_argument("--dapper-cell", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--stride-cost", default=None, metavar="CHECKPOINT", help="RMSE cost of coarse weights from a run's checkpoint"
    )
    args = parser.parse_args(argv)
    if args.stride_cost:
        rows = stride_cost(args.stride_cost, [int(s) for s in args.stride.split(",")])
        table = Table(title=f"coarse-weight cost, one analysis from {args.stride_cost}")
        for col in ("stride", "LETKF s", "rmse u", "rmse v", "rmse h", "rmse r"):
            table.add_column(col, justify="right")
        first = rows[0]
        table.add_row("prior", "", *(f"{first[f'rmse_prior_{v}']:.4g}" for v in "uvhr"))
        for r in rows:
            table.add_row(str(r["stride"]), f"{r['letkf_s']:.2f}", *(f"{r[f'rmse_analysis_{v}']:.4g}" for v in "uvhr"))
        Console(width=150).print(table)
        if args.json:
            with open(args.json, "w") as fh:
                json.dump(rows, fh, indent=2)
        return 0
    if args.cell:
        m, g, mode, s = args.cell
        print(json.dumps(run_cell(int(m), int(g), mode, int(s), args.dtype, args.tiles)))
        return 0
    if args.dapper_cell:
        print(json.dumps(dapper_comparison()))
        return 0
    console = Console(width=150)
    modes = args.modes.split(",") if args.modes else ["cpu", "dask"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = []
    for mode in modes:
        for grid in (int(g) for g in args.grids.split(",")):
            for members in (int(m) for m in args.members.split(",")):
                for stride in (int(s) for s in args.stride.split(",")):
                    console.print(f"[dim]{mode} {members} members {grid}² stride {stride}...[/]")
                    cell = ["--cell", str(members), str(grid), mode, str(stride), "--dtype", args.dtype]
                    row = _child([*cell, "--tiles", args.tiles])
                    rows.append({"members": members, "grid": grid, "mode": mode, "stride": stride, **row})
    render(rows, console)
    model = cost_model(rows, args.dtype, console) if args.cost_model else None
    dapper = None
    if not args.no_dapper:
        dapper = _child(["--dapper-cell"])
        if "error" in dapper:
            console.print(f"DAPPER comparison failed: {dapper['error']}")
        else:
            console.print(
                f"same analysis, {dapper['members']} members, {dapper['grid']}² grid, {dapper['n_obs']} obs, float64: "
                f"dacast {dapper['dacast_s']:.3f} s, DAPPER local_analyses {dapper['dapper_s']:.2f} s "
                f"({dapper['ratio']:.0f}x); max |difference| {dapper['max_abs_diff']:.1e} "
                f"(values up to {dapper['max_abs_value']:.3g})"
            )
    if args.json:
        info = {"machine": platform.processor() or platform.machine(), "threads": torch.get_num_threads()}
        with open(args.json, "w") as fh:
            json.dump({"machine": info, "rows": rows, "dapper": dapper, "cost_model": model}, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
