"""The diffusion filter against the LETKF on Lorenz-96 (DAPPER's sakov2008 twin), side by side in one process.

For each observation network (all variables with R = I; every 4th variable; arctan of every
variable with error 0.05 rad) and each seed, both filters cycle over the same truth,
observations and initial ensemble; the table gives the analysis RMSE, spread/RMSE, CRPS
(means over variables and over the cycles after ``--skip``, then over seeds), the
seconds per analysis and the runs that diverged, with the diffusion/LETKF ratios.

The diffusion filter's prior is trained first, one per network, on LETKF forecast/truth
pairs from other seeds (``--train-runs`` runs of ``--train-cycles`` cycles), or read from
``--prior-dir`` when it is there (it is written there otherwise).

    python benchmarks/diffusion_vs_letkf.py                                  # all three networks, 3 seeds
    python benchmarks/diffusion_vs_letkf.py --networks all --seeds 1 --cycles 300
    python benchmarks/diffusion_vs_letkf.py --prior-dir runs/diffusion --json docs/diffusion_da.json \\
        --ranks docs/figures/diffusion_ranks.png
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from dataclasses import asdict
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from dacast.ml.diffusion import NoiseSchedule
from dacast.ml.diffusion_filter import DiffusionAnalyser, load_prior, save_prior
from dacast.ml.diffusion_sampling import SamplerConfig
from dacast.ml.diffusion_train import DiffusionTrainConfig, train_error_prior
from dacast.workflow.diffusion import NETWORKS, Lorenz96Twin, Network, RunStats, run_filter, training_pairs


def _load(path: Path, twin: Lorenz96Twin, network: Network, console: Console):
    console.print(f"prior: {path}")
    prior = load_prior(path, n_state=twin.n_state, model=twin.model_dict(), network=network.name)
    return prior, json.loads(path.with_suffix(".json").read_text()).get("record")


def _prior(twin: Lorenz96Twin, network: Network, args: argparse.Namespace, console: Console):
    """The network's prior: read from ``--prior-dir`` when there, else trained (and written there).

    With ``--iterations N`` the prior ``prior-NETWORK-itN.pt`` is retrained N times from the LETKF one
    (``prior-NETWORK.pt``, read or trained) on the LETKF pairs plus the diffusion filter's own forecasts.
    """
    folder = Path(args.prior_dir) if args.prior_dir else None
    final = folder / f"prior-{network.name}-it{args.iterations}.pt" if folder and args.iterations else None
    base = folder / f"prior-{network.name}.pt" if folder else None
    if final is not None and final.exists():
        return _load(final, twin, network, console)
    if not args.iterations and base is not None and base.exists():
        return _load(base, twin, network, console)
    start = time.perf_counter()
    data = training_pairs(twin, (network,), runs=args.train_runs, cycles=args.train_cycles, seed=args.train_seed,
                          progress=True)  # fmt: skip
    data_seconds = time.perf_counter() - start
    config = DiffusionTrainConfig(steps=args.train_steps, seed=args.train_seed, spread_channel=args.spread_channel)
    if base is not None and base.exists():
        prior, record = _load(base, twin, network, console)
    else:
        result = train_error_prior(*data, model=twin.model_dict(), networks=(network.name,), config=config,
                                   progress=True)  # fmt: skip
        prior, record = result.prior, {**result.record, "data_seconds": data_seconds,
                                       "data_samples": int(data[0].shape[0])}  # fmt: skip
        if base is not None:
            base.parent.mkdir(parents=True, exist_ok=True)
            save_prior(prior, base, extra={"record": record})
    record = {**(record or {}), "iterations": []}
    for it in range(args.iterations):
        # retrain on the LETKF pairs plus the diffusion filter's own forecasts (the errors it will meet)
        start = time.perf_counter()
        extra = training_pairs(
            twin, (network,), runs=args.iteration_runs, cycles=args.train_cycles, seed=args.train_seed + 1 + it,
            analyser=_own_analyser(prior, args), label="diffusion", progress=True,
        )  # fmt: skip
        data = tuple(torch.cat((a, b)) for a, b in zip(data, extra, strict=True))
        result = train_error_prior(*data, model=twin.model_dict(), networks=(network.name,), config=config,
                                   progress=True)  # fmt: skip
        prior = result.prior
        record["iterations"].append({**result.record, "data_seconds": time.perf_counter() - start,
                                     "data_samples": int(data[0].shape[0])})  # fmt: skip
    if final is not None:
        save_prior(prior, final, extra={"record": record})
    return prior, record


def _own_analyser(prior, args: argparse.Namespace):
    """Builds the diffusion filter of ``prior`` for a (network, run seed) of the training period."""
    sampler = _sampler(args)

    def build(network: Network, seed: int) -> DiffusionAnalyser:
        return DiffusionAnalyser(prior, sampler, torch.Generator().manual_seed(seed), inflation=args.inflation)

    return build


def _sampler(args: argparse.Namespace) -> SamplerConfig:
    schedule = NoiseSchedule(sigma_max=80.0)
    return SamplerConfig(steps=args.sampler_steps, schedule=schedule, covariance=args.covariance, gamma=args.gamma)


def _mean(rows: list[dict], key: str) -> float:
    vals = [r[key] for r in rows if math.isfinite(r[key])]
    return sum(vals) / len(vals) if vals else math.nan


def main() -> None:
    """Parse the arguments, run both filters on every network and seed, print one table."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--networks", default="all,every4,arctan", help=f"comma list of {', '.join(NETWORKS)}")
    ap.add_argument("--seeds", type=int, default=3, help="verification seeds 3000, 3001, ...")
    ap.add_argument("--members", type=int, default=20)
    ap.add_argument("--cycles", type=int, default=500)
    ap.add_argument("--skip", type=int, default=100, help="spin-up cycles left out of the scores")
    ap.add_argument("--train-runs", type=int, default=10)
    ap.add_argument("--train-cycles", type=int, default=1000)
    ap.add_argument("--train-steps", type=int, default=3000)
    ap.add_argument("--train-seed", type=int, default=1)
    ap.add_argument("--iterations", type=int, default=0, help="retrain on the diffusion filter's own forecasts")
    ap.add_argument("--iteration-runs", type=int, default=4, help="diffusion runs per retraining")
    ap.add_argument("--spread-channel", action="store_true", help="condition the prior on the forecast spread too")
    ap.add_argument("--inflation", type=float, default=1.0, help="multiplies the diffusion prior's error scale")
    ap.add_argument("--sampler-steps", type=int, default=16)
    ap.add_argument("--covariance", choices=("isotropic", "jacobian"), default="isotropic")
    ap.add_argument("--gamma", type=float, default=1.0)
    ap.add_argument("--prior-dir", help="priors prior-NETWORK.pt: read when there, else trained and written there")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", help="write the table and settings as JSON")
    ap.add_argument("--ranks", help="write the rank histograms as a PNG")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    console = Console(width=150)
    try:
        networks = [NETWORKS[name] for name in args.networks.split(",")]
    except KeyError as err:
        ap.error(f"unknown network {err}; choose from {', '.join(NETWORKS)}")
    twin = Lorenz96Twin(members=args.members)
    sampler = _sampler(args)
    rows, ranks, training = [], {}, {}
    for network in networks:
        prior, training[network.name] = _prior(twin, network, args, console)
        for method in ("letkf", "diffusion"):
            per_seed = []
            counts = torch.zeros(args.members + 1, dtype=torch.float64)
            for i in range(args.seeds):
                seed = 3000 + i
                truth, y, ens = twin.truth_and_obs(network, seed, args.cycles)
                if method == "letkf":
                    analyser = twin.letkf(network)
                else:
                    generator = torch.Generator().manual_seed(seed)
                    analyser = DiffusionAnalyser(prior, sampler, generator, inflation=args.inflation)
                stats: RunStats = run_filter(twin, network, analyser, truth, y, ens, skip=args.skip,
                                             label=f"{method} {network.name} seed {seed}", progress=True)  # fmt: skip
                per_seed.append({**stats.summary(args.skip), "diverged": stats.diverged_cycle >= 0,
                                 "reason": stats.reason, "seed": seed})  # fmt: skip
                counts += stats.rank_counts
            row = {"network": network.name, "method": method, "seeds": per_seed}
            for key in ("rmse", "spread_ratio", "crps", "seconds_per_analysis"):
                row[key] = _mean(per_seed, key)
            row["diverged"] = sum(s["diverged"] for s in per_seed)
            rows.append(row)
            ranks[(network.name, method)] = (counts / counts.sum().clamp_min(1)).tolist()
    _table(rows, args, console)
    if args.json:
        meta = {"machine": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
                "args": vars(args), "sampler": asdict(sampler),
                "training": training}  # fmt: skip
        Path(args.json).write_text(json.dumps({"rows": rows, "ranks": {f"{k[0]}/{k[1]}": v for k, v in ranks.items()},
                                               "meta": meta}, indent=2) + "\n")  # fmt: skip
    if args.ranks:
        _plot_ranks(ranks, networks, args.ranks)


