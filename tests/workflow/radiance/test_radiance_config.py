"""Radiance configuration: presets, YAML round trip, one-line errors naming the key."""

from __future__ import annotations

import pytest
import yaml

from dacast.workflow.radiance.config import (
    RADIANCE_PRESETS,
    load_radiance_target,
    load_radiance_yaml,
    radiance_config_from_dict,
    radiance_config_to_dict,
)
from dacast.workflow.schema import ConfigError


def test_presets_and_round_trip():
    assert {"amsua", "amsua-3", "amsua-quick"} <= set(RADIANCE_PRESETS)
    for config in RADIANCE_PRESETS.values():
        assert radiance_config_from_dict(radiance_config_to_dict(config)) == config
    assert RADIANCE_PRESETS["amsua-3"].experiments == ("conv", "physical", "ml")


def test_yaml_preset_with_overrides(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({"preset": "amsua-quick", "cycles": 80, "satellite": {"fovs": 10}}))
    config = load_radiance_yaml(path)
    assert config.cycles == 80 and config.satellite.fovs == 10 and config.satellite.channels == (6, 7, 8)
    assert config.ml == RADIANCE_PRESETS["amsua-quick"].ml


@pytest.mark.parametrize(
    "data, message",
    [
        ({"members": 1}, "members must lie in"),
        ({"experiments": ["conv", "radar"]}, "experiments[1] must be one of"),
        ({"satellite": {"error_std": [0.3]}}, "one value per channel"),
        ({"seeds": [1, 1]}, "must not repeat a seed"),
        ({"seed": 1}, "must differ from the experiment seeds"),
        ({"seed": 0}, "must differ from the experiment seeds"),
        ({"seeds": [2**62]}, "2^62"),
        ({"spinup_cycles": 500}, "spinup_cycles"),
        ({"model": {"p_top": 100.0}}, "model.p_top"),
        ({"conventional": {"levels_hpa": [2000.0]}}, "levels_hpa"),
        ({"rtps": 2.0}, "rtps"),
        ({"colour": "red"}, "unknown key 'colour'"),
    ],
)
def test_bad_values_name_the_key(data, message):
    with pytest.raises(ConfigError) as err:
        radiance_config_from_dict({"preset": "amsua", **data})
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_target_overrides():
    config = load_radiance_target("amsua", cycles=100, seeds=[4, 5])
    assert config.cycles == 100 and config.seeds == (4, 5)
    with pytest.raises(ConfigError, match="unknown radiance preset"):
        load_radiance_target("nope")
