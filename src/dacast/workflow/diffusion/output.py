"""Outputs of a diffusion-filter run: ``diffusion_run.nc`` (CF-1.10), ``summary.json``, the table and the plots.

Headline scores, per network and filter: the analysis RMSE, spread/RMSE and CRPS
(means over the 40 variables and over the cycles after ``skip``) and the seconds per
analysis of each seed; their means over the seeds whose run did not diverge; and the
diffusion/LETKF ratios. The same rows make the printed table (`results_table`), for
``dacast diffusion run`` and ``benchmarks/diffusion_vs_letkf.py`` alike.
"""

from __future__ import annotations

import math
import platform
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr
from rich.table import Table

import dacast
from dacast.workflow.diffusion.config import FILTERS, DiffusionConfig, diffusion_config_to_dict
from dacast.workflow.diffusion.experiment import RunStats
from dacast.workflow.diffusion.priors import prior_name
from dacast.workflow.files import atomic_write, cf_attributes, write_json

#: ``(network, seed) -> filter -> RunStats``: the scores of a comparison.
Results = dict[tuple[str, int], dict[str, RunStats]]
#: The per-seed scores averaged into a row, in table order.
MEANS = ("rmse", "spread_ratio", "crps", "seconds_per_analysis")


def mean_finite(values: list[float]) -> float:
    """Mean of the finite ``values`` (a diverged run's NaN is left out); NaN when none is finite."""
    kept = [v for v in values if math.isfinite(v)]
    return sum(kept) / len(kept) if kept else math.nan


def seed_scores(stats: RunStats, skip: int, seed: int) -> dict[str, Any]:
    """One run's means after ``skip`` (`RunStats.summary`), whether and where it diverged, and its seed."""
    return {**stats.summary(skip), "diverged": stats.diverged_cycle >= 0, "reason": stats.reason, "seed": seed,
            "diverged_cycle": stats.diverged_cycle}  # fmt: skip


def filter_rows(config: DiffusionConfig, results: Results) -> list[dict[str, Any]]:
    """One row per (network, filter): ``network``, ``method``, ``seeds`` (per-seed scores), the means of `MEANS`
    over seeds and ``diverged`` (the number of seeds whose run diverged)."""
    rows = []
    for network in config.networks:
        for method in FILTERS:
            per_seed = [seed_scores(results[(network, s)][method], config.skip, s) for s in config.seeds]
            row: dict[str, Any] = {"network": network, "method": method, "seeds": per_seed}
            row |= {key: mean_finite([s[key] for s in per_seed]) for key in MEANS}
            row["diverged"] = sum(s["diverged"] for s in per_seed)
            rows.append(row)
    return rows


def rank_frequencies(config: DiffusionConfig, results: Results) -> dict[tuple[str, str], list[float]]:
    """``(network, filter) -> `` relative frequency of the truth's rank among the members ``(members + 1,)``,
    over variables, cycles after ``skip`` and seeds."""
    out = {}
    for network in config.networks:
        for method in FILTERS:
            counts = torch.stack([results[(network, s)][method].rank_counts for s in config.seeds]).sum(0)
            out[(network, method)] = (counts / counts.sum().clamp_min(1)).tolist()
    return out


def _ratio(a: float, b: float) -> float:
    return a / b if math.isfinite(a) and math.isfinite(b) and b != 0 else math.nan


def results_table(config: DiffusionConfig, rows: list[dict[str, Any]]) -> Table:
    """The table of ``rows``: scores per (network, filter), divergences and the diffusion/LETKF ratios."""
    table = Table(title=f"Lorenz-96 40, F=8, dt=0.05, {config.members} members, {config.cycles} cycles "
                        f"(scores after {config.skip}), {len(config.seeds)} seeds")  # fmt: skip
    columns = ("network", "method", "RMSE", "spread/RMSE", "CRPS", "s/analysis", "diverged", "RMSE ratio", "CRPS ratio")
    for col in columns:  # the labels stay whole in a narrow terminal; the headers of numbers wrap
        label = col in ("network", "method")
        table.add_column(col, justify="left" if label else "right", min_width=9 if label else None)
    by = {(r["network"], r["method"]): r for r in rows}
    for r in rows:
        base = by[(r["network"], "letkf")]
        ratio = r["method"] != "letkf"
        table.add_row(
            r["network"], r["method"], f"{r['rmse']:.4f}", f"{r['spread_ratio']:.2f}", f"{r['crps']:.4f}",
            f"{r['seconds_per_analysis']:.4f}", f"{r['diverged']}/{len(r['seeds'])}",
            f"{r['rmse'] / base['rmse']:.3f}" if ratio else "", f"{r['crps'] / base['crps']:.3f}" if ratio else "",
        )  # fmt: skip
    return table


def machine_info() -> dict[str, Any]:
    """The processor, torch's CPU threads and the versions (where a time per analysis was measured)."""
    return {"machine": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
            "python": platform.python_version(), "torch": torch.__version__, "dacast": dacast.__version__}  # fmt: skip


