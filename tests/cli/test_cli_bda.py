"""``dacast bda``: one-line errors with exit code 2, a tiny run end to end, resume."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from dacast.cli import app

runner = CliRunner()

TINY = """\
preset: bda-small
members: 6
grid: 24
cycles: 2
spinup_minutes: 5.0
ensemble_pool: 3
ensemble_lag_minutes: 1.0
forecast_minutes: 2.0
outage_cycles: [1]
device: cpu
"""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["bda", "run", "bda-nope"], "unknown preset"),
        (["bda", "run", "missing.yaml"], "file not found"),
        (["bda", "run", "bda-small", "--members", "1"], "members"),
        (["bda", "run", "bda-small", "--grid", "2"], "grid"),
        (["bda", "run", "bda-small", "--workers", "0"], "workers"),
        (["bda", "run", "bda-small", "--device", "tpu"], "device"),
        (["bda", "run", "bda-small", "--tiles", "3"], "--tiles must look like 2x2"),
        (["bda", "run", "bda-small", "--grid", "16", "--tiles", "2x1"], "use fewer tiles"),
    ],
)
def test_bad_input_exits_2_with_one_line(args: list[str], message: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_malformed_yaml_exits_2(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("members: [1,\n")
    result = runner.invoke(app, ["bda", "run", str(bad)])
    assert result.exit_code == 2 and "malformed YAML" in result.output


def test_tiny_run_with_outage_then_resume(tmp_path) -> None:
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY)
    out = tmp_path / "out"
    result = runner.invoke(app, ["bda", "run", str(cfg), "--out", str(out), "--no-progress", "--no-plots"])
    assert result.exit_code == 0, result.output
    assert "outage" in result.output and "threat score" in result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["outage_cycles"] == [2] and summary["members"] == 6 and summary["grid"] == [24, 24]
    more = runner.invoke(
        app, ["bda", "run", str(cfg), "--out", str(out), "--cycles", "3", "--resume", "--no-progress", "--no-plots"]
    )
    assert more.exit_code == 0, more.output
    assert "resuming after cycle 2" in more.output
    assert json.loads((out / "summary.json").read_text())["cycles"] == 3


def test_resume_without_checkpoint_exits_2(tmp_path) -> None:
    result = runner.invoke(app, ["bda", "run", "bda-small", "--out", str(tmp_path), "--resume"])
    assert result.exit_code == 2 and "nothing to resume" in result.output


def test_presets_listed() -> None:
    result = runner.invoke(app, ["bda", "presets"])
    assert result.exit_code == 0
    for name in ("bda-small", "bda-256", "bda-256-1000"):
        assert name in result.output


def test_tiled_run_end_to_end(tmp_path) -> None:
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY)
    out = tmp_path / "out"
    base = ["bda", "run", str(cfg), "--out", str(out), "--grid", "32", "--workers", "1", "--no-progress"]
    result = runner.invoke(app, [*base, "--tiles", "1x2", "--no-plots"])
    assert result.exit_code == 0, result.output
    assert "LETKF with H(x)" in result.output and "outage" in result.output
    assert json.loads((out / "summary.json").read_text())["tiles"] == [1, 2]
    assert sorted(p.name for p in (out / "tiles").glob("*/*.pt")) == ["tile-0000.pt", "tile-0001.pt"]
    other = runner.invoke(app, [*base, "--tiles", "2x1", "--cycles", "3", "--resume"])
    assert other.exit_code == 2 and "resume with --tiles 1x2" in other.output


def test_unreachable_scheduler_is_one_line(tmp_path) -> None:
    out = tmp_path / "never"
    args = ["bda", "run", "bda-small", "--tiles", "2x2", "--scheduler", "tcp://127.0.0.1:9", "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "cannot connect to the Dask scheduler at tcp://127.0.0.1:9" in result.output
    assert "Traceback" not in result.output and not out.exists()
