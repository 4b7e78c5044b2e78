"""The `dacast` command line: presets listing, a tiny run, and every bad input -> exit 2, one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dacast.cli import app
from dacast.workflow import PRESETS

runner = CliRunner()

GOOD_YAML = """\
model: {name: lorenz96, n_state: 8}
dt: 0.05
obs: {kind: every_kth, k: 2, error_std: 1.0}
obs_every: 1
filter: {kind: etkf, inflation: 1.05}
members: 4
cycles: 6
seed: 1
"""


def _one_red_line(result, fragment: str) -> None:  # type: ignore[no-untyped-def]
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error:") and fragment in lines[0]
    assert "Traceback" not in result.output


@pytest.mark.parametrize("args", [["--help"], ["run", "--help"], ["presets", "--help"]])
def test_help(args: list[str]) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 0
    assert "Usage" in result.output


def test_presets_table() -> None:
    result = runner.invoke(app, ["presets"])
    assert result.exit_code == 0
    for name in PRESETS:
        assert name in result.output
    assert "0.60" in result.output and "0.22" in result.output and "DAPPER" in result.output


def test_tiny_preset_run(tmp_path: Path) -> None:
    out = tmp_path / "r"
    args = ["run", "lorenz63-etkf", "-n", "4", "--cycles", "6", "--seed", "2", "--out", str(out), "--no-progress"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "rmse.a" in result.stdout
    assert "expected" not in result.stdout  # the preset's 0.60 is for its own members, cycles and seed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["diverged"] is False and summary["preset"] == "lorenz63-etkf"
    assert summary["settings"]["members"] == 4 and summary["settings"]["seed"] == 2
    for name in ("results.nc", "rmse.png", "attractor.png"):
        assert (out / name).is_file()


def test_yaml_run_default_out_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("small.yaml").write_text(GOOD_YAML)
    result = runner.invoke(app, ["run", "small.yaml", "--no-progress", "--no-plots"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "runs" / "small" / "summary.json").is_file()
    assert not (tmp_path / "runs" / "small" / "rmse.png").exists()


def test_diverging_run_exits_zero(tmp_path: Path) -> None:
    path = tmp_path / "boom.yaml"
    path.write_text(GOOD_YAML + "divergence_threshold: 0.001\n")
    result = runner.invoke(app, ["run", str(path), "--out", str(tmp_path / "o"), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "diverged" in result.stdout
    assert json.loads((tmp_path / "o" / "summary.json").read_text())["diverged"] is True


BAD_YAML = {
    "malformed": ("model: [lorenz96\n", "malformed YAML"),
    "unknown-key": (GOOD_YAML + "colour: red\n", "unknown key 'colour'"),
    "zero-members": (GOOD_YAML.replace("members: 4", "members: 0"), "members must be >= 2"),
    "negative-cycles": (GOOD_YAML.replace("cycles: 6", "cycles: -1"), "cycles must be > 0"),
    "index-out-of-range": (
        GOOD_YAML.replace("{kind: every_kth, k: 2, error_std: 1.0}", "{kind: subset, indices: [1, 8]}"),
        "must lie in [0, 7]",
    ),
    "mismatched-dims": (GOOD_YAML + "initial_mean: [1.0, 2.0, 3.0]\n", "initial_mean has 3 entries"),
    "mismatched-error-std": (
        GOOD_YAML.replace("error_std: 1.0", "error_std: [1.0, 1.0]"),
        "error_std has 2 entries but there are 4 observations",
    ),
}


@pytest.mark.parametrize("case", list(BAD_YAML))
def test_bad_yaml_exit_2(tmp_path: Path, case: str) -> None:
    text, fragment = BAD_YAML[case]
    path = tmp_path / f"{case}.yaml"
    path.write_text(text)
    result = runner.invoke(app, ["run", str(path), "--out", str(tmp_path / "o"), "--no-progress"])
    _one_red_line(result, fragment)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["run", "lorenz99"], "unknown preset 'lorenz99'; choose one of: lorenz63-etkf"),
        (["run", "missing.yaml"], "file not found: missing.yaml"),
        (["run", "lorenz63-etkf", "--members", "0"], "members must be >= 2"),
        (["run", "lorenz63-etkf", "--members", "-3"], "members must be >= 2"),
        (["run", "lorenz63-etkf", "--cycles", "0"], "cycles must be > 0"),
        (["run", "lorenz63-etkf", "--seed", "-1"], "seed must be >= 0"),
        (["run", "lorenz63-etkf", "--device", "gpu"], "device must be one of cpu, cuda, auto"),
    ],
)
def test_bad_arguments_exit_2(args: list[str], fragment: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, args)
    _one_red_line(result, fragment)


def test_console_script_entry_point() -> None:
    """The real process: exit status 2 and one stderr line, no traceback."""
    env = {**os.environ, "COLUMNS": "200"}
    proc = subprocess.run(
        [sys.executable, "-c", "from dacast.cli import main; main()", "run", "no-such-preset"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "unknown preset" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the message shown without CUDA")
def test_cuda_requested_without_cuda_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["run", "lorenz63-etkf", "--cycles", "3", "--device", "cuda"])
    _one_red_line(result, "CUDA is not available")
