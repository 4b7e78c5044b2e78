"""dacast's LETKF against DAPPER's on the identical Lorenz-96 analysis.

Both filters get the same prior ensemble, observations, error variances and
Gaspari-Cohn R-localization (DAPPER ``loc_rad=4``: half-width 1.82*4, taper
coefficients <= 1e-3 dropped; one local analysis per grid point, i.e. DAPPER's
``nd_Id_localization((Nx,), (1,))``), with inflation 1.0 (DAPPER inflates after
the analysis, dacast inside it). The table gives seconds per analysis (median of
repeats after a warm-up, neighbour search included), the speed ratio, the
largest absolute difference between the two analysis ensembles, and the peak
resident memory of a separate process that does only dacast's analysis. With
CUDA present, dacast's float64 and float32 times on the GPU are added.

    pip install -e ".[bench]"
    python benchmarks/letkf_vs_dapper.py                     # full table (about 10 min, DAPPER at N=1000 is slow)
    python benchmarks/letkf_vs_dapper.py --nx 4000 --members 100 --json out.json
    python benchmarks/letkf_vs_dapper.py --no-dapper         # dacast only (e.g. on a GPU machine)
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from dacast.da import LETKFConfig, Localization, letkf
from dacast.models import Lorenz96, integrate
from dacast.obs import Grid, identity

LOC_RADIUS = 4.0
LOCALIZATION = Localization(length=LOC_RADIUS, taper="gaspari_cohn", support=3.64 * LOC_RADIUS, min_weight=1e-3)
NX_ALL = (40, 400, 4000)
MEMBERS_ALL = (20, 100, 1000)


@dataclass
class Row:
    nx: int
    members: int
    dacast_s: float
    dapper_s: float | None
    ratio: float | None
    max_abs_diff: float | None
    dacast_peak_mb: float | None = None
    cuda_f64_s: float | None = None
    cuda_f32_s: float | None = None
    cuda_f32_max_abs_diff: float | None = None


def make_problem(nx: int, members: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A Lorenz-96 prior ensemble ``(members, nx)`` around a spun-up truth, and obs ``(nx,)``."""
    gen = torch.Generator().manual_seed(seed)
    model = Lorenz96(n_state=nx, forcing=8.0)
    x0 = model.default_initial_state() + 0.1 * torch.randn(nx, generator=gen, dtype=torch.float64)
    truth = integrate(model, x0, 200, 0.05)[-1]
    ens = truth + torch.randn((members, nx), generator=gen, dtype=torch.float64)
    for i in range(4):  # dynamically shaped errors (stepped in place of integrate: no stored trajectory)
        ens = model.step(ens, i * 0.05, 0.05)
        truth = model.step(truth, i * 0.05, 0.05)
    obs = truth + torch.randn(nx, generator=gen, dtype=torch.float64)
    return ens.numpy(), obs.numpy()


def timed(fn, repeats: int, budget_s: float = 5.0) -> tuple[float, object]:
    """Median wall time of ``fn()`` over up to ``repeats`` runs (after one warm-up), and its last result."""
    result = fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
        if sum(times) > budget_s:
            break
    return statistics.median(times), result


def dacast_analysis(ens: np.ndarray, obs: np.ndarray, device: str = "cpu", dtype=torch.float64) -> np.ndarray:
    nx = ens.shape[1]
    prior = torch.as_tensor(ens, dtype=dtype, device=device)
    y = torch.as_tensor(obs, dtype=dtype, device=device)
    op = identity(nx, 1.0)
    post = letkf(prior, y, op, LETKFConfig(localization=LOCALIZATION), Grid.ring(nx)).ensemble
    if device != "cpu":
        torch.cuda.synchronize()
    return post.cpu().numpy()


def dapper_analysis(ens: np.ndarray, obs: np.ndarray) -> np.ndarray:
    from dapper.da_methods.ensemble import local_analyses
    from dapper.tools.localization import nd_Id_localization
    from dapper.tools.matrices import CovMat

    nx = ens.shape[1]
    batches, taperer = nd_Id_localization((nx,), (1,))(LOC_RADIUS, "x2y", "GC")
    # local_analyses overwrites its ensemble argument: give it a copy.
    post, _ = local_analyses(ens.copy(), ens.copy(), CovMat(np.ones(nx), "diag"), obs, batches, taperer)
    return post


