"""The Big Data Assimilation cycle: configuration, restart, Dask equality, outages, improvement on the free run."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from dacast.workflow.bda.checkpoint import CHECKPOINT, load_checkpoint
from dacast.workflow.bda.config import (
    BDA_PRESETS,
    BDAConfig,
    bda_config_from_dict,
    bda_config_to_dict,
    get_bda_preset,
    load_bda_target,
)
from dacast.workflow.bda.forecast import threat_scores
from dacast.workflow.bda.run import run_bda_experiment, run_cycles
from dacast.workflow.runtime import dask_client
from dacast.workflow.twin.config import ConfigError


def tiny(**kw) -> BDAConfig:
    """A few-second configuration: 32x32 grid, 8 members, 3 cycles, short spin-up and forecasts."""
    base = dict(
        members=8,
        grid=32,
        cycles=3,
        spinup_minutes=10.0,
        ensemble_pool=4,
        ensemble_lag_minutes=1.0,
        forecast_every=0,
        forecast_minutes=2.0,
        checkpoint_every=1,
        device="cpu",
        seed=3,
    )
    base.update(kw)
    return BDAConfig(**base)


def test_presets_have_the_issue_sizes() -> None:
    assert (BDA_PRESETS["bda-small"].config.grid, BDA_PRESETS["bda-small"].config.members) == (64, 50)
    assert (BDA_PRESETS["bda-256"].config.grid, BDA_PRESETS["bda-256"].config.members) == (256, 100)
    assert (BDA_PRESETS["bda-256-1000"].config.grid, BDA_PRESETS["bda-256-1000"].config.members) == (256, 1000)
    for p in BDA_PRESETS.values():
        assert p.config.cycle_seconds == 30.0
        assert (p.config.model.ny, p.config.model.nx) == (p.config.grid, p.config.grid)
        assert p.config.letkf.max_obs == 100
    scale = BDA_PRESETS["bda-256-1000"].config.letkf
    assert (scale.rtpp, scale.localization) == (0.95, 2.0)
    huge = BDA_PRESETS["bda-256-10240"].config
    assert (huge.members, huge.grid, huge.device, huge.dtype, huge.letkf) == (10240, 256, "cuda", "float32", scale)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"members": 1}, "members"),
        ({"grid": 4}, "grid"),
        ({"cycles": 0}, "cycles"),
        ({"cycle_seconds": 31.0}, "multiple"),
        ({"outage_cycles": [99]}, "outage_cycles"),
        ({"dtype": "float16"}, "dtype"),
        ({"bogus": 1}, "unknown key"),
        ({"letkf": {"bogus": 1}}, "unknown key"),
        ({"members": "many"}, "integer"),
        ({"preset": "nope"}, "unknown preset"),
    ],
)
def test_bad_configuration_is_one_config_error(data: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        bda_config_from_dict(data)


def test_yaml_preset_with_overrides(tmp_path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("preset: bda-small\ncycles: 4\nletkf:\n  rtpp: 0.9\nradar:\n  error_dbz: 4.0\n")
    config, preset = load_bda_target(path, members=12)
    assert preset is None
    assert (config.cycles, config.members, config.grid) == (4, 12, 64)
    assert config.letkf.rtpp == 0.9 and config.letkf.max_obs == 100
    assert config.radar.error_dbz == 4.0
    with pytest.raises(ConfigError, match="unknown preset"):
        load_bda_target("bda-huge")
    with pytest.raises(ConfigError, match="not found"):
        load_bda_target(tmp_path / "missing.yaml")


def test_config_round_trips_through_its_dict() -> None:
    config = BDA_PRESETS["bda-256-1000"].config
    assert bda_config_from_dict(bda_config_to_dict(config)) == config


def test_get_preset_lists_names() -> None:
    with pytest.raises(ConfigError, match="bda-small"):
        get_bda_preset("x")


def test_restart_from_checkpoint_continues_identically(tmp_path) -> None:
    config = tiny(cycles=4)
    straight = run_cycles(config)
    out = tmp_path / "run"
    first = replace(config, cycles=2)
    run_bda_experiment(first, out, progress=False, plots=False, say=lambda _m: None)
    state = load_checkpoint(out / CHECKPOINT, config)
    assert state.cycle == 2
    resumed = run_bda_experiment(config, out, resume=True, progress=False, plots=False, say=lambda _m: None)
    ds = resumed.dataset
    assert ds.sizes["cycle"] == 4
    expect = np.array([r["rmse_analysis"] for r in straight.records])
    np.testing.assert_array_equal(np.stack([ds[f"rmse_analysis_{v}"].values for v in "uvhr"], -1), expect)
    torch.testing.assert_close(
        torch.load(out / CHECKPOINT, weights_only=False)["ensemble"], straight.ensemble, rtol=0, atol=0
    )


def test_resume_refuses_other_settings(tmp_path) -> None:
    config = tiny(cycles=1)
    run_bda_experiment(config, tmp_path, progress=False, plots=False, say=lambda _m: None)
    with pytest.raises(ConfigError, match="other settings"):
        run_bda_experiment(replace(config, members=9), tmp_path, resume=True, progress=False, plots=False)
    with pytest.raises(ConfigError, match="nothing to resume"):
        run_bda_experiment(config, tmp_path / "empty", resume=True, progress=False, plots=False)


def test_outage_runs_the_forecast_only_and_says_so() -> None:
    notes: list[str] = []
    state = run_cycles(tiny(cycles=2, outage_cycles=(1,)), say=notes.append)
    assert any("outage" in n for n in notes)
    rec = state.records[1]
    assert rec["outage"] and rec["n_obs_dbz"] == 0 and rec["n_obs_vr"] == 0
    assert rec["rmse_analysis"] == rec["rmse_forecast"]
    assert state.records[0]["n_obs_dbz"] > 0
    # the forecast after the outage is scored on the cells of the last volume, with it as persistence
    counts = state.forecasts[-1]["counts_persistence"]
    pixels = sum(counts[key][0] for key in ("hits", "misses", "false_alarms", "correct_negatives"))
    assert pixels == state.records[0]["n_obs_dbz"]


def test_dask_cluster_gives_the_single_process_result() -> None:
    config = tiny(cycles=2)
    single = run_cycles(config)
    with dask_client(None, workers=2) as client:
        spread = run_cycles(config, client=client)
    torch.testing.assert_close(spread.ensemble, single.ensemble, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(
        [r["rmse_analysis"] for r in spread.records], [r["rmse_analysis"] for r in single.records], rtol=1e-4
    )


def test_threat_scores_pool_contingency_counts() -> None:
    one = {
        "lead_minutes": [0.0, 1.0],
        **{
            f"counts_{n}": {"hits": [1, 0], "misses": [1, 1], "false_alarms": [0, 1], "correct_negatives": [5, 5]}
            for n in ("forecast", "persistence", "ensemble_prob")
        },
    }
    ts = threat_scores([one, one])
    assert ts["forecast"] == [0.5, 0.0]


def test_bda_small_improves_on_the_free_run(tmp_path) -> None:
    """The CI preset itself (fewer cycles): rain analyses and forecasts beat the free run and persistence.

    With 50 members the winds and height are not improved (see docs/bda.md): they
    must stay close to the free run, not run away.
    """
    config, _ = load_bda_target("bda-small", cycles=10, device="cpu")
    result = run_bda_experiment(config, tmp_path, progress=False, plots=True, say=lambda _m: None)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["rmse_analysis"]["r"] < 0.5 * summary["rmse_free_run"]["r"]
    for var in ("u", "v", "h"):
        assert summary["rmse_analysis"][var] < 1.2 * summary["rmse_free_run"][var], var
    assert summary["obs_per_cycle"]["dbz"] > 1000
    ts = summary["threat_score_30dbz"]
    assert len(ts["lead_minutes"]) == 31 and ts["lead_minutes"][-1] == 30.0
    for lead in (5, 10, 15):
        assert ts["forecast"][lead] > ts["persistence"][lead] + 0.1, lead
    assert set(summary["cycle_seconds"]) == {"forecast", "observation", "letkf", "total"}
    assert (tmp_path / "cycles.nc").is_file() and (tmp_path / CHECKPOINT).is_file()
    assert {p.name for p in result.plots} >= {"rmse.png", "threat_score.png", "probability_30dbz.png"}
