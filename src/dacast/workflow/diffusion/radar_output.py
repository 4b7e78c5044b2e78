"""Outputs of a latent-filter run on the radar twin: ``latent_run.nc`` (CF-1.10), ``summary.json``, table, plots.

Headline scores, per filter (the gridded LETKF and the latent diffusion filter): the
analysis RMSE of the rain and of the fluid height, the rain spread/RMSE and the threat
score at 30 dBZ of the analysis mean (means over the cycles after ``skip``), the threat
score of the extended forecasts at their last lead, and the seconds per analysis; their
means over the seeds whose run did not diverge; and the latent/LETKF ratios. The same rows
make the printed table (`results_table`), for ``dacast diffusion radar run`` and
``benchmarks/latent_diffusion_vs_letkf.py`` alike.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from rich.table import Table

from dacast.workflow.bda.forecast import LEAD_STEP_SECONDS, THRESHOLD_DBZ
from dacast.workflow.diffusion.output import machine_info, mean_finite
from dacast.workflow.diffusion.radar import TwinScores
from dacast.workflow.diffusion.radar_config import LATENT_FILTERS, RadarDiffusionConfig, radar_config_to_dict
from dacast.workflow.files import atomic_write, cf_attributes, write_json

#: The per-seed scores averaged into a row, in table order.
COLUMNS = ("rain_rmse", "rain_spread_ratio", "h_rmse", "ts30", "forecast_ts30", "seconds_per_analysis")
#: How the table names each filter.
LABELS = {"letkf": "letkf", "latent": "latent-diffusion"}
#: The file of the latent filter in a run folder (and its ``.json`` card).
FILTER_FILE = "latent-filter.pt"


@dataclass(frozen=True)
class FilterRun:
    """One filter on one verification seed.

    Attributes:
        scores: per-cycle scores (`TwinScores`; NaN from a divergence or collapse on).
        seconds: wall time of the whole run (spin-up, cycles, forecasts; s).
    """

    scores: TwinScores
    seconds: float


#: ``(filter, seed) -> FilterRun``: the scores of a comparison.
Results = dict[tuple[str, int], FilterRun]


def seed_scores(run: FilterRun, skip: int, seed: int) -> dict[str, Any]:
    """One run's means after ``skip`` (`TwinScores.summary`), its forecast TS at the last lead, divergence, seed."""
    ts = run.scores.forecast_ts30.get("forecast", [])
    return {"seed": seed, **run.scores.summary(skip), "forecast_ts30": float(ts[-1]) if ts else float("nan"),
            "diverged": run.scores.diverged_cycle > 0, "diverged_cycle": run.scores.diverged_cycle,
            "reason": run.scores.reason, "run_seconds": run.seconds}  # fmt: skip


def filter_rows(config: RadarDiffusionConfig, results: Results) -> list[dict[str, Any]]:
    """One row per filter: ``filter``, ``seeds`` (per-seed scores), the means of `COLUMNS` over the seeds
    whose value is finite, and ``diverged`` (how many seeds' runs diverged or collapsed)."""
    rows = []
    for method in LATENT_FILTERS:
        per_seed = [seed_scores(results[(method, s)], config.skip, s) for s in config.seeds]
        row: dict[str, Any] = {"filter": method, "seeds": per_seed}
        row |= {key: mean_finite([s[key] for s in per_seed]) for key in COLUMNS}
        row["diverged"] = sum(s["diverged"] for s in per_seed)
        rows.append(row)
    return rows


def _ratio(a: float, b: float) -> float:
    return a / b if np.isfinite(a) and np.isfinite(b) and b != 0 else float("nan")


