"""Settings of the real-time service: presets, overrides, YAML files, one-line errors naming the key, folders."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from dacast.workflow.bda.config import get_bda_preset
from dacast.workflow.realtime.config import (
    REALTIME_PRESETS,
    RealtimeConfig,
    RealtimePaths,
    ReplayConfig,
    load_realtime_target,
    parse_time,
    realtime_config_from_dict,
    realtime_config_to_dict,
)
from dacast.workflow.schema import ConfigError

NAMES = ["bda-small", "bda-256", "bda-tiny", "replay-mch", "replay-fmi", "replay-knmi"]


def one_line_error(build: Any, *fragments: str) -> str:
    """The message of the `ConfigError` ``build()`` raises: one line holding every fragment."""
    with pytest.raises(ConfigError) as info:
        build()
    message = str(info.value)
    assert message and "\n" not in message
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_the_presets_are_listed_in_order() -> None:
    assert list(REALTIME_PRESETS) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_every_preset_builds_and_round_trips(name: str) -> None:
    config, preset = load_realtime_target(name)
    assert isinstance(config, RealtimeConfig) and preset is not None and preset.name == name
    assert preset.description and config is preset.config
    assert config.mode == ("replay" if name.startswith("replay") else "bda")
    assert realtime_config_from_dict(realtime_config_to_dict(config)) == config
    assert realtime_config_from_dict({"preset": name}) == config
    assert config.n_frames == round(config.forecast_minutes / config.frame_minutes) + 1


def test_presets_start_from_their_bda_and_replay_settings() -> None:
    small, mid = get_bda_preset("bda-small").config, get_bda_preset("bda-256").config
    assert REALTIME_PRESETS["bda-small"].config.bda == small
    assert REALTIME_PRESETS["bda-256"].config.bda == mid
    tiny = REALTIME_PRESETS["bda-tiny"].config
    assert (tiny.bda.grid, tiny.bda.members, tiny.forecast_minutes, tiny.n_frames) == (32, 8, 10.0, 11)
    for source in ("mch", "fmi", "knmi"):
        assert REALTIME_PRESETS[f"replay-{source}"].config.replay == ReplayConfig(source=source)


def test_overrides_replace_only_what_is_given(tmp_path: Path) -> None:
    base = REALTIME_PRESETS["bda-tiny"].config
    config, preset = load_realtime_target("bda-tiny", speed=20.0, folder=str(tmp_path), volumes=None)
    assert preset is not None and preset.name == "bda-tiny"
    assert config == dataclasses.replace(base, speed=20.0, folder=str(tmp_path))
    assert config.paths() == RealtimePaths(tmp_path / "inbox", tmp_path / "products", tmp_path / "state")
    assert config.cycle_wall_seconds == pytest.approx(30.0 / 20.0)
    assert load_realtime_target("bda-tiny", speed=None, folder=None)[0] == base


def test_a_yaml_file_overrides_only_its_keys(tmp_path: Path) -> None:
    path = tmp_path / "service.yaml"
    path.write_text("preset: bda-tiny\nbda: {members: 12}\n")
    config, preset = load_realtime_target(path)
    base = REALTIME_PRESETS["bda-tiny"].config
    assert preset is not None and preset.name == "bda-tiny"
    assert config == dataclasses.replace(base, bda=dataclasses.replace(base.bda, members=12))
    again, _ = load_realtime_target(str(path), speed=4.0)
    assert again == dataclasses.replace(config, speed=4.0)


def test_unquoted_yaml_times_are_read(tmp_path: Path) -> None:
    path = tmp_path / "service.yaml"  # YAML reads these as timestamps, not strings
    path.write_text("preset: replay-mch\nstart_time: 2026-07-01T12:00:00Z\nreplay: {start: 2015-05-15 17:25:00}\n")
    config, _ = load_realtime_target(path)
    assert parse_time(config.start_time, "start_time") == datetime(2026, 7, 1, 12, tzinfo=UTC)
    assert parse_time(config.replay.start, "replay.start") == datetime(2015, 5, 15, 17, 25, tzinfo=UTC)
    assert load_realtime_target(Path(__file__).parents[3] / "examples" / "realtime_convlstm.yaml")[0].replay.checkpoint


def test_the_model_step_is_ten_seconds() -> None:
    # the frame spacing tests below rely on it: 0.25 min = 15 s is no multiple of 10 s, 0.5 min = 30 s is
    assert REALTIME_PRESETS["bda-tiny"].config.bda.model.dt == 10.0
    assert realtime_config_from_dict({"preset": "bda-tiny", "frame_minutes": 0.5}).n_frames == 21


@pytest.mark.parametrize(
    ("data", "fragments"),
    [
        ({"speed": 0}, ("speed", "(0, 1000]", "0")),
        ({"speed": 1e9}, ("speed", "(0, 1000]")),
        ({"speed": "fast"}, ("speed", "a number")),
        ({"speed": float("inf")}, ("speed",)),
        ({"grace_cycles": -1}, ("grace_cycles", "[0, 10]", "-1")),
        ({"frame_minutes": 0.25}, ("frame_minutes", "0.25", "10 s")),
        ({"frame_minutes": 0}, ("frame_minutes",)),
        ({"frame_minutes": 20}, ("forecast_minutes", "whole number", "frame_minutes")),
        ({"frame_minutes": 4}, ("forecast_minutes", "whole number")),
        ({"forecast_minutes": 0}, ("forecast_minutes", "(0, 180]")),
        ({"retention_hours": 0}, ("retention_hours",)),
        ({"volumes": 0}, ("volumes",)),
        ({"threads": 0}, ("threads",)),
        ({"mode": "live"}, ("mode",)),
        ({"nope": 1}, ("unknown key 'nope'", "speed")),
        ({"replay": {"source": "xyz"}}, ("replay.source", "mch", "'xyz'")),
        ({"replay": {"past_frames": 1}}, ("replay.past_frames",)),
        ({"start_time": "yesterday"}, ("start_time", "'yesterday'", "ISO")),
        ({"replay": {"start": "soon"}}, ("replay.start", "'soon'")),
        ({"bda": {"members": 1}}, ("bda.members", "1")),
        ({"preset": "bda-nope"}, ("bda-nope", "bda-tiny")),
    ],
)
def test_bad_values_name_their_key(data: dict[str, Any], fragments: tuple[str, ...]) -> None:
    one_line_error(lambda: realtime_config_from_dict({"preset": "bda-tiny", **data}), *fragments)


def test_bad_overrides_and_files_name_their_key(tmp_path: Path) -> None:
    one_line_error(lambda: load_realtime_target("bda-tiny", speed=0.0), "speed")
    one_line_error(lambda: load_realtime_target("bda-tiny", folder=3), "folder")
    one_line_error(lambda: load_realtime_target("no-such-preset"), "unknown preset", "bda-small")
    path = tmp_path / "bad.yaml"
    path.write_text("preset: bda-tiny\ngrace_cycles: -1\n")
    one_line_error(lambda: load_realtime_target(path), "bad.yaml", "grace_cycles")
    path.write_text("preset: bda-tiny\nbda:\n  members: 1\n")
    one_line_error(lambda: load_realtime_target(path), "bad.yaml", "bda.members")


def test_paths_create_every_folder(tmp_path: Path) -> None:
    paths = dataclasses.replace(REALTIME_PRESETS["bda-tiny"].config, folder=str(tmp_path / "rt")).paths()
    paths.create()
    for folder in (paths.inbox, paths.products, paths.state, paths.rejected, paths.done):
        assert folder.is_dir() and all(entry.is_dir() for entry in folder.iterdir())  # no write probe left behind
    assert paths.rejected == tmp_path / "rt" / "state" / "rejected"
    paths.create()  # again: nothing to do


def test_paths_under_a_regular_file_are_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    paths = RealtimePaths(blocker / "inbox", blocker / "products", blocker / "state")
    one_line_error(paths.create, "cannot write to", str(blocker / "inbox"))
    assert blocker.read_text() == "not a folder"
