"""The diffusion application: configuration, presets, a tiny run end to end, resume, priors read from a folder."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr

from dacast.workflow.diffusion.config import (
    DIFFUSION_PRESET_REGISTRY,
    DIFFUSION_PRESETS,
    DiffusionConfig,
    EnsembleSpec,
    SamplerSpec,
    TrainingSpec,
    diffusion_config_from_dict,
    diffusion_config_to_dict,
    load_diffusion_target,
)
from dacast.workflow.diffusion.run import DiffusionRun, run_diffusion
from dacast.workflow.files import INCOMPLETE
from dacast.workflow.schema import ConfigError

#: 8 members, 16 cycles, 2 seeds; a 8-channel x 2-layer prior trained 100 steps on one LETKF run of 100 cycles.
TINY = DiffusionConfig(
    name="tiny",
    networks=("all",),
    seeds=(1, 2),
    members=8,
    cycles=16,
    skip=4,
    sampler=SamplerSpec(steps=8),
    training=TrainingSpec(runs=1, cycles=100, steps=100, batch_size=32, channels=8, layers=2, kernel=3),
    threads=1,
)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> DiffusionRun:
    return run_diffusion(TINY, tmp_path_factory.mktemp("diffusion") / "run", plots=True)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"networks": ["all", "nope"]}, "unknown network 'nope' in networks; choose from all, every4, arctan"),
        ({"networks": ["all", "all"]}, "networks must not repeat"),
        ({"networks": []}, "at least one observation network"),
        ({"seeds": [1, 1]}, "seeds must not repeat"),
        ({"skip": 16}, "skip must lie in [0, cycles)"),
        ({"members": 1}, "members must lie in [2, 10000]"),
        ({"inflation": 0.0}, "inflation must lie in (0, 100]"),
        ({"sampler": {"covariance": "diagonal"}}, "sampler.covariance must be one of isotropic, jacobian"),
        ({"sampler": {"steps": 0}}, "sampler.steps must lie in [1, 1000]"),
        ({"sampler": {"transport": "yes"}}, "sampler.transport must be true or false"),
        ({"ensemble": {"weight": 1.5}}, "ensemble.weight must lie in [0, 1], got 1.5"),
        ({"ensemble": {"scale": 0}}, "ensemble.scale must lie in (0, 10], got 0"),
        ({"training": {"batch_size": 200}}, "fewer than training.batch_size 200"),
        ({"training": {"kernel": 4}}, "training.kernel must be odd"),
        ({"iterations": -1}, "iterations must lie in [0, 100]"),
        ({"cycles": "many"}, "cycles must be an integer, got 'many'"),
        ({"sampler": {"stepz": 3}}, "unknown key 'stepz' in sampler"),
    ],
)
def test_invalid_settings_are_one_line_config_errors(change: dict[str, Any], message: str) -> None:
    data = json.loads(json.dumps(diffusion_config_to_dict(TINY)))
    for key, value in change.items():
        data[key] = {**data[key], **value} if isinstance(value, dict) else value
    with pytest.raises(ConfigError) as err:
        diffusion_config_from_dict(data)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_the_presets_and_their_overrides() -> None:
    assert list(DIFFUSION_PRESET_REGISTRY) == [
        "diffusion-l96",
        "diffusion-l96-iterated",
        "diffusion-l96-transport",
        "diffusion-l96-hybrid",
        "diffusion-quick",
    ]
    full, iterated, moved, hybrid, quick = DIFFUSION_PRESETS.values()
    assert full.networks == ("all", "every4", "arctan") and full.seeds == (3000, 3001, 3002)
    assert (full.cycles, full.skip, full.members, full.training.steps, full.sampler.steps) == (400, 100, 20, 3000, 16)
    assert iterated.networks == ("all",) and (iterated.iterations, iterated.iteration_runs) == (1, 2)
    assert moved.sampler.transport and not full.sampler.transport
    sampler = dataclasses.replace(full.sampler, transport=True)
    assert moved == dataclasses.replace(full, name=moved.name, sampler=sampler)
    assert hybrid == dataclasses.replace(moved, name=hybrid.name, ensemble=EnsembleSpec(weight=0.5, scale=0.7))
    assert full.ensemble.build(full.twin()) is None  # weight 0: the learned prior alone, as before
    assert quick.networks == ("all",) and len(quick.seeds) == 1 and quick.training.steps <= 500
    for config in DIFFUSION_PRESETS.values():  # every preset reads back from its dictionary
        assert diffusion_config_from_dict(json.loads(json.dumps(diffusion_config_to_dict(config)))) == config
    with pytest.raises(ConfigError, match="unknown diffusion preset 'nope'; choose one of: diffusion-l96"):
        load_diffusion_target("nope")
    config = load_diffusion_target("diffusion-quick", cycles=30, seeds=[5, 6], prior_dir="somewhere")
    assert (config.cycles, config.seeds, config.prior_dir) == (30, (5, 6), Path("somewhere"))
    with pytest.raises(ConfigError, match="skip must lie in"):
        load_diffusion_target("diffusion-quick", cycles=10)
    merged = diffusion_config_from_dict({"preset": "diffusion-quick", "training": {"steps": 7}})
    assert merged.training == dataclasses.replace(quick.training, steps=7)


def _without_times(obj: Any) -> Any:
    """``obj`` without the wall times (they differ between sessions)."""
    if isinstance(obj, dict):
        return {k: _without_times(v) for k, v in obj.items() if "seconds" not in k and k != "wall_time_s"}
    if isinstance(obj, list):
        return [_without_times(v) for v in obj]
    return obj


def test_a_tiny_run_writes_everything_and_resumes_to_the_same_scores(tiny_run: DiffusionRun) -> None:
    out = tiny_run.out_dir
    for name in ("diffusion_run.nc", "summary.json", "state.json", "rmse_time.png", "rank_histograms.png"):
        assert (out / name).is_file(), name
    for name in ("priors/prior-all.pt", "priors/prior-all.json", "results/all_seed1.npz", "results/all_seed2.npz"):
        assert (out / name).is_file(), name
    assert not (out / INCOMPLETE).exists()
    summary = json.loads((out / "summary.json").read_text())
    assert {"networks", "ranks", "meta", "config", "sampler", "wall_time_s"} <= set(summary)
    entry = summary["networks"]["all"]
    assert {"letkf", "diffusion", "ratios", "divergences", "prior"} <= set(entry)
    assert set(entry["ratios"]) == {"rmse", "spread_ratio", "crps", "seconds_per_analysis"}
    assert [s["seed"] for s in entry["letkf"]["seeds"]] == [1, 2] and entry["letkf"]["diverged"] == 0
    assert entry["prior"]["samples"]["train"] == 90 and "validation_loss" in entry["prior"]
    assert {"machine", "threads"} <= set(summary["meta"])
    with xr.open_dataset(out / "diffusion_run.nc") as ds:
        assert ds["rmse"].dims == ("network", "seed", "filter", "cycle") and ds.sizes["cycle"] == 16
        assert ds["rank_counts"].sizes["rank"] == 9 and ds.attrs["Conventions"] == "CF-1.10"
        assert list(ds["filter_name"].values) == ["letkf", "diffusion"]
        first = ds["rmse"].values
    kept = (out / "results/all_seed1.npz").stat().st_mtime_ns
    (out / "results/all_seed2.npz").unlink()
    again = run_diffusion(TINY, out, resume=True, plots=False)
    assert (out / "results/all_seed1.npz").stat().st_mtime_ns == kept  # read back, not rerun
    assert _without_times(again.summary) == _without_times(json.loads(json.dumps(summary)))
    with xr.open_dataset(out / "diffusion_run.nc") as ds:
        assert np.array_equal(ds["rmse"].values, first, equal_nan=True)
    with pytest.raises(ConfigError, match="pass --resume"):
        run_diffusion(TINY, out)
    with pytest.raises(ConfigError, match="other settings"):
        run_diffusion(dataclasses.replace(TINY, cycles=20), out, resume=True)
    # a run begun before a setting existed resumes with its default, and only with it
    state = json.loads((out / "state.json").read_text())
    del state["config"]["ensemble"]
    (out / "state.json").write_text(json.dumps(state))
    run_diffusion(TINY, out, resume=True, plots=False)
    with pytest.raises(ConfigError, match="other settings"):
        run_diffusion(dataclasses.replace(TINY, ensemble=EnsembleSpec(weight=0.5)), out, resume=True)


def test_priors_read_from_a_folder_retrained_once_and_a_divergence_is_a_result(
    tiny_run: DiffusionRun, tmp_path: Path
) -> None:
    config = dataclasses.replace(
        TINY, seeds=(1,), inflation=1e-6, iterations=1, iteration_runs=1, prior_dir=tiny_run.out_dir / "priors"
    )
    run = run_diffusion(config, tmp_path / "it", plots=False)
    card = json.loads((tmp_path / "it/priors/prior-all.json").read_text())
    assert card["copied_from"] == str(tiny_run.out_dir / "priors/prior-all.pt")  # the base prior was not retrained
    assert (tmp_path / "it/priors/prior-all-it1.pt").is_file()
    assert len(run.training["all"]["iterations"]) == 1
    # a millionth of the error scale collapses the diffusion ensemble: a recorded divergence, not an error
    (divergence,) = run.summary["networks"]["all"]["divergences"]
    assert divergence["filter"] == "diffusion" and divergence["cycle"] >= 0 and "collapsed" in divergence["reason"]
    with xr.open_dataset(tmp_path / "it/diffusion_run.nc") as ds:
        assert int(ds["diverged_cycle"].sel(filter=1).item()) == divergence["cycle"]
        assert int(ds["diverged_cycle"].sel(filter=0).item()) == -1


def test_a_prior_of_another_network_is_refused_before_anything_is_written(
    tiny_run: DiffusionRun, tmp_path: Path
) -> None:
    folder = tmp_path / "priors"
    folder.mkdir()
    for suffix in (".pt", ".json"):
        shutil.copy(tiny_run.out_dir / f"priors/prior-all{suffix}", folder / f"prior-every4{suffix}")
    config = dataclasses.replace(TINY, networks=("every4",), prior_dir=folder)
    with pytest.raises(ConfigError) as err:
        run_diffusion(config, tmp_path / "out")
    assert "trained on networks all, not on 'every4'" in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "out").exists()
    with pytest.raises(ConfigError, match="is not a folder"):
        run_diffusion(dataclasses.replace(config, prior_dir=tmp_path / "missing"), tmp_path / "out")