def results_table(config: RadarDiffusionConfig, rows: list[dict[str, Any]], training: dict[str, Any]) -> Table:
    """The table of ``rows``: scores per filter, divergences, latent/LETKF ratios; the training cost as caption."""
    bda = config.bda
    table = Table(title=f"latent diffusion filter vs gridded LETKF: {bda.grid}x{bda.grid} radar twin, "
                        f"{bda.members} members, {bda.cycles} cycles (scores after {config.skip}), "
                        f"mean of {len(config.seeds)} seed(s)")  # fmt: skip
    table.add_column("filter", min_width=16, no_wrap=True)
    lead = f"TS +{bda.forecast_minutes:g} min"
    headers = ("rain RMSE", "spread/RMSE", "h RMSE (m)", "TS 30 dBZ", lead, "s / analysis", "diverged")
    for col, width in zip(headers, (8, 4, 6, 5, 5, 4, 3), strict=True):  # numbers stay whole in 80 columns
        table.add_column(col, justify="right", min_width=width)
    by = {r["filter"]: r for r in rows}
    for r in rows:
        table.add_row(LABELS[r["filter"]], f"{r['rain_rmse']:.3g}", f"{r['rain_spread_ratio']:.2f}",
                      f"{r['h_rmse']:.4f}", f"{r['ts30']:.3f}", f"{r['forecast_ts30']:.3f}",
                      f"{r['seconds_per_analysis']:.2f}", f"{r['diverged']}/{len(r['seeds'])}")  # fmt: skip
    a, b = by["latent"], by["letkf"]
    table.add_row("ratio", f"{_ratio(a['rain_rmse'], b['rain_rmse']):.2f}", "",
                  f"{_ratio(a['h_rmse'], b['h_rmse']):.2f}", f"{_ratio(a['ts30'], b['ts30']):.2f}",
                  f"{_ratio(a['forecast_ts30'], b['forecast_ts30']):.2f}",
                  f"{_ratio(a['seconds_per_analysis'], b['seconds_per_analysis']):.0f}", "")  # fmt: skip
    cost = training_seconds(training)
    samples = training.get("data_samples", "?")
    table.caption = (f"training once: LETKF runs {cost['letkf_runs']:.0f} s ({samples} cycles), "
                     f"autoencoder {cost['autoencoder']:.0f} s, latent prior {cost['prior']:.0f} s")  # fmt: skip
    return table


def training_seconds(training: dict[str, Any]) -> dict[str, float]:
    """Seconds of the training's gridded-LETKF runs, autoencoder and latent prior (NaN where not recorded)."""
    nan = float("nan")
    return {"letkf_runs": float(training.get("data_seconds", nan)),
            "autoencoder": float(training.get("autoencoder", {}).get("seconds", nan)),
            "prior": float(training.get("prior", {}).get("seconds", nan))}  # fmt: skip


def latent_summary(
    config: RadarDiffusionConfig, rows: list[dict[str, Any]], training: dict[str, Any]
) -> dict[str, Any]:
    """The contents of ``summary.json`` (without the wall time): both filters' rows, the ratios latent/LETKF,
    the divergences, the filter's file and training record (with its seconds), the machine."""
    filters = {r["filter"]: {k: v for k, v in r.items() if k != "filter"} for r in rows}
    divergences = [
        {"filter": m, "seed": s["seed"], "cycle": s["diverged_cycle"], "reason": s["reason"]}
        for m in LATENT_FILTERS
        for s in filters[m]["seeds"]
        if s["diverged"]
    ]
    ratios = {key: _ratio(filters["latent"][key], filters["letkf"][key]) for key in COLUMNS}
    bda = config.bda
    return {"name": config.name, "filters": filters, "ratios": ratios, "divergences": divergences,
            "training": training, "training_seconds": training_seconds(training), "filter_file": FILTER_FILE,
            "seeds": list(config.seeds), "cycles": bda.cycles, "skip": config.skip, "members": bda.members,
            "grid": bda.grid, "forecast_minutes": bda.forecast_minutes, "threshold_dbz": THRESHOLD_DBZ,
            "sampler": asdict(config.sampler), "config": radar_config_to_dict(config),
            "meta": machine_info()}  # fmt: skip


def _lead_minutes(config: RadarDiffusionConfig) -> np.ndarray:
    n = round(config.bda.forecast_minutes * 60.0 / LEAD_STEP_SECONDS) + 1
    return np.arange(n) * LEAD_STEP_SECONDS / 60.0


def _by_lead(scores: TwinScores, key: str, n: int) -> np.ndarray:
    out = np.full(n, np.nan)
    values = np.asarray(scores.forecast_ts30.get(key, []), dtype=float)[:n]
    out[: values.size] = values
    return out


