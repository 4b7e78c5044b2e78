"""Outputs of a radiance run: ``radiance_run.nc`` (CF-1.10), ``summary.json`` and the plots.

Headline scores: for each experiment and seed, the analysis RMSE of T (K) and
q (g/kg) averaged over levels and over the cycles after ``spinup_cycles``; their
mean over seeds; and whether the paper's ordering physical < ML < CONV holds
with every gap larger than the spread over seeds (the larger of the two
experiments' max − min across seeds).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr

from dacast.models.column import ColumnAtmosphere
from dacast.obs.microwave import weighting_functions
from dacast.obs.satellite import PREDICTORS, amsua_true_bias
from dacast.workflow.files import atomic_write, cf_attributes, jsonable, write_text
from dacast.workflow.radiance.config import RadianceConfig, radiance_config_to_dict

#: The ordering of the paper, best first, as pairs (better, worse).
ORDERING = (("physical", "ml"), ("ml", "conv"))
#: What summary.json keeps of a learned operator's metadata.
NETWORK_KEYS = ("kind", "samples", "epochs_run", "seconds", "val_rmse_per_channel", "error_std_used")


def _seed_means(config: RadianceConfig, results: dict, experiment: str, key: str) -> list[float]:
    """Time and level mean of ``key`` after the spin-up per seed; NaN for a seed whose filter diverged."""
    s = config.spinup_cycles
    return [float(np.mean(results[(experiment, seed)][key][s:])) for seed in config.seeds]


def experiment_scores(config: RadianceConfig, results: dict) -> dict[str, dict[str, Any]]:
    """Per experiment: per-seed and mean analysis/background RMSE and spread of T and q after the spin-up."""
    out: dict[str, dict[str, Any]] = {}
    for e in config.experiments:
        entry: dict[str, Any] = {}
        for var in ("t", "q"):
            for kind in ("a", "b"):
                values = _seed_means(config, results, e, f"rmse_{var}_{kind}")
                entry[f"rmse_{var}_{kind}_seeds"] = values
                entry[f"rmse_{var}_{kind}"] = float(np.mean(values))
            entry[f"rmse_{var}_a_seed_range"] = float(np.ptp(entry[f"rmse_{var}_a_seeds"]))
            entry[f"spread_{var}_a"] = float(np.mean(_seed_means(config, results, e, f"spread_{var}_a")))
        s = config.spinup_cycles
        omb = {
            k: np.concatenate([results[(e, seed)][k][s:] for seed in config.seeds]) for k in ("omb_raw", "omb", "oma")
        }
        entry["departures"] = {
            str(ch): {
                f"{k}_{stat}": float(fn(v[..., i][np.isfinite(v[..., i])]))
                for k, v in omb.items()
                for stat, fn in (("mean", np.mean), ("std", np.std))
                if np.isfinite(v[..., i]).any()
            }
            for i, ch in enumerate(config.satellite.channels)
        }
        coef = results[(e, config.seeds[0])]["bias_coefficients"][-1]
        if np.isfinite(coef).all():
            entry["bias_coefficients_final"] = coef.tolist()
        diverged = [int(results[(e, seed)]["diverged_cycle"]) for seed in config.seeds]
        entry["diverged_cycles"] = diverged  # per seed, -1: never
        entry["diverged_reasons"] = [str(results[(e, seed)]["diverged_reason"]) for seed in config.seeds]
        entry["seconds_per_seed"] = float(np.mean([results[(e, seed)].get("seconds", np.nan) for seed in config.seeds]))
        entry["humidity_resets_per_cycle"] = float(
            np.mean([results[(e, seed)]["resets"].mean() for seed in config.seeds])
        )
        out[e] = entry
    return out


def ordering(config: RadianceConfig, scores: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Whether physical < ML < CONV holds in T and q RMSE, and whether each gap exceeds the seed spread."""
    out: dict[str, Any] = {}
    for better, worse in ORDERING:
        if better not in scores or worse not in scores:
            continue
        for var in ("t", "q"):
            a, b = scores[better], scores[worse]
            gap = b[f"rmse_{var}_a"] - a[f"rmse_{var}_a"]
            spread = max(a[f"rmse_{var}_a_seed_range"], b[f"rmse_{var}_a_seed_range"])
            paired = [y - x for x, y in zip(a[f"rmse_{var}_a_seeds"], b[f"rmse_{var}_a_seeds"], strict=True)]
            out[f"{better}<{worse}_{var}"] = {
                "gap": gap,
                "seed_spread": spread,
                "holds": gap > 0,
                "every_seed": all(d > 0 for d in paired),
                "gap_exceeds_spread": gap > spread,
            }
    return out


