"""``dacast obsop``: a tiny run end to end, presets, and one-line error exits (code 2)."""

from __future__ import annotations

from pathlib import Path

import yaml
from typer.testing import CliRunner

from dacast.cli.main import app

runner = CliRunner()

TINY = {
    "preset": "amsua-quick",
    "experiments": ["conv", "physical"],
    "model": {"n_columns": 12, "n_levels": 14},
    "conventional": {"stations": 3},
    "satellite": {"fovs": 8, "step": 5},
    "members": 6,
    "cycles": 6,
    "spinup_cycles": 2,
    "localization": 2.0,
}


def test_tiny_run_prints_the_table(tmp_path: Path) -> None:
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(TINY))
    out = tmp_path / "o"
    res = runner.invoke(app, ["obsop", "run", str(cfg), "--out", str(out), "--no-progress", "--no-plots"])
    assert res.exit_code == 0, res.output
    assert "physical" in res.output and "conv" in res.output and "T (K)" in res.output
    assert (out / "summary.json").is_file()
    again = runner.invoke(app, ["obsop", "run", str(cfg), "--out", str(out), "--no-progress"])
    assert again.exit_code == 2 and "--resume" in again.output
    resumed = runner.invoke(app, ["obsop", "run", str(cfg), "--out", str(out), "--no-progress", "--resume"])
    assert resumed.exit_code == 0, resumed.output


def test_presets_and_check(tmp_path: Path) -> None:
    res = runner.invoke(app, ["obsop", "presets"])
    assert res.exit_code == 0 and "amsua-quick" in res.output
    res = runner.invoke(app, ["obsop", "run", "amsua", "--check", "--out", str(tmp_path / "c")])
    assert res.exit_code == 0 and "experiments" in res.output
    assert not (tmp_path / "c").exists()


def test_bad_input_is_one_line_exit_2(tmp_path: Path) -> None:
    cases = [
        ["obsop", "run", "no-such-preset"],
        ["obsop", "run", "amsua", "--cycles", "0"],
        ["obsop", "run", "amsua", "--seeds", "1,x"],
        ["obsop", "run", str(tmp_path / "missing.yaml")],
    ]
    for args in cases:
        res = runner.invoke(app, [*args, "--out", str(tmp_path / "o"), "--no-progress"])
        assert res.exit_code == 2, (args, res.output)
        assert res.output.strip().count("\n") == 0, res.output
        assert "Traceback" not in res.output