def _variables(config: RadarDiffusionConfig, results: Results, n_leads: int) -> dict[str, Any]:
    def stack(get: Any) -> np.ndarray:
        return np.array([[get(results[(m, s)]) for s in config.seeds] for m in LATENT_FILTERS])

    dims, dims_c, dims_l = ("filter", "seed"), ("filter", "seed", "cycle"), ("filter", "seed", "lead")
    after = "(NaN from the cycle a run diverged or collapsed)"
    out: dict[str, Any] = {}
    for key, units, name in (("rain_rmse", "1", "analysis RMSE of the rain r"),
                             ("rain_spread", "1", "analysis RMS spread of the rain r"),
                             ("h_rmse", "m", "analysis RMSE of the fluid height h"),
                             ("ts30", "1", f"threat score at {THRESHOLD_DBZ:g} dBZ of the analysis mean")):  # fmt: skip
        out[key] = (dims_c, stack(lambda r, k=key: getattr(r.scores, k).numpy()), {"units": units,
                    "long_name": f"{name} {after}"})  # fmt: skip
    for key, name in (("forecast", "the ensemble-mean forecast"), ("persistence", "persistence of the observed field"),
                      ("ensemble_prob", "the ensemble probability > 0.5")):  # fmt: skip
        out[f"{key}_ts30"] = (dims_l, stack(lambda r, k=key: _by_lead(r.scores, k, n_leads)), {"units": "1",
                              "long_name": f"threat score at {THRESHOLD_DBZ:g} dBZ of {name} by lead, pooled over "
                              "the run's extended forecasts"})  # fmt: skip
    out["seconds_per_analysis"] = (dims, stack(lambda r: r.scores.analysis_seconds),
                                   {"units": "s", "long_name": "mean wall time of one analysis"})  # fmt: skip
    out["run_seconds"] = (dims, stack(lambda r: r.seconds), {"units": "s", "long_name": "wall time of the run"})
    out["diverged_cycle"] = (dims, stack(lambda r: r.scores.diverged_cycle).astype(np.int64),
                             {"units": "1", "long_name": "1-based cycle at which the run diverged or its "
                              "ensemble collapsed (0: never)"})  # fmt: skip
    out["diverged_reason"] = (dims, stack(lambda r: r.scores.reason).astype(str), {"long_name": "why the run stopped"})
    out["filter_name"] = ("filter", np.array(LATENT_FILTERS), {"long_name": "filter (letkf, latent)"})
    return out


def latent_dataset(config: RadarDiffusionConfig, results: Results) -> xr.Dataset:
    """``latent_run.nc``: per-cycle scores ``(filter, seed, cycle)``, forecast threat scores ``(filter, seed,
    lead)``, times and divergences ``(filter, seed)``."""
    leads = _lead_minutes(config)
    coords = {
        "filter": ("filter", np.arange(len(LATENT_FILTERS)), {"units": "1", "long_name": "filter index"}),
        "seed": ("seed", np.array(config.seeds), {"units": "1", "long_name": "seed of truth, radar and ensemble"}),
        "cycle": (
            "cycle",
            np.arange(1, config.bda.cycles + 1),
            {"units": "1", "long_name": f"analysis cycle (1-based, one every {config.bda.cycle_seconds:g} s)"},
        ),
        "lead": (
            "lead",
            leads,
            {"units": "min", "standard_name": "forecast_period", "long_name": "lead time of the extended forecasts"},
        ),
    }
    ds = xr.Dataset(_variables(config, results, leads.size), coords=coords)
    ds.attrs = cf_attributes(
        "dacast latent diffusion filter vs gridded LETKF on the radar twin (Wursch-Craig, radar volumes)",
        "dacast diffusion radar run",
        radar_config_to_dict(config),
    )
    ds.attrs["skip"] = config.skip
    return ds


def write_latent_outputs(
    config: RadarDiffusionConfig,
    results: Results,
    training: dict[str, Any],
    out: Path,
    *,
    wall_time_s: float,
    plots: bool = True,
) -> tuple[dict[str, Path], dict[str, Any], list[dict[str, Any]]]:
    """Write ``latent_run.nc``, ``summary.json`` and (``plots``) ``rain_rmse_time.png``; return their paths,
    the summary and the table rows (`filter_rows`)."""
    paths = {"dataset": out / "latent_run.nc", "summary": out / "summary.json"}
    ds = latent_dataset(config, results)
    atomic_write(paths["dataset"], lambda tmp: ds.to_netcdf(tmp))
    rows = filter_rows(config, results)
    summary = latent_summary(config, rows, training)
    summary["wall_time_s"] = wall_time_s  # this session (a resumed run reuses the filter and finished runs)
    write_json(paths["summary"], summary)
    if plots:
        from dacast.workflow.diffusion.radar_plots import plot_rain_time

        paths["rain_rmse_time"] = plot_rain_time(ds, config, out / "rain_rmse_time.png")
    return paths, summary, rows


__all__ = [
    "COLUMNS",
    "FILTER_FILE",
    "LABELS",
    "FilterRun",
    "Results",
    "filter_rows",
    "latent_dataset",
    "latent_summary",
    "results_table",
    "seed_scores",
    "training_seconds",
    "write_latent_outputs",
]