def peak_memory_mb(nx: int, members: int) -> float:
    """Peak RSS (MB) of a fresh process that builds the problem and runs dacast's analysis once."""
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss of the forking parent across exec.
    code = (
        "import re, sys; sys.path.insert(0, 'benchmarks');"
        "import letkf_vs_dapper as b;"
        f"e, y = b.make_problem({nx}, {members}); b.dacast_analysis(e, y);"
        "print(int(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1)) / 1024)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def run_cell(nx: int, members: int, with_dapper: bool, with_memory: bool, repeats: int) -> Row:
    ens, obs = make_problem(nx, members)
    dacast_s, post = timed(lambda: dacast_analysis(ens, obs), repeats)
    row = Row(nx=nx, members=members, dacast_s=dacast_s, dapper_s=None, ratio=None, max_abs_diff=None)
    if with_dapper:
        # DAPPER at N=1000 takes minutes: one timed run, no warm-up, for the big cells.
        slow = nx * members >= 400_000
        if slow:
            t0 = time.perf_counter()
            ref = dapper_analysis(ens, obs)
            row.dapper_s = time.perf_counter() - t0
        else:
            row.dapper_s, ref = timed(lambda: dapper_analysis(ens, obs), repeats)
        row.ratio = row.dapper_s / dacast_s
        row.max_abs_diff = float(np.abs(post - ref).max())
    if with_memory:
        row.dacast_peak_mb = peak_memory_mb(nx, members)
    if torch.cuda.is_available():
        row.cuda_f64_s, _ = timed(lambda: dacast_analysis(ens, obs, "cuda", torch.float64), repeats)
        row.cuda_f32_s, post32 = timed(lambda: dacast_analysis(ens, obs, "cuda", torch.float32), repeats)
        row.cuda_f32_max_abs_diff = float(np.abs(post32 - post).max())
    return row


def render(rows: list[Row], console: Console) -> None:
    cuda = any(r.cuda_f64_s is not None for r in rows)
    table = Table(title=f"LETKF analysis, Lorenz-96 — {platform.processor() or platform.machine()}, "
                  f"{torch.get_num_threads()} threads, torch {torch.__version__}")
    for col in ("Nx", "N", "dacast s", "DAPPER s", "speed-up", "max |diff|", "peak MB"):
        table.add_column(col, justify="right")
    if cuda:
        for col in ("CUDA f64 s", "CUDA f32 s", "f32 |diff|"):
            table.add_column(col, justify="right")

    def f(v: float | None, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    for r in rows:
        cells = [str(r.nx), str(r.members), f(r.dacast_s, ".4f"), f(r.dapper_s, ".3f"), f(r.ratio, ".0f"),
                 f(r.max_abs_diff, ".1e"), f(r.dacast_peak_mb, ".0f")]
        if cuda:
            cells += [f(r.cuda_f64_s, ".4f"), f(r.cuda_f32_s, ".4f"), f(r.cuda_f32_max_abs_diff, ".1e")]
        table.add_row(*cells)
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nx", type=int, choices=NX_ALL, help="run only this grid size")
    parser.add_argument("--members", type=int, choices=MEMBERS_ALL, help="run only this ensemble size")
    parser.add_argument("--json", metavar="PATH", help="write the rows as JSON")
    parser.add_argument("--no-dapper", action="store_true", help="time dacast only")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocess")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    with_dapper = not args.no_dapper
    if with_dapper:
        threads = torch.get_num_threads()
        try:
            import dapper.da_methods.ensemble  # noqa: F401
        except ImportError:
            print("error: DAPPER is not installed; pip install -e '.[bench]' or pass --no-dapper", file=sys.stderr)
            return 2
        # Importing DAPPER caps every OpenMP/BLAS pool at one thread (its
        # multiproc module calls threadpool_limits(1)). DAPPER keeps that, its
        # own default; dacast gets back the threads it would have had.
        torch.set_num_threads(threads)
    console = Console()
    rows: list[Row] = []
    for nx in [args.nx] if args.nx else NX_ALL:
        for members in [args.members] if args.members else MEMBERS_ALL:
            console.log(f"Nx={nx} N={members} ...")
            rows.append(run_cell(nx, members, with_dapper, not args.no_memory, args.repeats))
            render(rows[-1:], console)
    render(rows, console)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump([asdict(r) for r in rows], fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
