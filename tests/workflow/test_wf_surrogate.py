"""The surrogate <-> DA cycle: improvement over iteration 0, resume, config and YAML errors, outputs."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from dacast.da import AdaptiveInflation, ETKFConfig
from dacast.ml import SurrogateTrainConfig
from dacast.workflow.surrogate.config import (
    SURROGATE_PRESETS,
    NetSpec,
    SurrogateConfig,
    surrogate_config_from_dict,
    surrogate_config_to_dict,
)
from dacast.workflow.surrogate.output import best_fixed_inflation, write_surrogate_outputs
from dacast.workflow.surrogate.run import make_truth, run_da, run_surrogate
from dacast.workflow.twin.config import ConfigError, ModelSpec, ObsSpec, build_model


@pytest.fixture
def tiny() -> SurrogateConfig:
    """Lorenz-96 on 8 points; the imperfect model has F = 5 instead of 8; a tiny residual CNN on top of it."""
    return SurrogateConfig(
        name="tiny",
        truth=ModelSpec(name="lorenz96", n_state=8, forcing=8.0),
        imperfect=ModelSpec(name="lorenz96", n_state=8, forcing=5.0),
        dt=0.05,
        obs_every=1,
        obs=ObsSpec(kind="identity", error_std=0.5),
        filter=ETKFConfig(inflation=1.1),
        members=10,
        cycles=150,
        burn_in=1.0,
        net=NetSpec(kind="cnn", window=1, hidden=4, layers=1, base="imperfect"),
        train=SurrogateTrainConfig(epochs=10, batch_size=32, lr=1e-2, patience=10),
        iterations=1,
        patience=2,
        test_cycles=40,
        test_starts=8,
        free_leads=20,
        seed=4,
    )


def test_short_cycle_improves_on_iteration_0_and_writes_outputs(tiny: SurrogateConfig, tmp_path: Path) -> None:
    run = run_surrogate(tiny, tmp_path / "a")
    rmse = [r["rmse_analysis"] for r in run.records]
    assert len(rmse) == 2, run.stopped
    assert run.perfect_rmse < rmse[0]  # the F = 5 model is worse than the truth's
    assert rmse[1] < 0.8 * rmse[0], rmse  # the surrogate learnt the missing forcing from the analyses
    paths = write_surrogate_outputs(run, plots=True)
    summary = json.loads(paths["summary"].read_text())
    for key in ("rmse_analysis_per_iteration", "rmse_analysis_imperfect", "forecast_rmse_steps_1_4", "valid_time",
                "wall_time_s", "valid_time_lyapunov"):  # fmt: skip
        assert key in summary
    assert set(summary["forecast_rmse_steps_1_4"]) == {"imperfect", "surrogate-0"}
    assert paths["dataset"].is_file() and (tmp_path / "a" / "surrogate_rmse_per_iteration.png").is_file()


def test_fixed_inflation_tuning_reproduces_the_cycle_at_its_own_inflation(
    tiny: SurrogateConfig, tmp_path: Path
) -> None:
    """The tuning reruns use the cycle's random draws: at the cycle's inflation (1.1) they give its RMSE exactly."""
    run = run_surrogate(dataclasses.replace(tiny, tuned_inflations=(1.1, 1.4)), tmp_path / "t")
    assert run.tuning is not None and set(run.tuning) == {"imperfect", "surrogate-0"}
    assert run.tuning["imperfect"]["1.1"] == run.records[0]["rmse_analysis"]
    assert run.tuning["surrogate-0"]["1.1"] == run.records[1]["rmse_analysis"]
    assert run.tuning["imperfect"]["1.4"] != run.tuning["imperfect"]["1.1"]
    summary = json.loads(write_surrogate_outputs(run, plots=True)["summary"].read_text())
    best = summary["rmse_analysis_best_fixed_inflation"]
    assert best["imperfect"] == min(run.tuning["imperfect"].values())
    assert summary["rmse_analysis_reduction_best_fixed_inflation"] == 1 - best["surrogate-0"] / best["imperfect"]
    assert json.loads((tmp_path / "t" / "state.json").read_text())["tuning"] == run.tuning
    assert best_fixed_inflation({"1.1": float("nan"), "3": 0.2, "4": 0.3}) == ("3", 0.2)
    assert best_fixed_inflation({"1.1": float("nan")}) is None  # every run diverged


def test_observation_target_trains_on_analysed_windows_against_the_next_observations(
    tiny: SurrogateConfig, tmp_path: Path
) -> None:
    """The mode runs end to end; its DA records the analysed window at each cycle and trains on all of them.

    No improvement is asserted: with analysis errors larger than one step's
    model error this mode learns mostly the analyses' own errors (docs/surrogate.md).
    """
    import numpy as np

    cfg = dataclasses.replace(tiny, train_target="observation", weight_by_variance=False)
    run = run_surrogate(cfg, tmp_path / "o")
    assert len(run.records) == 2 and np.isfinite(run.records[0]["rmse_analysis"])
    win = np.load(tmp_path / "o" / "iteration_00.npz")["window_mean"]
    assert win.shape == (cfg.cycles, cfg.net.window, cfg.n_var) and np.isfinite(win).all()
    meta = json.loads((tmp_path / "o" / "surrogate_00.json").read_text())["metrics"]
    assert meta["n_train"] + meta["n_val"] == cfg.cycles - cfg.burn_cycles - 1
    assert "window_mean" not in np.load(tmp_path / "o" / "perfect.npz")


def test_resume_equals_uninterrupted_run(tiny: SurrogateConfig, tmp_path: Path) -> None:
    cfg = dataclasses.replace(tiny, iterations=2, cycles=60, warm_start=True, train=SurrogateTrainConfig(epochs=2))
    full = run_surrogate(cfg, tmp_path / "full")
    part = run_surrogate(cfg, tmp_path / "part", stop_after=2)
    assert part.stopped == "interrupted" and len(part.records) == 2
    with pytest.raises(ConfigError, match="--resume"):
        run_surrogate(cfg, tmp_path / "part")
    with pytest.raises(ConfigError, match="other settings"):
        run_surrogate(dataclasses.replace(cfg, seed=9), tmp_path / "part", resume=True)
    done = run_surrogate(cfg, tmp_path / "part", resume=True)
    assert [r["rmse_analysis"] for r in done.records] == [r["rmse_analysis"] for r in full.records]
    assert done.records[-1]["forecast_rmse_steps_1_4"] == full.records[-1]["forecast_rmse_steps_1_4"]


def test_adaptive_inflation_inflates_the_imperfect_model_more_than_the_perfect_one(tiny: SurrogateConfig) -> None:
    cfg = dataclasses.replace(tiny, adaptive_inflation=AdaptiveInflation(weight=0.1), cycles=120)
    data = make_truth(cfg)
    skip = cfg.burn_cycles
    infl_imperfect = run_da(cfg, data, cfg.imperfect_model(), 0, None).mean_inflation(skip)
    infl_perfect = run_da(cfg, data, build_model(cfg.truth), 0, None, perfect=True).mean_inflation(skip)
    infl_fixed = run_da(tiny, make_truth(tiny), tiny.imperfect_model(), 0, None).mean_inflation(skip)
    assert infl_imperfect > 1.25 * infl_perfect and infl_perfect >= 1.0, (infl_imperfect, infl_perfect)
    assert infl_fixed == pytest.approx(1.1**2)


def test_presets_and_yaml_round_trip() -> None:
    for cfg in SURROGATE_PRESETS.values():
        assert surrogate_config_from_dict(surrogate_config_to_dict(cfg)) == cfg
    l96 = SURROGATE_PRESETS["surrogate-lorenz96"]
    assert l96.members == 30 and l96.dt == 0.05 and len(l96.obs.indices or ()) == 20 and l96.obs.error_std == 1.0
    cfg = surrogate_config_from_dict({"preset": "surrogate-lorenz63", "iterations": 2, "net": {"hidden": 8}})
    assert cfg.iterations == 2 and cfg.net.hidden == 8 and cfg.net.kind == "lstm" and cfg.net.linear_skip
    assert cfg.adaptive_inflation == AdaptiveInflation(weight=0.05)
    off = surrogate_config_from_dict({"preset": "surrogate-lorenz63", "adaptive_inflation": None})
    assert off.adaptive_inflation is None


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"preset": "nope"}, "unknown surrogate preset"),
        ({"preset": "surrogate-lorenz63", "members": 1}, "members"),
        ({"preset": "surrogate-lorenz63", "bogus": 1}, "unknown key 'bogus'"),
        ({"preset": "surrogate-lorenz63", "net": {"kind": "cnn", "window": 4}}, "window"),
        ({"preset": "surrogate-lorenz63", "train": {"lr": "fast"}}, "train.lr"),
        ({"preset": "surrogate-lorenz63", "filter": {"kind": "letkf", "localization": {"length": 2}}}, "LETKF"),
        ({"truth": {"name": "lorenz96"}}, "missing the required key"),
        ({"preset": "surrogate-lorenz63", "adaptive_inflation": {"weight": 2.0}}, "adaptive_inflation"),
        ({"preset": "surrogate-lorenz63", "adaptive_inflation": {"speed": 1}}, "unknown key 'speed'"),
        ({"preset": "surrogate-lorenz63", "tuned_inflations": [1.5, -1]}, "tuned_inflations"),
        ({"preset": "surrogate-lorenz63", "tuned_inflations": 2.0}, "tuned_inflations"),
    ],
)
def test_bad_config_values_raise_config_error(data: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        surrogate_config_from_dict(data)


def test_example_yaml_is_valid_and_differs_from_the_preset_only_where_it_says() -> None:
    from dacast.workflow.surrogate.config import load_surrogate_yaml

    example = load_surrogate_yaml(Path(__file__).resolve().parents[2] / "examples" / "surrogate_lorenz63.yaml")
    preset = SURROGATE_PRESETS["surrogate-lorenz63"]
    assert (example.cycles, example.iterations, example.tuned_inflations) == (4000, 3, (1.3, 3.0))
    assert dataclasses.replace(example, cycles=preset.cycles, iterations=preset.iterations,
                               tuned_inflations=preset.tuned_inflations) == preset  # fmt: skip


def test_lorenz63_reference_setup_shortened_improves_at_each_iteration(tmp_path: Path) -> None:
    """The preset's method on 1500 analyses and a hidden-8 LSTM: each iteration lowers the analysis RMSE."""
    cfg = dataclasses.replace(
        SURROGATE_PRESETS["surrogate-lorenz63"],
        cycles=1500,
        iterations=2,
        tuned_inflations=(),
        test_cycles=300,
        test_starts=40,
        free_leads=20,
        net=NetSpec(kind="lstm", window=16, hidden=8, base="imperfect", linear_skip=True),
        train=SurrogateTrainConfig(epochs=20, batch_size=128, lr=3e-3, patience=10),
    )
    run = run_surrogate(cfg, tmp_path / "l63")
    rmse = [r["rmse_analysis"] for r in run.records]
    assert len(rmse) == 3 and rmse[0] > rmse[1] > rmse[2], rmse
    assert rmse[2] < 0.8 * rmse[0], rmse
    one_step = [r["forecast_rmse_steps_1_4"][0] for r in run.records]
    assert one_step[2] < 0.7 * one_step[0], one_step
    assert run.records[0]["inflation"] > run.records[2]["inflation"] >= 1.0  # the better model needs less inflation


def test_diverging_imperfect_model_stops_the_cycle_cleanly(tiny: SurrogateConfig, tmp_path: Path) -> None:
    """RK4 with F = 1000 blows up at dt = 0.05: nothing to train on, so the cycle stops with that reason."""
    unstable = dataclasses.replace(tiny, imperfect=ModelSpec(name="lorenz96", n_state=8, forcing=1000.0))
    run = run_surrogate(unstable, tmp_path / "div", plots=False)
    assert "imperfect model diverged" in run.stopped and len(run.records) == 1
    summary = json.loads((tmp_path / "div" / "summary.json").read_text())
    assert summary["diverged"] is True and "imperfect model diverged" in summary["diverged_reason"]
    assert not (tmp_path / "div" / "INCOMPLETE").exists()
