"""``dacast surrogate run``: error exits (code 2, one line)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from dacast.cli.surrogate import app

runner = CliRunner()


def test_unknown_preset_exits_2() -> None:
    res = runner.invoke(app, ["run", "no-such-preset", "--no-progress"])
    assert res.exit_code == 2
    assert "unknown surrogate preset" in res.output


def test_bad_yaml_value_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("preset: surrogate-lorenz63\nmembers: one\n")
    res = runner.invoke(app, ["run", str(bad), "--no-progress", "--out", str(tmp_path / "o")])
    assert res.exit_code == 2
    assert "members must be an integer" in res.output


def test_missing_file_and_bad_override_exit_2(tmp_path: Path) -> None:
    assert runner.invoke(app, ["run", str(tmp_path / "nope.yaml")]).exit_code == 2
    res = runner.invoke(app, ["run", "surrogate-lorenz63", "--iterations", "-1", "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "iterations" in res.output
