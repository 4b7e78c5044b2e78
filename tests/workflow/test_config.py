"""Configuration: presets, YAML/dict loading, overrides and one-line `ConfigError`s."""

from __future__ import annotations

import dataclasses
import json
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
from dacast.workflow.twin.config import resolve_device

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