def _table(rows: list[dict], args: argparse.Namespace, console: Console) -> None:
    table = Table(title=f"Lorenz-96 40, F=8, dt=0.05, {args.members} members, {args.cycles} cycles "
                        f"(scores after {args.skip}), {args.seeds} seeds")  # fmt: skip
    for col in (
        "network",
        "method",
        "RMSE",
        "spread/RMSE",
        "CRPS",
        "s/analysis",
        "diverged",
        "RMSE ratio",
        "CRPS ratio",
    ):
        table.add_column(col, justify="left" if col in ("network", "method") else "right")
    by = {(r["network"], r["method"]): r for r in rows}
    for r in rows:
        base = by[(r["network"], "letkf")]
        ratio = r["method"] != "letkf"
        table.add_row(
            r["network"], r["method"], f"{r['rmse']:.4f}", f"{r['spread_ratio']:.2f}", f"{r['crps']:.4f}",
            f"{r['seconds_per_analysis']:.4f}", f"{r['diverged']}/{len(r['seeds'])}",
            f"{r['rmse'] / base['rmse']:.3f}" if ratio else "", f"{r['crps'] / base['crps']:.3f}" if ratio else "",
        )  # fmt: skip
    console.print(table)


def _plot_ranks(ranks: dict, networks: list, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(networks), 2, figsize=(8, 2.2 * len(networks)), squeeze=False, sharey="row")
    for i, network in enumerate(networks):
        for j, method in enumerate(("letkf", "diffusion")):
            freq = ranks[(network.name, method)]
            ax = axes[i][j]
            ax.bar(range(len(freq)), freq, color="tab:blue" if j == 0 else "tab:orange")
            ax.axhline(1 / len(freq), color="k", lw=0.8, ls="--")
            ax.set_title(f"{network.name}: {method}", fontsize=9)
            ax.set_xlabel("rank of the truth among the members", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