def diffusion_summary(
    config: DiffusionConfig, results: Results, rows: list[dict[str, Any]], training: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """The contents of ``summary.json`` (without the wall time): per network both filters' rows, the ratios
    diffusion/LETKF, the divergences, the prior's file and training record; the rank frequencies; the machine."""
    by = {(r["network"], r["method"]): r for r in rows}
    networks: dict[str, Any] = {}
    for network in config.networks:
        entry: dict[str, Any] = {m: {k: v for k, v in by[(network, m)].items() if k != "network"} for m in FILTERS}
        entry["ratios"] = {key: _ratio(entry["diffusion"][key], entry["letkf"][key]) for key in MEANS}
        entry["divergences"] = [
            {"filter": m, "seed": s["seed"], "cycle": s["diverged_cycle"], "reason": s["reason"]}
            for m in FILTERS
            for s in entry[m]["seeds"]
            if s["diverged"]
        ]
        entry["prior"] = training.get(network, {})
        entry["prior_file"] = f"priors/{prior_name(network, config.iterations)}"
        networks[network] = entry
    ranks = {f"{n}/{m}": freq for (n, m), freq in rank_frequencies(config, results).items()}
    return {"name": config.name, "networks": networks, "ranks": ranks, "seeds": list(config.seeds),
            "cycles": config.cycles, "skip": config.skip, "members": config.members,
            "sampler": asdict(config.sampler.build()), "config": diffusion_config_to_dict(config),
            "meta": machine_info()}  # fmt: skip


def _dataset(config: DiffusionConfig, results: Results) -> xr.Dataset:
    nets, seeds = list(config.networks), list(config.seeds)

    def stack(get: Any) -> np.ndarray:
        return np.array([[[get(results[(n, s)][m]) for m in FILTERS] for s in seeds] for n in nets])

    dims, dims_c = ("network", "seed", "filter"), ("network", "seed", "filter", "cycle")
    where = "over the 40 variables (NaN from the cycle a run diverged)"
    variables: dict[str, Any] = {
        "rmse": (dims_c, stack(lambda r: r.rmse.numpy()), {"units": "1", "long_name": f"analysis RMSE {where}"}),
        "spread": (
            dims_c,
            stack(lambda r: r.spread.numpy()),
            {"units": "1", "long_name": f"analysis RMS spread {where}"},
        ),
        "crps": (dims_c, stack(lambda r: r.crps.numpy()), {"units": "1", "long_name": f"analysis CRPS, mean {where}"}),
        "rank_counts": (
            (*dims, "rank"),
            stack(lambda r: r.rank_counts.numpy()),
            {
                "units": "1",
                "long_name": f"rank of the truth among the analysis members: count over the variables "
                f"and the cycles after {config.skip}",
            },
        ),  # fmt: skip
        "diverged_cycle": (
            dims,
            stack(lambda r: r.diverged_cycle).astype(np.int64),
            {"units": "1", "long_name": "cycle at which the run diverged (-1: never)"},
        ),
        "seconds_per_analysis": (
            dims,
            stack(lambda r: r.summary(config.skip)["seconds_per_analysis"]),
            {"units": "s", "long_name": "wall time per analysis"},
        ),
        "diverged_reason": (dims, stack(lambda r: r.reason).astype(str), {"long_name": "why the run diverged"}),
        "network_name": ("network", np.array(nets), {"long_name": "observation network"}),
        "filter_name": ("filter", np.array(FILTERS), {"long_name": "filter (letkf, diffusion)"}),
    }
    coords = {
        "network": ("network", np.arange(len(nets)), {"units": "1", "long_name": "observation network index"}),
        "seed": ("seed", np.array(seeds), {"units": "1", "long_name": "seed of truth, observations and ensemble"}),
        "filter": ("filter", np.arange(len(FILTERS)), {"units": "1", "long_name": "filter index"}),
        "cycle": (
            "cycle",
            np.arange(config.cycles),
            {"units": "1", "long_name": "analysis cycle (one every dt = 0.05)"},
        ),
        "rank": ("rank", np.arange(config.members + 1), {"units": "1", "long_name": "members below the truth"}),
    }
    ds = xr.Dataset(variables, coords=coords)
    ds.attrs = cf_attributes(
        "dacast diffusion filter vs LETKF on Lorenz-96 (40 variables, F = 8)",
        "dacast diffusion run",
        diffusion_config_to_dict(config),
    )
    ds.attrs["skip"] = config.skip
    return ds


def write_diffusion_outputs(
    config: DiffusionConfig,
    results: Results,
    training: dict[str, dict[str, Any]],
    out: Path,
    *,
    wall_time_s: float,
    plots: bool = True,
) -> tuple[dict[str, Path], dict[str, Any], list[dict[str, Any]]]:
    """Write ``diffusion_run.nc``, ``summary.json`` and (``plots``) the figures; return their paths, the summary
    and the table rows (`filter_rows`)."""
    paths = {"dataset": out / "diffusion_run.nc", "summary": out / "summary.json"}
    ds = _dataset(config, results)
    atomic_write(paths["dataset"], lambda tmp: ds.to_netcdf(tmp))
    rows = filter_rows(config, results)
    summary = diffusion_summary(config, results, rows, training)
    summary["wall_time_s"] = wall_time_s  # this session (a resumed run reuses saved priors and results)
    write_json(paths["summary"], summary)
    if plots:
        from dacast.workflow.diffusion.plots import plot_diffusion_run

        paths |= plot_diffusion_run(ds, config, out)
    return paths, summary, rows


__all__ = [
    "MEANS",
    "Results",
    "diffusion_summary",
    "filter_rows",
    "machine_info",
    "mean_finite",
    "rank_frequencies",
    "results_table",
    "seed_scores",
    "write_diffusion_outputs",
]
