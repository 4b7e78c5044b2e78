"""The latent-filter application on the radar twin: configuration, presets, a tiny run end to end, resume, --filter."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr

from dacast.workflow.bda.config import get_bda_preset
from dacast.workflow.diffusion.radar import LatentSetup
from dacast.workflow.diffusion.radar_config import (
    RADAR_PRESET_REGISTRY,
    RADAR_PRESETS,
    default_bda,
    load_radar_target,
    radar_config_from_dict,
    radar_config_to_dict,
)
from dacast.workflow.diffusion.radar_output import FILTER_FILE
from dacast.workflow.diffusion.radar_run import LatentRun, run_latent
from dacast.workflow.files import INCOMPLETE
from dacast.workflow.schema import ConfigError

#: The quick preset on 6 members, 2 seeds x 3 cycles after a 20-minute spin-up (about 3 s on one core).
QUICK = RADAR_PRESETS["latent-radar-quick"]
TINY = dataclasses.replace(
    QUICK,
    name="tiny",
    bda=dataclasses.replace(
        QUICK.bda, members=6, spinup_minutes=20.0, ensemble_pool=4, forecast_every=0, forecast_minutes=2.0
    ),
    seeds=(1, 2),
    train_seed=11,
)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> LatentRun:
    return run_latent(TINY, tmp_path_factory.mktemp("latent") / "run", plots=True)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"seeds": [1, 1]}, "seeds must not repeat"),
        ({"seeds": [11]}, "seeds and the training seeds [train_seed, train_seed + train_seeds) share [11]"),
        ({"skip": 3}, "skip must lie in [0, bda.cycles) = [0, 3)"),
        ({"train_seeds": 0}, "train_seeds must lie in [1, 10000]"),
        ({"train_cycles": "many"}, "train_cycles must be an integer, got 'many'"),
        ({"keep_members": 7}, "keep_members must lie in [1, bda.members (6)]"),
        ({"members_per_sample": 3}, "members_per_sample must lie in [0, keep_members]"),
        ({"inflation": 0.0}, "inflation must lie in (0, 100]"),
        (
            {"sampler": {"covariance": "jacobian", "guidance": "score"}},
            "sampler.covariance must be isotropic with cg_iterations",
        ),
        ({"sampler": {"cg_iterations": 0}}, "a radar volume is too large for a Jacobian"),
        ({"sampler": {"stepz": 3}}, "unknown key 'stepz' in sampler"),
        ({"autoencoder": {"levels": 3}}, "autoencoder.levels must be 1 or 2"),
        ({"prior": {"kernel": 4}}, "prior.kernel must be odd"),
        ({"prior": {"val_fraction": 0.9}}, "prior: val_fraction must lie in (0, 0.5)"),
        ({"bda": {"grid": 33}}, "bda.grid (33) must be a multiple of 2^autoencoder.levels"),
        ({"bda": {"members": 1}}, "bda: members must be at least 2"),
        ({"bda": {"device": "cuda"}}, "bda.device must be cpu"),
        ({"bda": {"zzz": 1}}, "bda: unknown key 'zzz'"),
    ],
)
def test_invalid_settings_are_one_line_config_errors(change: dict[str, Any], message: str) -> None:
    data = json.loads(json.dumps(radar_config_to_dict(TINY)))
    for key, value in change.items():
        data[key] = {**data[key], **value} if isinstance(value, dict) else value
    with pytest.raises(ConfigError) as err:
        radar_config_from_dict(data)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_the_presets_their_yaml_form_and_overrides() -> None:
    assert list(RADAR_PRESET_REGISTRY) == ["latent-radar", "latent-radar-quick"]
    full, quick = RADAR_PRESETS.values()
    # the benchmark's defaults: bda-small on the CPU, 3 seeds x 20 cycles, 12 training runs x 30 cycles, LatentSetup()
    assert full.bda == dataclasses.replace(get_bda_preset("bda-small").config, device="cpu") == default_bda()
    assert (full.bda.members, full.bda.cycles, full.seeds, full.skip) == (50, 20, (0, 1, 2), 5)
    assert (full.train_seeds, full.train_cycles, full.train_seed, full.keep_members) == (12, 30, 1000, 8)
    assert full.setup() == LatentSetup()
    assert (quick.bda.grid, quick.bda.members, quick.bda.cycles, quick.seeds, quick.skip) == (32, 8, 3, (0,), 1)
    assert (quick.train_seeds, quick.train_cycles) == (1, 3)
    for config in RADAR_PRESETS.values():  # every preset reads back from its dictionary
        assert radar_config_from_dict(json.loads(json.dumps(radar_config_to_dict(config)))) == config
    with pytest.raises(ConfigError, match="unknown latent radar preset 'nope'; choose one of: latent-radar"):
        load_radar_target("nope")
    config = load_radar_target("latent-radar-quick", cycles=5, seeds=[3, 4], filter_file="somewhere.pt")
    assert (config.bda.cycles, config.seeds, config.filter_file) == (5, (3, 4), Path("somewhere.pt"))
    with pytest.raises(ConfigError, match="skip must lie in"):
        load_radar_target("latent-radar-quick", cycles=1)
    # a bda section overrides the preset's twin key by key, or starts from a BDA preset of its own
    merged = radar_config_from_dict({"preset": "latent-radar-quick", "bda": {"members": 10}, "prior": {"steps": 7}})
    assert merged.bda == dataclasses.replace(quick.bda, members=10) and merged.prior.steps == 7
    assert radar_config_from_dict({"preset": "latent-radar-quick", "bda": None}).bda == quick.bda
    own = radar_config_from_dict({"bda": {"preset": "bda-256", "device": "cpu"}, "sampler": {"steps": 3}})
    assert own.bda.grid == 256 and own.sampler == dataclasses.replace(LatentSetup().sampler, steps=3)


def _without_times(obj: Any) -> Any:
    """``obj`` without the wall times (they differ between sessions)."""
    if isinstance(obj, dict):
        return {k: _without_times(v) for k, v in obj.items() if "seconds" not in k and k != "wall_time_s"}
    if isinstance(obj, list):
        return [_without_times(v) for v in obj]
    return obj


def test_a_tiny_run_writes_everything_and_resumes_to_the_same_summary(tiny_run: LatentRun) -> None:
    out = tiny_run.out_dir
    for name in (
        "latent_run.nc",
        "summary.json",
        "state.json",
        "rain_rmse_time.png",
        FILTER_FILE,
        "latent-filter.json",
    ):
        assert (out / name).is_file(), name
    for name in ("letkf_seed1", "latent_seed1", "letkf_seed2", "latent_seed2"):
        assert (out / f"results/{name}.json").is_file(), name
    assert not (out / INCOMPLETE).exists() and [p.name for p in out.rglob("*.pt")] == [FILTER_FILE]  # no samples
    first = json.loads((out / "summary.json").read_text())
    assert {"filters", "ratios", "divergences", "training", "training_seconds", "meta", "config"} <= set(first)
    assert set(first["filters"]) == {"letkf", "latent"} and first["divergences"] == []
    assert [s["seed"] for s in first["filters"]["latent"]["seeds"]] == [1, 2]
    assert {"rain_rmse", "rain_spread_ratio", "h_rmse", "ts30", "forecast_ts30"} <= set(first["ratios"])
    assert set(first["training_seconds"]) == {"letkf_runs", "autoencoder", "prior"}
    assert first["training"]["data_samples"] == 3 and {"machine", "threads"} <= set(first["meta"])
    assert math.isfinite(first["filters"]["latent"]["rain_rmse"])
    with xr.open_dataset(out / "latent_run.nc") as ds:
        assert ds["rain_rmse"].dims == ("filter", "seed", "cycle") and ds.sizes["cycle"] == 3
        assert ds["forecast_ts30"].dims == ("filter", "seed", "lead") and ds.sizes["lead"] == 3
        assert list(ds["filter_name"].values) == ["letkf", "latent"] and ds.attrs["Conventions"] == "CF-1.10"
        rain = ds["rain_rmse"].values
    kept = (out / "results/letkf_seed2.json").stat().st_mtime_ns
    (out / "results/latent_seed2.json").unlink()
    again = run_latent(TINY, out, resume=True, plots=False)
    assert (out / "results/letkf_seed2.json").stat().st_mtime_ns == kept  # read back, not rerun
    assert (out / "results/latent_seed2.json").is_file()
    assert _without_times(json.loads((out / "summary.json").read_text())) == _without_times(first)
    assert again.training["data_samples"] == 3  # the filter was read back, not retrained
    with xr.open_dataset(out / "latent_run.nc") as ds:
        assert np.array_equal(ds["rain_rmse"].values, rain, equal_nan=True)
    with pytest.raises(ConfigError, match="pass --resume"):
        run_latent(TINY, out)
    with pytest.raises(ConfigError, match="other settings"):
        run_latent(dataclasses.replace(TINY, skip=2), out, resume=True)


def test_a_filter_file_is_copied_in_and_a_collapse_is_a_result(tiny_run: LatentRun, tmp_path: Path) -> None:
    given = tiny_run.out_dir / FILTER_FILE
    config = dataclasses.replace(TINY, seeds=(1,), inflation=1e-6, filter_file=given)
    run = run_latent(config, tmp_path / "given", plots=False)
    card = json.loads((tmp_path / "given/latent-filter.json").read_text())
    assert card["copied_from"] == str(given) and run.training["train_seeds"] == [11]  # read, not trained
    # a millionth of the latent error scale collapses the ensemble: recorded, not raised
    (divergence,) = run.summary["divergences"]
    assert divergence["filter"] == "latent" and divergence["cycle"] >= 1 and "collapsed" in divergence["reason"]
    with xr.open_dataset(tmp_path / "given/latent_run.nc") as ds:
        assert int(ds["diverged_cycle"].sel(filter=1).item()) == divergence["cycle"]
        assert int(ds["diverged_cycle"].sel(filter=0).item()) == 0


def test_a_filter_for_another_grid_is_refused_before_anything_is_written(tiny_run: LatentRun, tmp_path: Path) -> None:
    given = tiny_run.out_dir / FILTER_FILE
    other = dataclasses.replace(TINY, bda=dataclasses.replace(TINY.bda, grid=16), filter_file=given)
    with pytest.raises(ConfigError) as err:
        run_latent(other, tmp_path / "out")
    assert "the filter is for a 32x32 grid (need 16x16)" in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "out").exists()
    with pytest.raises(ConfigError, match="is not a file"):
        run_latent(dataclasses.replace(TINY, filter_file=tmp_path / "missing.pt"), tmp_path / "out")
    assert not (tmp_path / "out").exists()
