"""The latent diffusion filter against the gridded LETKF on the radar twin, side by side in one process.

The twin is ``dacast bda``'s ``bda-small`` (Würsch-Craig model on 64 x 64 cells of 500 m, radar
volumes of reflectivity and Doppler velocity every 30 s, 50 members). For each verification
seed both filters cycle over the same truth, radar volumes and initial ensemble; the table gives
the analysis RMSE of rain and of the fluid height, the rain spread/RMSE, the threat score at
30 dBZ of the analysis mean and of the 30-minute forecasts, and the seconds per analysis, with
the diffusion/LETKF ratios, plus what training cost (LETKF runs, autoencoder, latent prior).

The filter is trained on LETKF runs of other seeds (``--train-seeds`` runs of ``--train-cycles``
cycles), or read from ``--prior-dir`` when it is there (written there otherwise, with the
training samples). The training, the comparison loop and the table are those of
``dacast diffusion radar run`` (`dacast.workflow.diffusion.radar_run`), which runs the same
comparison into a resumable run folder (preset ``latent-radar`` = this script's defaults).

    python benchmarks/latent_diffusion_vs_letkf.py                       # 3 seeds
    python benchmarks/latent_diffusion_vs_letkf.py --prior-dir runs/latent --json docs/latent_diffusion_da.json
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, replace
from pathlib import Path

from rich.console import Console

from dacast.workflow.diffusion.output import machine_info
from dacast.workflow.diffusion.radar_config import RadarDiffusionConfig, default_bda
from dacast.workflow.diffusion.radar_output import FILTER_FILE, LABELS, filter_rows, results_table
from dacast.workflow.diffusion.radar_run import compare_filters, latent_filter
from dacast.workflow.runtime import cpu_threads
from dacast.workflow.schema import ConfigError

#: The application's names of the per-seed scores -> this script's JSON keys.
_KEYS = {"forecast_ts30": "forecast_ts30_30min"}


def _config(args: argparse.Namespace) -> RadarDiffusionConfig:
    """The application's configuration of these options (`ConfigError` for values it refuses)."""
    base = RadarDiffusionConfig()
    changes = {"steps": args.sampler_steps, "cg_iterations": args.cg, "gamma": args.gamma,
               "transport": args.transport or None}  # fmt: skip
    sampler = replace(base.sampler, **{k: v for k, v in changes.items() if v is not None})
    keep = min(base.keep_members, args.members)  # collect_samples keeps at most the members there are
    return RadarDiffusionConfig(
        name="benchmark",
        bda=replace(default_bda(), members=args.members, cycles=args.cycles),
        seeds=tuple(range(args.seeds)),
        skip=args.skip,
        train_seeds=args.train_seeds,
        train_cycles=args.train_cycles,
        train_seed=args.train_seed,
        keep_members=keep,
        members_per_sample=min(base.members_per_sample, keep),
        sampler=sampler,
        inflation=args.inflation,
        threads=args.threads,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3, help="verification seeds 0..N-1")
    ap.add_argument("--cycles", type=int, default=20)
    ap.add_argument("--skip", type=int, default=5, help="cycles left out of the means (spin-up)")
    ap.add_argument("--members", type=int, default=50)
    ap.add_argument("--train-seeds", type=int, default=12)
    ap.add_argument("--train-cycles", type=int, default=30)
    ap.add_argument("--train-seed", type=int, default=1000, help="first training seed")
    ap.add_argument("--prior-dir", default=None, help="read the training samples and filter here, or write them")
    ap.add_argument("--sampler-steps", type=int, default=None)
    ap.add_argument("--cg", type=int, default=None, help="conjugate-gradient iterations of the likelihood")
    ap.add_argument("--gamma", type=float, default=None)
    ap.add_argument("--inflation", type=float, default=1.0)
    ap.add_argument("--transport", action="store_true", help="move the forecast members to the posterior")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if args.seeds < 1 or not 0 <= args.skip < args.cycles:
        ap.error("--seeds must be >= 1 and --skip in [0, --cycles)")
    try:
        config = _config(args)
    except (ConfigError, ValueError) as err:
        ap.error(str(err))
    console = Console(width=150)
    folder = Path(args.prior_dir) if args.prior_dir else None
    path = folder / FILTER_FILE if folder else None
    cache = folder / f"samples-{args.train_seeds}x{args.train_cycles}.pt" if folder else None
    with cpu_threads(config.threads):
        filt, record = latent_filter(config, read=[path] if path else [], write=path, samples_cache=cache,
                                     progress=True, say=console.print)  # fmt: skip
        results = compare_filters(config, filt, progress=True, say=console.print)
    rows = filter_rows(config, results)
    console.print(results_table(config, rows, record))
    if args.json:
        # one row per (filter, seed) under the keys this script has always written (bda-small forecasts 30 min)
        per_seed = [{"filter": LABELS[r["filter"]], **{_KEYS.get(k, k): v for k, v in s.items()}}
                    for r in rows for s in r["seeds"]]  # fmt: skip
        meta = {**machine_info(), "args": vars(args), "sampler": asdict(config.sampler), "record": record}
        Path(args.json).write_text(json.dumps({"rows": per_seed, "means": rows, "meta": meta}, indent=2,
                                              default=str) + "\n")  # fmt: skip


if __name__ == "__main__":
    main()