def _dataset(config: RadianceConfig, model: ColumnAtmosphere, results: dict) -> xr.Dataset:
    exps, seeds = list(config.experiments), list(config.seeds)

    def stack(key: str) -> np.ndarray:
        return np.stack([np.stack([results[(e, s)][key] for s in seeds]) for e in exps])

    dims_l = ("experiment", "seed", "cycle", "level")
    dims_o = ("experiment", "seed", "cycle", "fov", "channel")
    variables: dict[str, Any] = {}
    for var, units, name in (("t", "K", "air temperature"), ("q", "g kg-1", "specific humidity")):
        for kind, label in (("a", "analysis"), ("b", "background")):
            variables[f"rmse_{var}_{kind}"] = (
                dims_l,
                stack(f"rmse_{var}_{kind}"),
                {"units": units, "long_name": f"{label} RMSE of {name} over columns"},
            )
        variables[f"spread_{var}_a"] = (
            dims_l,
            stack(f"spread_{var}_a"),
            {"units": units, "long_name": f"analysis ensemble spread of {name} (RMS over columns)"},
        )
    for key, label in (("omb_raw", "O-B, uncorrected"), ("omb", "O-B, as assimilated"), ("oma", "O-A, as assimilated")):
        variables[key] = (dims_o, stack(key), {"units": "K", "long_name": f"brightness temperature {label}"})
    variables["diverged_cycle"] = (
        ("experiment", "seed"),
        np.array([[int(results[(e, s)]["diverged_cycle"]) for s in seeds] for e in exps]),
        {"units": "1", "long_name": "cycle at which the filter diverged (-1: never); later rows are NaN"},
    )
    variables["bias_coefficients"] = (
        ("experiment", "seed", "cycle", "channel", "predictor"),
        stack("bias_coefficients"),
        {"units": "K", "long_name": "VarBC coefficients after each cycle (NaN: no bias correction)"},
    )
    t, q = model.t_clim.T, model.q_clim.T
    wf = weighting_functions(t, q, model.pressure, torch.zeros(model.n_columns, dtype=torch.float64))
    variables["weighting_function"] = (
        ("channel", "level"),
        wf.mean(0).numpy(),
        {
            "units": "1",
            "long_name": "weighting function -d(transmittance to space)/d(ln p), climatological columns, nadir",
        },
    )
    variables["true_bias_coefficients"] = (
        ("channel", "predictor"),
        amsua_true_bias(config.satellite.channels).coefficients.numpy(),
        {"units": "K", "long_name": "bias coefficients of the simulated observations"},
    )
    variables["experiment_name"] = ("experiment", np.array(exps), {"long_name": "experiment (observing system)"})
    variables["predictor_name"] = ("predictor", np.array(PREDICTORS), {"long_name": "bias predictor"})
    coords = {
        "experiment": ("experiment", np.arange(len(exps)), {"units": "1", "long_name": "experiment index"}),
        "seed": ("seed", np.array(seeds), {"units": "1", "long_name": "seed of truth and observations"}),
        "cycle": ("cycle", np.arange(1, config.cycles + 1), {"units": "1", "long_name": "analysis time (6 h each)"}),
        "pressure": (
            "level",
            model.pressure.numpy(),
            {"units": "hPa", "standard_name": "air_pressure", "long_name": "pressure of the model level"},
        ),
        "level": ("level", np.arange(model.n_levels), {"units": "1", "long_name": "model level (0: bottom)"}),
        "fov": ("fov", np.arange(config.satellite.fovs), {"units": "1", "long_name": "AMSU-A field of view"}),
        "channel": ("channel", np.array(config.satellite.channels), {"units": "1", "long_name": "AMSU-A channel"}),
        "predictor": ("predictor", np.arange(len(PREDICTORS)), {"units": "1", "long_name": "bias predictor index"}),
    }
    ds = xr.Dataset(variables, coords=coords)
    ds.attrs = cf_attributes(
        "dacast radiance experiments (CONV vs AMSU-A physical vs learned operator)",
        "dacast obsop run",
        radiance_config_to_dict(config),
    )
    return ds


def write_radiance_outputs(
    config: RadianceConfig,
    model: ColumnAtmosphere,
    results: dict,
    networks: dict[str, dict[str, Any]],
    out: Path,
    *,
    wall_time_s: float,
    plots: bool = True,
) -> tuple[dict[str, Path], dict[str, Any]]:
    """Write ``radiance_run.nc``, ``summary.json`` and (``plots``) the figures; return their paths and the summary."""
    paths = {"dataset": out / "radiance_run.nc", "summary": out / "summary.json"}
    ds = _dataset(config, model, results)
    atomic_write(paths["dataset"], lambda tmp: ds.to_netcdf(tmp))
    scores = experiment_scores(config, results)
    summary = {
        "name": config.name,
        "experiments": scores,
        "ordering": ordering(config, scores),
        "networks": {k: {key: v[key] for key in NETWORK_KEYS if key in v} for k, v in networks.items()},
        "cycles": config.cycles,
        "spinup_cycles": config.spinup_cycles,
        "seeds": list(config.seeds),
        "wall_time_s": wall_time_s,  # this session (a resumed run reuses saved experiments and networks)
    }
    write_text(paths["summary"], json.dumps(jsonable(summary), indent=1) + "\n")
    if plots:
        from dacast.workflow.radiance.plots import plot_radiance_run

        paths |= plot_radiance_run(ds, config, out)
    return paths, summary


__all__ = ["ORDERING", "experiment_scores", "ordering", "write_radiance_outputs"]
