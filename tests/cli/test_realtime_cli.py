"""``dacast realtime``: presets, ``--check``, and bad input as one ``error:`` line with exit code 2."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from dacast.cli import app

runner = CliRunner()
PRESETS = ("bda-small", "bda-256", "bda-tiny", "replay-mch", "replay-fmi", "replay-knmi")


@pytest.fixture
def occupied_port() -> Iterator[int]:
    """A port on 127.0.0.1 that this test listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        yield sock.getsockname()[1]


def test_presets_are_listed() -> None:
    result = runner.invoke(app, ["realtime", "presets"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for name in PRESETS:
        assert name in result.stdout
    assert "32x32" in result.stdout


def test_unknown_preset_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_error_line: Callable[..., str]
) -> None:
    monkeypatch.chdir(tmp_path)
    line = one_error_line(runner.invoke(app, ["realtime", "run", "bda-nope"]), "unknown preset 'bda-nope'")
    assert "bda-tiny" in line
    assert os.listdir(tmp_path) == []


def test_check_prints_the_resolved_configuration(tmp_path: Path) -> None:
    folder = tmp_path / "rt"
    result = runner.invoke(app, ["realtime", "run", "bda-tiny", "--check", "--folder", str(folder), "--speed", "5"])
    assert result.exit_code == 0, result.output
    assert "mode: bda" in result.stdout
    resolved = yaml.safe_load(result.stdout)
    assert resolved["mode"] == "bda" and resolved["folder"] == str(folder) and resolved["speed"] == 5.0
    assert resolved["bda"]["grid"] == 32 and resolved["forecast_members"] == 4
    again = tmp_path / "again.yaml"
    again.write_text(result.stdout)
    repeat = runner.invoke(app, ["realtime", "run", str(again), "--check"])
    assert repeat.exit_code == 0 and repeat.stdout == result.stdout, repeat.output
    assert not folder.exists()  # --check creates nothing


def test_a_refused_feed_creates_nothing(tmp_path: Path, one_error_line: Callable[..., str]) -> None:
    folder = tmp_path / "rt"
    result = runner.invoke(app, ["realtime", "twin-feed", "replay-mch", "--folder", str(folder)])
    one_error_line(result, "twin feed")
    assert not folder.exists()


def test_serve_on_an_occupied_port_is_one_line(
    occupied_port: int, tmp_path: Path, one_error_line: Callable[..., str]
) -> None:
    result = runner.invoke(app, ["realtime", "serve", "--products", str(tmp_path), "--port", str(occupied_port)])
    one_error_line(result, str(occupied_port), "in use")


def test_twin_feed_refuses_a_replay_configuration(tmp_path: Path, one_error_line: Callable[..., str]) -> None:
    result = runner.invoke(app, ["realtime", "twin-feed", "replay-mch", "--folder", str(tmp_path / "rt")])
    one_error_line(result, "replay-mch is a replay configuration", "mode: bda")


def test_replay_feed_refuses_a_bda_configuration(tmp_path: Path, one_error_line: Callable[..., str]) -> None:
    result = runner.invoke(app, ["realtime", "replay-feed", "bda-tiny", "--folder", str(tmp_path / "rt")])
    one_error_line(result, "bda-tiny is a bda configuration", "mode: replay")


@pytest.mark.parametrize("command", ["run", "twin-feed", "demo"])
def test_a_folder_under_a_regular_file_is_one_line(
    command: str, tmp_path: Path, one_error_line: Callable[..., str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = runner.invoke(app, ["realtime", command, "bda-tiny", "--folder", str(blocker / "sub")])
    one_error_line(result, "cannot write to", str(blocker / "sub"))
    assert sorted(os.listdir(tmp_path)) == ["file"] and blocker.read_text() == "not a folder"


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--speed", "0"], ("speed must lie in (0, 1000]",)),
        (["--speed", "1e9"], ("speed",)),
        (["--speed", "fast"], ("'--speed'",)),
    ],
)
def test_bad_speed_is_one_line(
    args: list[str], fragments: tuple[str, ...], tmp_path: Path, one_error_line: Callable[..., str]
) -> None:
    result = runner.invoke(app, ["realtime", "run", "bda-tiny", "--folder", str(tmp_path / "rt"), *args])
    one_error_line(result, *fragments)


def test_malformed_yaml_is_one_line(tmp_path: Path, one_error_line: Callable[..., str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("preset: bda-tiny\nspeed: [1,\n")
    one_error_line(runner.invoke(app, ["realtime", "run", str(bad), "--folder", str(tmp_path / "rt")]), "bad.yaml")


def test_module_help_runs_as_a_process() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "dacast.cli", "realtime", "--help"],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    for command in ("demo", "run", "serve", "twin-feed", "replay-feed", "presets"):
        assert command in proc.stdout
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("command", ["run", "demo"])
def test_a_missing_convlstm_checkpoint_is_one_line(
    command: str, tmp_path: Path, one_error_line: Callable[..., str]
) -> None:
    settings = tmp_path / "replay.yaml"
    settings.write_text(yaml.safe_dump({"preset": "replay-mch", "replay": {"checkpoint": str(tmp_path / "none")}}))
    args = ["realtime", command, str(settings), "--folder", str(tmp_path / "rt")]
    one_error_line(runner.invoke(app, args), "checkpoint not found")
    assert not (tmp_path / "rt").exists()  # refused before anything is created or started
