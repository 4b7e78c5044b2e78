"""Configuration: presets, YAML/dict loading, overrides, one-line `ConfigError`s, every application's limits."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from dacast.da import ETKFConfig, LETKFConfig
from dacast.workflow import (
    PRESETS,
    ConfigError,
    ModelSpec,
    ObsSpec,
    TwinConfig,
    config_from_dict,
    config_to_dict,
    get_preset,
    load_target,
    load_yaml,
    preset_names,
    with_overrides,
)
from dacast.workflow.bda.config import BDA_PRESETS, bda_config_from_dict, load_bda_target
from dacast.workflow.limits import machine_memory
from dacast.workflow.nowcast.config import MAX_LEADS, NowcastRunConfig, train_config_from_dict
from dacast.workflow.surrogate.config import surrogate_config_from_dict
from dacast.workflow.twin.loader import resolve_device

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "lorenz96_letkf.yaml"


def _base() -> dict[str, Any]:
    """A valid Lorenz-96 configuration in the YAML schema."""
    return {
        "model": {"name": "lorenz96", "n_state": 10},
        "dt": 0.05,
        "obs": {"kind": "subset", "indices": [0, 3, 6], "error_std": 1.0},
        "obs_every": 1,
        "filter": {"kind": "letkf", "inflation": 1.02, "localization": {"length": 2.0}},
        "members": 4,
        "cycles": 3,
    }


def _with(path: str, value: Any, delete: bool = False) -> dict[str, Any]:
    data = json.loads(json.dumps(_base()))
    *parents, last = path.split(".")
    node = data
    for key in parents:
        node = node[key]
    if delete:
        del node[last]
    else:
        node[last] = value
    return data


def test_base_is_valid() -> None:
    config = config_from_dict(_base())
    assert config.n_state == 10 and config.n_obs == 3
    assert isinstance(config.filter, LETKFConfig) and config.filter.localization.length == 2.0


@pytest.mark.parametrize("name", list(PRESETS))
def test_presets_round_trip_through_the_yaml_schema(name: str) -> None:
    config = get_preset(name).config
    data = json.loads(json.dumps(config_to_dict(config)))  # JSON-serialisable
    assert config_from_dict(data) == config


def test_example_yaml_is_the_letkf_preset() -> None:
    assert load_yaml(EXAMPLE) == get_preset("lorenz96-letkf").config


def test_presets_carry_expected_rmse_and_dapper_source() -> None:
    assert preset_names()[:3] == ["lorenz63-etkf", "lorenz96-etkf", "lorenz96-letkf"]
    for name, expected in (("lorenz63-etkf", 0.60), ("lorenz96-etkf", 0.20), ("lorenz96-letkf", 0.22)):
        preset = get_preset(name)
        assert preset.expected_rmse_analysis == expected
        assert "DAPPER 1.7.1" in preset.source and "line" in preset.source
    assert get_preset("lorenz96-letkf-big").config.n_state == 4000


def test_unknown_preset_lists_the_valid_names() -> None:
    with pytest.raises(ConfigError) as err:
        get_preset("lorenz99")
    for name in PRESETS:
        assert name in str(err.value)


def test_yaml_can_start_from_a_preset(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    path.write_text("preset: lorenz96-letkf\nmembers: 9\nfilter:\n  inflation: 1.1\n")
    config, preset = load_target(path)
    assert preset is not None and preset.name == "lorenz96-letkf"
    assert config.members == 9
    assert isinstance(config.filter, LETKFConfig)
    assert config.filter.inflation == 1.1 and config.filter.localization.length == 4.0
    # Changing the filter kind replaces the whole section.
    path.write_text("preset: lorenz96-letkf\nfilter:\n  kind: etkf\n")
    config, _ = load_target(path)
    assert config.filter == ETKFConfig()


def test_overrides() -> None:
    config, preset = load_target("lorenz63-etkf", members=4, cycles=7, seed=11)
    assert preset is get_preset("lorenz63-etkf")
    assert (config.members, config.cycles, config.seed) == (4, 7, 11)
    assert with_overrides(config) == config
    for kwargs in ({"members": 1}, {"members": 0}, {"cycles": 0}, {"cycles": -3}, {"seed": -1}):
        with pytest.raises(ConfigError):
            with_overrides(config, **kwargs)


BAD: list[tuple[dict[str, Any], str]] = [
    (_with("colour", "red"), "unknown key 'colour'"),
    (_with("filter.alpha", 1.0), "unknown key 'alpha'"),
    (_with("filter.localization.radius", 4), "unknown key 'radius'"),
    (_with("model.variant", "x1sq"), "does not apply to model 'lorenz96'"),
    (_with("model.name", "lorenz99"), "unknown model"),
    (_with("filter.kind", "3dvar"), "unknown filter"),
    (_with("filter", None, delete=True), "missing the required key 'filter'"),
    (_with("filter.localization", None, delete=True), "localization"),
    (_with("members", 0), "members must be >= 2"),
    (_with("members", 1), "members must be >= 2"),
    (_with("cycles", 0), "cycles must be > 0"),
    (_with("cycles", -5), "cycles must be > 0"),
    (_with("obs_every", 0), "obs_every must be > 0"),
    (_with("dt", 0), "dt must be > 0"),
    (_with("dt", -0.1), "dt must be > 0"),
    (_with("model.n_state", 0), "n_state"),
    (_with("members", "ten"), "members must be an integer"),
    (_with("members", True), "members must be an integer"),
    (_with("members", 4.5), "members must be an integer"),
    (_with("dt", "fast"), "dt must be a number"),
    (_with("obs.indices", [0, 10]), "must lie in [0, 9]"),
    (_with("obs.indices", [-1, 2]), "must lie in [0, 9]"),
    (_with("obs.indices", []), "must not be empty"),
    (_with("obs.error_std", [1.0, 2.0]), "error_std has 2 entries but there are 3 observations"),
    (_with("obs.error_std", 0.0), "error_std must be positive"),
    (_with("obs.k", 2), "only applies to obs.kind 'every_kth'"),
    (_with("initial_mean", [1.0, 2.0]), "initial_mean has 2 entries but model 'lorenz96' has 10"),
    (_with("initial_std", -1.0), "initial_std must be >= 0"),
    (_with("burn_in", -1.0), "burn_in must be >= 0"),
    (_with("seed", -1), "seed must be >= 0"),
    (_with("device", "tpu"), "device must be one of"),
    (_with("dtype", "float16"), "dtype must be one of"),
    (_with("filter.inflation", 0.0), "inflation must be positive"),
    (_with("filter.rtpp", "lots"), "rtpp must be a number"),
    (_with("filter.localization.length", -2.0), "localization length must be positive"),
    (_with("model", {"name": "lorenz63"}), "must lie in [0, 2]"),
    ({**_with("model", {"name": "lorenz63"}), "obs": {"kind": "identity"}}, "LETKF needs a gridded model"),
    ([1, 2, 3], "must be a mapping"),
]


@pytest.mark.parametrize(("data", "fragment"), BAD, ids=[f"{i}-{frag[:30]}" for i, (_, frag) in enumerate(BAD)])
def test_bad_values_raise_one_line_config_errors(data: Any, fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        config_from_dict(data)
    message = str(err.value)
    assert fragment in message
    assert "\n" not in message


def test_dataclasses_validate_on_their_own() -> None:
    good = config_from_dict(_base())
    with pytest.raises(ConfigError, match="members"):
        dataclasses.replace(good, members=0)
    with pytest.raises(ConfigError, match="obs.kind 'subset' needs obs.indices"):
        ObsSpec(kind="subset")
    with pytest.raises(ConfigError, match="model.name"):
        ModelSpec(name="lorenz05")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="obs.offset must be < n_state"):
        TwinConfig(
            model=ModelSpec(name="lorenz96", n_state=8),
            dt=0.05,
            obs=ObsSpec(kind="every_kth", k=2, offset=8),
            obs_every=1,
            filter=ETKFConfig(),
            members=3,
            cycles=1,
        )


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("model: [lorenz96\ndt: 0.05\n", "malformed YAML"),
        ("model:\n  name: lorenz96\n bad indent: 1\n", "malformed YAML"),
        ("", "is empty"),
        ("- 1\n- 2\n", "must be a mapping"),
        ("preset: lorenz97\n", "unknown preset"),
    ],
)
def test_bad_yaml_files(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_yaml(path)
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_missing_file_and_unknown_target(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_target(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="unknown preset 'nope'"):
        load_target("nope")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="CUDA is not available"):
        resolve_device("cuda")
    assert resolve_device("auto").type == "cpu"


def test_preset_names_win_over_files_and_suffixless_yaml_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("lorenz63-etkf").write_text("not: yaml: at all: [")
    config, preset = load_target("lorenz63-etkf")
    assert preset is not None and config == preset.config
    Path("mine").write_text("preset: lorenz63-etkf\ncycles: 5\n")
    config, _ = load_target("mine")
    assert config.cycles == 5


def test_coupled_lorenz63_parameters_reach_the_model() -> None:
    from dacast.workflow.twin.config import build_model, model_spec_to_dict
    from dacast.workflow.twin.loader import model_spec_from_dict

    spec = model_spec_from_dict({"name": "coupled_lorenz63", "omega": 3.0, "damping": 1.5, "x3_star": 0.5}, "truth")
    model = build_model(spec)
    assert (model.omega, model.damping, model.x3_star) == (3.0, 1.5, 0.5)
    assert model_spec_from_dict(model_spec_to_dict(spec)) == spec
    with pytest.raises(ConfigError, match="truth.damping"):
        model_spec_from_dict({"name": "coupled_lorenz63", "damping": "x"}, "truth")


# --------------------------------------------------------------------------- limits: finite, stable, bounded, fits


LIMITS: list[tuple[dict[str, Any], str]] = [
    (_with("filter.inflation", math.inf), "filter.inflation must be a finite number, got inf"),
    (_with("filter.inflation", 1e300), "inflation must lie in ["),
    (_with("filter.inflation", 1e-300), "inflation must lie in ["),
    (_with("filter.localization.min_weight", math.inf), "min_weight must be a finite number"),
    (_with("filter.localization.min_weight", 1.0), "min_weight must lie in [0, 1)"),
    (_with("filter.localization.length", math.nan), "length must be a finite number, got nan"),
    (_with("dt", 1e308), "dt x obs_every x cycles overflows"),
    (_with("dt", 0.3), "dt must be < 0.25 for lorenz96 with forcing 8: RK4 blows up from there, got 0.3"),
    (_with("dt", math.nan), "dt must be a finite number"),
    (_with("model.forcing", 1e308), "model.forcing must lie in (0, 1000] for lorenz96, got 1e+308"),
    (_with("model.forcing", 0.0), "model.forcing must lie in (0, 1000]"),
    (_with("model.forcing", -8.0), "model.forcing must lie in (0, 1000]"),
    (_with("seed", 2**63), "seed must lie in [-2^63, 2^63 - 1] (int64)"),
    (_with("seed", 2**70), "seed must lie in [-2^63, 2^63 - 1] (int64)"),
    (_with("members", 10**12), "members=1000000000000 x n_state=10 x cycles=3 needs about"),
    (_with("model.n_state", 10**12), "needs about"),
    (_with("cycles", 10**9), "cycles=1000000000 x obs_every=1 makes 1e+09 model steps, more than the 1e+08"),
    (_with("obs_every", 10**5) | {"cycles": 10**4}, "model steps"),
    (_with("initial_std", math.inf), "initial_std must be a finite number"),
    (_with("initial_mean", [1.0] * 9 + [math.nan]), "initial_mean[9] must be a finite number, got nan"),
    (_with("divergence_threshold", math.inf), "divergence_threshold must be a finite number"),
    (_with("obs.error_std", math.nan), "obs.error_std must be a finite number"),
    (_with("burn_in", -math.inf), "burn_in must be a finite number"),
]


@pytest.mark.parametrize(("data", "fragment"), LIMITS, ids=[frag[:40] for _, frag in LIMITS])
def test_limits_are_one_line_config_errors(data: Any, fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        config_from_dict(data)
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_memory_message_gives_the_estimate_and_the_machine() -> None:
    with pytest.raises(ConfigError) as err:
        config_from_dict(_with("members", 10**12))
    message = str(err.value)
    assert "bytes (" in message and "GB); this machine has" in message
    assert machine_memory() > 0
    for preset in PRESETS.values():  # every preset fits a laptop
        assert preset.config.estimated_bytes() < 2**30
    small = config_from_dict(_base())
    assert small.estimated_bytes() < dataclasses.replace(small, cycles=30).estimated_bytes()


def test_no_localization_is_infinite_length_and_blow_ups_stay_results_in_python() -> None:
    config = config_from_dict(_with("filter.localization", {"length": math.inf}))
    assert isinstance(config.filter, LETKFConfig) and config.filter.localization.length == math.inf
    gaussian = {"length": 2.0, "taper": "gaussian", "support": math.inf}
    assert config_from_dict(_with("filter.localization", gaussian)).filter.localization.support == math.inf
    assert json.loads(json.dumps(config_to_dict(config)))["filter"]["localization"]["length"] == math.inf
    blow_up = dataclasses.replace(config_from_dict(_base()), dt=1.5)  # a run that RK4 blows up is flagged
    assert blow_up.dt == 1.5
    with pytest.raises(ConfigError, match="dt must be < 0.25 for lorenz96"):
        config_from_dict(config_to_dict(blow_up))
    assert ModelSpec(name="lorenz63").unstable_dt == 0.25
    assert ModelSpec(name="lorenz96", forcing=16.0).unstable_dt == 0.125


def test_overrides_are_held_to_the_same_limits() -> None:
    config = get_preset("lorenz63-etkf").config
    for kwargs, fragment in (
        ({"members": 10**12}, "needs about"),
        ({"seed": 2**63}, "int64"),
        ({"cycles": 10**8}, "model steps"),
    ):
        with pytest.raises(ConfigError, match=fragment):
            with_overrides(config, **kwargs)
    assert with_overrides(config, seed=2**63 - 1).seed == 2**63 - 1


def _bda(**changes: Any) -> dict[str, Any]:
    return {"preset": "bda-small", **changes}


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (_bda(members=10**12), "members=1000000000000 x grid 64^2 x cycles=20"),
        (_bda(grid=10**12), "needs about"),
        (_bda(grid=2**70), "grid must lie in [-2^63, 2^63 - 1]"),
        (_bda(cycles=10**12), "needs about"),
        (_bda(forecast_minutes=1e9), "model steps"),
        (_bda(spinup_minutes=1e12), "model steps"),
        (_bda(seed=2**70), "seed must lie in"),
        (_bda(cycle_seconds=math.inf), "cycle_seconds must be a finite number"),
        (_bda(grid=66, letkf={"weight_stride": 4}), "grid (66) must be a multiple of letkf.weight_stride (4)"),
        (_bda(model={"dt": 30.0}), "gravity waves need sqrt(g H0) dt / dx <= 0.707, got 1.8"),
        (_bda(model={"ku": 3e5, "kh": 3e5}), "diffusion needs max(ku, kh, kr) dt / dx^2 <= 0.25"),
        (_bda(model={"background_u": 60.0}), "rain advection needs |background wind| dt / dx <= 1"),
        (_bda(model={"alpha": 1.0}), "rain removal needs alpha dt <= 1"),
        (_bda(model={"noise_rate": 1.0}), "perturbations a step, more than cells"),
        (_bda(model={"gamma": 1e300}), "model.gamma must lie within +-1e+30"),
        (_bda(radar={"floor_dbz": 1e300}), "radar.floor_dbz must lie within +-100"),
        (_bda(radar={"gate_spacing": 1e-3}), "gates needs about"),
        (_bda(letkf={"inflation": 1e-300}), "inflation must lie in ["),
    ],
)
def test_bda_limits(data: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        bda_config_from_dict(data)
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_bda_presets_fit_and_overrides_are_checked() -> None:
    for preset in BDA_PRESETS.values():
        # CPU presets fit a laptop; the GPU preset (10240 members) an 80-GB data-centre GPU
        limit = 80e9 if preset.config.device == "cuda" else 8 * 2**30
        assert preset.config.estimated_bytes() < limit and preset.config.model_steps() < 2000
    with pytest.raises(ConfigError, match="needs about"):
        load_bda_target("bda-small", members=10**12)


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"net": {"hidden": 10**12}}, "net.hidden=1000000000000 needs about"),
        ({"net": {"hidden": 2**70}}, "net.hidden must lie in [-2^63, 2^63 - 1]"),
        ({"net": {"layers": 10**12}}, "needs about"),
        ({"dt": 0.3}, "dt must be < 0.2 for coupled_lorenz63"),
        ({"dt": 1e308}, "dt x obs_every x cycles overflows"),
        ({"seed": 2**70}, "seed must lie in"),
        ({"train": {"seed": 2**63}}, "train.seed must lie in"),
        ({"train": {"epochs": 10**6}}, "train.epochs must be <= 100000"),
        ({"threads": 10**6}, "threads must be >= 1 and <= 1024"),
        ({"cycles": 10**9}, "needs about"),
        ({"free_leads": 10**9}, "model steps"),
        ({"burn_in": 1e300}, "burn_in must be >= 0 and < the run"),
        ({"tuned_inflations": [1e300]}, "tuned_inflations must be positive numbers in [0.01, 100]"),
        ({"adaptive_inflation": {"minimum": 0.0}}, "adaptive_inflation: need 1e-12 <= minimum"),
        ({"filter": {"kind": "etkf", "inflation": 1e300}}, "inflation must lie in ["),
    ],
)
def test_surrogate_limits(change: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        surrogate_config_from_dict({"preset": "surrogate-lorenz63", **change})
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_surrogate_cnn_kernel_wider_than_the_ring() -> None:
    with pytest.raises(ConfigError, match=r"net.kernel must be <= 81 \(2 n \+ 1\)"):
        surrogate_config_from_dict({"preset": "surrogate-lorenz96", "net": {"kernel": 101}})


NOWCAST_EXAMPLE = EXAMPLE.parent / "nowcast_train.yaml"


@pytest.mark.parametrize(
    ("section", "change", "fragment"),
    [
        ("training", {"batch_size": 10**12}, "batch_size=1000000000000 x crop 128^2"),
        ("model", {"hidden_channels": [10**9]}, "needs about"),
        ("training", {"crop_size": 1024}, "training.crop_size 1024 is larger than the mch grid"),
        ("training", {"max_steps": 10**8}, "training.max_steps (x 1 + disc_steps) must be <= 1e+07"),
        ("training", {"seed": 2**63}, "training.seed must lie in"),
        ("model", {"seed": -1}, "model.seed must be >= 0 and < 2^63"),
        ("samples", {"max_tries": 10**9}, "samples.max_tries must be <= 10000"),
        ("loss", {"nonlocal_scales": [1, 4096]}, "loss.nonlocal_scales must be <= the crop size 128"),
        ("training", {"lr": math.nan}, "training.lr must be a finite number"),
    ],
)
def test_nowcast_training_limits(section: str, change: dict[str, Any], fragment: str) -> None:
    import yaml

    data = yaml.safe_load(NOWCAST_EXAMPLE.read_text())
    data[section] = {**(data.get(section) or {}), **change}
    with pytest.raises(ConfigError) as err:
        train_config_from_dict(data)
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_nowcast_run_leads_and_past_frames_are_bounded() -> None:
    run = {"source": "mch", "start": "2015-05-15T16:30"}
    assert NowcastRunConfig(**run, n_leads=MAX_LEADS, past_frames=MAX_LEADS).n_leads == 288
    with pytest.raises(ConfigError, match="leads must be >= 1 and <= 288"):
        NowcastRunConfig(**run, n_leads=289)
    with pytest.raises(ConfigError, match="past_frames must be <= 288"):
        NowcastRunConfig(**run, past_frames=10**6)
    with pytest.raises(ConfigError, match="thresholds must be positive"):
        NowcastRunConfig(**run, thresholds=(math.inf,))


def test_overriding_the_localization_length_takes_effect() -> None:
    """The README's override `localization: {length: 3}` used to be ignored: the preset's support won."""
    from dacast.workflow import config_from_dict, run_twin

    def rmse(length: float) -> float:
        config = config_from_dict(
            {
                "preset": "lorenz96-letkf",
                "cycles": 150,
                "filter": {"kind": "letkf", "inflation": 1.02, "localization": {"length": length}},
            }
        )
        assert config.filter.localization.length == length and config.filter.localization.support is None
        return float(run_twin(config, progress=False)["rmse_analysis"][50:].mean())

    assert abs(rmse(3.0) - rmse(1.0)) > 1e-3
    # Restating both is fine when they agree; a support of another length is an error naming both.
    ok = {"kind": "letkf", "localization": {"length": 3.0, "support": 2 * 1.8257 * 3.0}}
    assert config_from_dict({"preset": "lorenz96-letkf", "filter": ok}).filter.localization.support is not None
    bad = {"kind": "letkf", "localization": {"length": 3.0, "support": 14.56}}
    with pytest.raises(ConfigError, match=r"filter\.localization.*length 3 and support 14\.56 disagree"):
        config_from_dict({"preset": "lorenz96-letkf", "filter": bad})
