"""The diffusion filter against the LETKF on Lorenz-96 (DAPPER's sakov2008 twin), side by side in one process.

For each observation network (all variables with R = I; every 4th variable; arctan of every
variable with error 0.05 rad) and each seed, both filters cycle over the same truth,
observations and initial ensemble; the table gives the analysis RMSE, spread/RMSE, CRPS
(means over variables and over the cycles after ``--skip``, then over seeds), the
seconds per analysis and the runs that diverged, with the diffusion/LETKF ratios.

The diffusion filter's prior is trained first, one per network, on LETKF forecast/truth
pairs from other seeds (``--train-runs`` runs of ``--train-cycles`` cycles), or read from
``--prior-dir`` when it is there (it is written there otherwise). The code is that of
``dacast diffusion run`` (`dacast.workflow.diffusion`), with this command line.

    python benchmarks/diffusion_vs_letkf.py                                  # all three networks, 3 seeds
    python benchmarks/diffusion_vs_letkf.py --networks all --seeds 1 --cycles 300
    python benchmarks/diffusion_vs_letkf.py --prior-dir runs/diffusion --json docs/diffusion_da.json \\
        --ranks docs/figures/diffusion_ranks.png
    python benchmarks/diffusion_vs_letkf.py --transport --ensemble-weight 0.5 --ensemble-scale 0.7   # hybrid prior
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from rich.console import Console

from dacast.workflow.diffusion import NETWORKS
from dacast.workflow.diffusion.config import DiffusionConfig, EnsembleSpec, SamplerSpec, TrainingSpec
from dacast.workflow.diffusion.output import filter_rows, machine_info, rank_frequencies, results_table
from dacast.workflow.diffusion.plots import plot_rank_histograms
from dacast.workflow.diffusion.priors import network_prior
from dacast.workflow.diffusion.run import run_comparison
from dacast.workflow.runtime import cpu_threads
from dacast.workflow.schema import ConfigError


def _config(args: argparse.Namespace) -> DiffusionConfig:
    """The command line as the application's configuration (``dacast diffusion run`` runs the same code)."""
    training = TrainingSpec(runs=args.train_runs, cycles=args.train_cycles, steps=args.train_steps,
                            seed=args.train_seed, spread_channel=args.spread_channel)  # fmt: skip
    sampler = SamplerSpec(steps=args.sampler_steps, covariance=args.covariance, gamma=args.gamma,
                          transport=args.transport)  # fmt: skip
    ensemble = EnsembleSpec(weight=args.ensemble_weight, scale=args.ensemble_scale)
    return DiffusionConfig(
        name="benchmark", networks=tuple(args.networks.split(",")), seeds=tuple(3000 + i for i in range(args.seeds)),
        members=args.members, cycles=args.cycles, skip=args.skip, inflation=args.inflation, sampler=sampler,
        ensemble=ensemble,
        training=training, iterations=args.iterations, iteration_runs=args.iteration_runs,
        prior_dir=Path(args.prior_dir) if args.prior_dir else None, threads=args.threads,
    )  # fmt: skip


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
    ap.add_argument(
        "--transport",
        action="store_true",
        help="move the forecast members to the posterior (deterministic) instead of drawing new ones",
    )
    ap.add_argument(
        "--ensemble-weight",
        type=float,
        default=0.0,
        help="hybrid prior: weight of the forecast members' localized Gaussian (0: learned prior alone)",
    )
    ap.add_argument("--ensemble-scale", type=float, default=1.0, help="hybrid prior: multiplies the members' errors")
    ap.add_argument("--covariance", choices=("isotropic", "jacobian"), default="isotropic")
    ap.add_argument("--gamma", type=float, default=1.0)
    ap.add_argument("--prior-dir", help="priors prior-NETWORK.pt: read when there, else trained and written there")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", help="write the table and settings as JSON")
    ap.add_argument("--ranks", help="write the rank histograms as a PNG")
    args = ap.parse_args()
    unknown = [name for name in args.networks.split(",") if name not in NETWORKS]
    if unknown:
        ap.error(f"unknown network {unknown[0]!r}; choose from {', '.join(NETWORKS)}")
    try:
        config = _config(args)
    except (ConfigError, ValueError) as err:
        ap.error(str(err))
    console = Console(width=150)
    folder = config.prior_dir
    twin = config.twin()
    with cpu_threads(config.threads):
        results, training = run_comparison(
            config, twin,
            lambda network: network_prior(twin, network, config, read=(folder,) if folder else (), write=folder,
                                          progress=True, say=console.print),
            progress=True,
        )  # fmt: skip
        meta = {**machine_info(), "args": vars(args), "sampler": asdict(config.sampler.build()), "training": training}
    rows = filter_rows(config, results)
    console.print(results_table(config, rows))
    ranks = rank_frequencies(config, results)
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "ranks": {f"{k[0]}/{k[1]}": v for k, v in ranks.items()},
                                               "meta": meta}, indent=2) + "\n")  # fmt: skip
    if args.ranks:
        plot_rank_histograms(ranks, config.networks, args.ranks)


if __name__ == "__main__":
    main()
