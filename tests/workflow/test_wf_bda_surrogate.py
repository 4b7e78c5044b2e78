"""The learned regional model in the 30-s LETKF: configuration, a tiny end-to-end run, resume, CLI errors."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from typer.testing import CliRunner

from dacast.cli.main import app
from dacast.ml.grid_surrogate import build_grid_surrogate, save_grid_surrogate
from dacast.models import WurschCraig
from dacast.workflow.bda.run import run_bda_experiment, run_cycles
from dacast.workflow.bda_surrogate.config import (
    BDA_SURROGATE_PRESETS,
    bda_surrogate_config_from_dict,
    bda_surrogate_config_to_dict,
)
from dacast.workflow.bda_surrogate.run import run_bda_surrogate
from dacast.workflow.schema import ConfigError

TINY = {
    "bda": {
        "preset": "bda-small",
        "grid": 16,
        "members": 8,
        "cycles": 6,
        "ensemble_pool": 4,
        "spinup_minutes": 10,
        "forecast_every": 3,
        "forecast_minutes": 3,
        "device": "cpu",
    },
    "training_cycles": 12,
    "training_members": 4,
    "train": {"epochs": 2},
    "stability_cycles": 10,
    "stability_members": 2,
    "iterations": 1,
}


def tiny(source: str = "analyses", **kw):
    return bda_surrogate_config_from_dict({"preset": f"bda-surrogate-{source}", **TINY, **kw})


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bsa") / "run"
    return run_bda_surrogate(tiny(), out, plots=True), out


def test_presets_round_trip() -> None:
    assert {"bda-surrogate-truth", "bda-surrogate-analyses", "bda-surrogate-cycle"} <= set(BDA_SURROGATE_PRESETS)
    for preset in BDA_SURROGATE_PRESETS.values():
        cfg = preset.config
        assert bda_surrogate_config_from_dict(json.loads(json.dumps(bda_surrogate_config_to_dict(cfg)))) == cfg
        assert cfg.imperfect_model() != cfg.bda.model


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"training_seed": 0}, "training_seed must differ"),
        ({"imperfect": {}}, "at least one parameter"),
        ({"imperfect": {"alpha": 1.0}}, "rain removal"),
        ({"net": {"base": "physics"}}, "net.base"),
        ({"source": "dreams"}, "source"),
        ({"training_members": 99}, "training_members"),
        ({"bda": {"members": 1}}, "bda: members must be at least 2"),
        ({"colour": "red"}, "colour"),
        ({"training_cycles": 100_000, "training_members": 50, "bda": {"grid": 512}}, "training pairs, float32"),
    ],
)
def test_bad_settings_are_one_line(change: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        bda_surrogate_config_from_dict({**TINY, **change})


def test_tiny_end_to_end_beats_the_imperfect_model(tiny_run) -> None:
    result, out = tiny_run
    s = result.summary
    assert set(s["experiments"]) == {"perfect", "imperfect", "surrogate"}
    assert not any(e["diverged"] for e in s["experiments"].values())
    rain = {k: e["rmse_analysis"]["r"] for k, e in s["experiments"].items()}
    assert rain["surrogate"] < rain["imperfect"]  # fixed seed: the learned model's analyses are better
    assert s["targets"]["rain_rmse_vs_imperfect"]["met"]
    assert s["stability"]["finite_cycles"] == 10
    for name in ("bda_surrogate.nc", "summary.json", "rmse_by_cycle.png", "threat_score.png", "fields.png"):
        assert (out / name).is_file(), name
    assert not (out / "INCOMPLETE").exists()
    meta = json.loads((out / "surrogate_00.json").read_text())
    assert meta["trained_on"] == "imperfect-physics analyses" and meta["pairs"] == 4 * 11


def test_resume_reuses_every_stage(tiny_run) -> None:
    result, out = tiny_run
    with pytest.raises(ConfigError, match="--resume"):
        run_bda_surrogate(tiny(), out)
    with pytest.raises(ConfigError, match="other settings"):
        run_bda_surrogate(tiny(stability_cycles=11), out, resume=True)
    stamp = (out / "surrogate_00.pt").stat().st_mtime_ns
    again = run_bda_surrogate(tiny(), out, resume=True, plots=False)
    assert (out / "surrogate_00.pt").stat().st_mtime_ns == stamp
    for name, exp in result.summary["experiments"].items():
        assert again.summary["experiments"][name]["rmse_analysis"] == exp["rmse_analysis"]
    assert again.summary["stability"] == result.summary["stability"]


def test_non_finite_surrogate_stops_the_run_and_keeps_the_checkpoint(tmp_path) -> None:
    cfg = tiny()
    bda = replace(cfg.bda, cycles=4, checkpoint_every=1, forecast_every=0)
    net = build_grid_surrogate(cfg.spec())

    class Breaks:
        """The surrogate, until its third forecast: then NaN weights."""

        calls = 0

        def forecast(self, x, seconds, *, seed, start_step=0, member_offset=0):
            self.calls += 1
            if self.calls == 5:  # cycle 3's ensemble forecast (each cycle: ensemble, then free run)
                with torch.no_grad():
                    net.linear.bias.fill_(float("nan"))
            return net.forecast(x, seconds, seed=seed, start_step=start_step, member_offset=member_offset)

    result = run_bda_experiment(bda, tmp_path / "run", progress=False, plots=False, ensemble_model=Breaks())
    assert result.summary["diverged_cycle"] == 3
    assert "non-finite" in result.summary["diverged_reason"]
    saved = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert saved["cycle"] == 2 and bool(torch.isfinite(saved["ensemble"]).all())


@pytest.mark.parametrize("base", ["none", "imperfect"])
def test_surrogate_runs_in_the_gridded_letkf(base: str) -> None:
    cfg = tiny(net={"base": base})
    bda = replace(cfg.bda, cycles=2, forecast_every=0)
    state = run_cycles(bda, ensemble_model=build_grid_surrogate(cfg.spec()))
    assert state.cycle == 2 and bool(torch.isfinite(state.ensemble).all())
    physics = run_cycles(bda, ensemble_model=WurschCraig(bda.model))
    assert torch.equal(physics.truth, state.truth)  # the truth never depends on the ensemble's model


def test_cli_errors_are_one_line(tmp_path) -> None:
    runner = CliRunner()
    bad = tmp_path / "bad.yaml"
    bad.write_text("preset: bda-surrogate-analyses\ntraining_seed: 0\n")
    res = runner.invoke(app, ["surrogate", "run", str(bad), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "training_seed must differ" in res.output and "Traceback" not in res.output
    res = runner.invoke(app, ["surrogate", "run", "bda-surrogate-nope"])
    assert res.exit_code == 2 and "bda-surrogate-analyses" in res.output
    res = runner.invoke(app, ["surrogate", "run", "bda-surrogate-truth", "--check"])
    assert res.exit_code == 0 and "source: truth" in res.output


def test_cli_refuses_a_surrogate_for_another_grid(tmp_path) -> None:
    """A checkpoint in the run folder made for 32x32 is refused by name when the run (16x16) resumes."""
    cfg_yaml = tmp_path / "tiny.yaml"
    cfg_yaml.write_text(json.dumps({"preset": "bda-surrogate-analyses", **TINY}))
    out = tmp_path / "run"
    out.mkdir()
    cfg = tiny()
    (out / "config.json").write_text(json.dumps(bda_surrogate_config_to_dict(cfg)))
    spec = cfg.spec()
    other = replace(spec, model={**spec.model, "ny": 32, "nx": 32}, physics={**spec.physics, "ny": 32, "nx": 32})
    save_grid_surrogate(build_grid_surrogate(other), out / "surrogate_00")
    res = CliRunner().invoke(app, ["surrogate", "run", str(cfg_yaml), "--out", str(out), "--resume", "--no-progress"])
    assert res.exit_code == 2, res.output
    assert "trained for another setting" in res.output and "ny 32 (need 16)" in res.output


def test_one_experiment_without_a_free_run(tmp_path) -> None:
    """``experiments: [surrogate]`` and ``stability_cycles: 0``: only what was asked for is run and reported."""
    result = run_bda_surrogate(tiny(experiments=["surrogate"], stability_cycles=0), tmp_path / "run", plots=False)
    s = result.summary
    assert list(s["experiments"]) == ["surrogate"] and s["stability"]["stable"] is None
    assert "stable_free_run" not in s["targets"] and "rain_rmse_vs_perfect" not in s["targets"]
    assert not (tmp_path / "run" / "perfect").exists()


def test_cli_runs_and_prints_the_targets(tmp_path) -> None:
    cfg_yaml = tmp_path / "tiny.yaml"
    cfg_yaml.write_text(json.dumps({"preset": "bda-surrogate-truth", **TINY, "stability_cycles": 0}))
    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["surrogate", "run", str(cfg_yaml), "--out", str(out), "--no-progress", "--no-plots"])
    assert res.exit_code == 0, res.output
    assert "surrogate analysis RMSE" in res.output and "rain_rmse_vs_perfect:" in res.output
    assert json.loads((out / "surrogate_00.json").read_text())["trained_on"] == "truth runs"
    again = CliRunner().invoke(app, ["surrogate", "run", str(cfg_yaml), "--out", str(out)])
    assert again.exit_code == 2 and "--resume" in again.output
