"""Cost of one 30-second ensemble forecast: the Würsch-Craig physics against the learned surrogate, side by side.

For each grid and device, both models advance the same spun-up members by one 30-s cycle
(the physics in three 10-s steps, the surrogate in one network step), with the triggering
noise; the best of ``--repeats`` runs is kept and divided by the members. The surrogate's
cost does not depend on its weights, so an untrained network of the preset's size
(``--channels``, ``--layers``) is timed, purely learned (``surrogate``) and correcting the physics
(``hybrid``: the physics' forecast plus the network). On CUDA the surrogate also runs in bfloat16.

    python benchmarks/bda_surrogate_cost.py                               # 64, 128, 256; 16 members
    python benchmarks/bda_surrogate_cost.py --grids 256 --members 1000    # the 1000-member forecast stage
    python benchmarks/bda_surrogate_cost.py --json docs/bda_surrogate_cost.json
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from dacast.ml.grid_surrogate import GridSurrogateSpec, build_grid_surrogate
from dacast.models.wursch_craig import WurschCraig, WurschCraigConfig
from dacast.workflow.bda.config import MODEL_DEFAULTS


def _peak_mb() -> float | None:
    """The process's resident high-water mark (MB; Linux), or None."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return None
    found = re.search(r"VmHWM:\s+(\d+)", status)
    return int(found.group(1)) / 1024 if found else None


def _time(run, device: torch.device, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        run()
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return best


def measure(grid: int, members: int, device: torch.device, args: argparse.Namespace) -> list[dict]:
    """Rows for one grid and device: physics float32, surrogate float32 (and bfloat16 on CUDA)."""
    physics = WurschCraig(WurschCraigConfig(ny=grid, nx=grid, **MODEL_DEFAULTS))
    x = physics.initial_state(min(members, 4), seed=1, device=device)
    x = physics.forecast(x, 600.0, seed=1, start_step=-60)
    x = x.repeat((members + x.shape[0] - 1) // x.shape[0], 1, 1, 1)[:members].contiguous()
    spec = GridSurrogateSpec.for_model(physics.config, 30.0, channels=args.channels, layers=args.layers)
    net = build_grid_surrogate(spec).to(device)
    rows = []
    cases = [("physics", "float32", lambda: physics.forecast(x, 30.0, seed=2, start_step=0))]
    cases.append(("surrogate", "float32", lambda: net.forecast(x, 30.0, seed=2, start_step=0)))
    hybrid = build_grid_surrogate(replace(spec, physics=asdict(physics.config))).to(device)
    cases.append(("hybrid", "float32", lambda: hybrid.forecast(x, 30.0, seed=2, start_step=0)))
    if device.type == "cuda":
        half = build_grid_surrogate(spec).to(device).compute_in(torch.bfloat16)
        cases.append(("surrogate", "bfloat16", lambda: half.forecast(x, 30.0, seed=2, start_step=0)))
    for model, dtype, run in cases:
        run()  # warm-up (allocations, cuDNN choice)
        seconds = _time(run, device, args.repeats)
        rows.append(
            {"grid": grid, "members": members, "device": device.type, "model": model, "dtype": dtype, "s": seconds}
        )
    phys = rows[0]["s"]
    for row in rows:
        row["ms_per_member"] = 1e3 * row["s"] / members
        row["cost_vs_physics"] = row["s"] / phys
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grids", default="64,128,256")
    parser.add_argument("--members", type=int, default=16)
    parser.add_argument("--channels", type=int, default=24)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--json", default=None, help="also write the rows here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    rows = [
        row
        for device in devices
        for grid in (int(g) for g in args.grids.split(","))
        for row in measure(grid, args.members, device, args)
    ]
    table = Table(title=f"one 30-s forecast, {args.members} members ({torch.get_num_threads()} CPU threads)")
    for col in ("grid", "device", "model", "dtype", "s", "ms/member", "vs physics"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            f"{r['grid']}²",
            r["device"],
            r["model"],
            r["dtype"],
            f"{r['s']:.3f}",
            f"{r['ms_per_member']:.2f}",
            f"{r['cost_vs_physics']:.2f}x",
        )
    Console().print(table)
    peak = _peak_mb()
    if peak is not None:
        Console().print(f"peak resident memory of this process: {peak:.0f} MB")
    if args.json:
        meta = {"machine": platform.processor() or platform.machine(), "threads": torch.get_num_threads()}
        meta["peak_rss_mb"] = _peak_mb()
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"meta": meta, "args": vars(args), "rows": rows}, fh, indent=1)


if __name__ == "__main__":
    main()
