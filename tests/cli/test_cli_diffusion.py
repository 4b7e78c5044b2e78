"""``dacast diffusion``: a tiny run end to end, presets, and one-line error exits (code 2)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from dacast.cli.main import app

runner = CliRunner()

#: One seed, 12 cycles, 6 members; a 4-channel prior trained 20 steps on 60 LETKF pairs (about a second).
TINY = {
    "preset": "diffusion-quick",
    "seeds": [1],
    "members": 6,
    "cycles": 12,
    "skip": 4,
    "sampler": {"steps": 2},
    "training": {"runs": 1, "cycles": 60, "steps": 20, "batch_size": 16, "channels": 4, "layers": 1, "kernel": 3},
}


def _yaml(tmp_path: Path, data: dict, name: str = "tiny.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def test_tiny_run_prints_the_table_and_refuses_to_overwrite(tmp_path: Path, one_error_line: Callable) -> None:
    cfg, out = _yaml(tmp_path, TINY), tmp_path / "o"
    res = runner.invoke(app, ["diffusion", "run", str(cfg), "--out", str(out), "--no-progress", "--no-plots"])
    assert res.exit_code == 0, res.output
    assert "letkf" in res.output and "diffusion" in res.output and "ratio" in res.output
    assert (out / "summary.json").is_file() and (out / "diffusion_run.nc").is_file()
    assert not (out / "rmse_time.png").exists()
    again = runner.invoke(app, ["diffusion", "run", str(cfg), "--out", str(out), "--no-progress"])
    one_error_line(again, "--resume")
    resumed = runner.invoke(app, ["diffusion", "run", str(cfg), "--out", str(out), "--no-progress", "--resume"])
    assert resumed.exit_code == 0, resumed.output


def test_presets_and_check(tmp_path: Path) -> None:
    res = runner.invoke(app, ["diffusion", "presets"])
    assert res.exit_code == 0
    for name in (
        "diffusion-l96",
        "diffusion-l96-iterated",
        "diffusion-l96-transport",
        "diffusion-l96-hybrid",
        "diffusion-quick",
    ):
        assert f"{name}:" in res.output
    res = runner.invoke(
        app, ["diffusion", "run", "diffusion-l96", "--check", "--seeds", "1,2", "--out", str(tmp_path / "c")]
    )
    assert res.exit_code == 0 and "networks" in res.output
    assert yaml.safe_load(res.stdout)["seeds"] == [1, 2]
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["no-such-preset"], "unknown diffusion preset 'no-such-preset'"),
        (["diffusion-quick", "--cycles", "0"], "cycles must lie in"),
        (["diffusion-quick", "--seeds", "1,x"], "--seeds must be comma-separated integers"),
        (["missing.yaml"], "file not found"),
        ({"cycles": "abc"}, "cycles must be an integer, got 'abc'"),
        ({"networks": ["all", "nope"]}, "unknown network 'nope' in networks"),
        (["diffusion-quick", "--prior-dir", "no-such-folder"], "prior_dir no-such-folder is not a folder"),
    ],
)
def test_bad_input_is_one_line_exit_2(
    args: list[str] | dict, fragment: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_error_line: Callable
) -> None:
    monkeypatch.chdir(tmp_path)
    if isinstance(args, dict):
        args = [str(_yaml(tmp_path, {**TINY, **args}, "bad.yaml"))]
    res = runner.invoke(app, ["diffusion", "run", *args, "--out", str(tmp_path / "o"), "--no-progress"])
    one_error_line(res, fragment)
    assert not (tmp_path / "o").exists()


#: The latent filter's quick preset on 6 members, 2 cycles after a 20-minute spin-up; trained on 2 LETKF cycles.
RADAR_TINY = {
    "preset": "latent-radar-quick",
    "bda": {"members": 6, "cycles": 2, "spinup_minutes": 20.0, "ensemble_pool": 4, "forecast_minutes": 2.0},
    "train_cycles": 2,
}


def test_radar_tiny_run_prints_the_table_and_resumes(tmp_path: Path, one_error_line: Callable) -> None:
    cfg, out = _yaml(tmp_path, RADAR_TINY), tmp_path / "r"
    command = ["diffusion", "radar", "run", str(cfg), "--out", str(out), "--no-progress"]
    res = runner.invoke(app, [*command, "--no-plots"])
    assert res.exit_code == 0, res.output
    assert "letkf" in res.output and "latent-diffusion" in res.output and "ratio" in res.output
    for name in ("summary.json", "latent_run.nc", "latent-filter.pt", "results/latent_seed0.json"):
        assert (out / name).is_file(), name
    assert not (out / "rain_rmse_time.png").exists()
    one_error_line(runner.invoke(app, command), "--resume")
    resumed = runner.invoke(app, [*command, "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert (out / "rain_rmse_time.png").is_file()


def test_radar_presets_and_check(tmp_path: Path) -> None:
    res = runner.invoke(app, ["diffusion", "radar", "presets"])
    assert res.exit_code == 0
    for name in ("latent-radar", "latent-radar-quick"):
        assert f"{name}:" in res.output
    command = ["diffusion", "radar", "run", "latent-radar", "--check", "--seeds", "5,6", "--cycles", "8"]
    res = runner.invoke(app, [*command, "--filter", "f.pt", "--out", str(tmp_path / "c")])
    assert res.exit_code == 0, res.output
    shown = yaml.safe_load(res.stdout)
    assert (shown["seeds"], shown["bda"]["cycles"], shown["filter_file"]) == ([5, 6], 8, "f.pt")
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["no-such-preset"], "unknown latent radar preset 'no-such-preset'"),
        (["latent-radar-quick", "--cycles", "0"], "cycles must be positive"),
        (["latent-radar-quick", "--seeds", "1,x"], "--seeds must be comma-separated integers"),
        (["missing.yaml"], "file not found"),
        ({"skip": "abc"}, "skip must be an integer, got 'abc'"),
        ({"bda": {"grid": 33}}, "bda.grid (33) must be a multiple of 2^autoencoder.levels"),
        (["latent-radar-quick", "--filter", "no-such.pt"], "filter_file no-such.pt is not a file"),
        (["latent-radar-quick", "--filter", "foreign.pt"], "foreign.pt: not a dacast latent diffusion filter"),
    ],
)
def test_radar_bad_input_is_one_line_exit_2(
    args: list[str] | dict, fragment: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_error_line: Callable
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "foreign.pt").write_bytes(b"not a checkpoint")
    (tmp_path / "foreign.json").write_text('{"format": "another program"}')
    if isinstance(args, dict):
        args = [str(_yaml(tmp_path, {**RADAR_TINY, **args}, "bad.yaml"))]
    res = runner.invoke(app, ["diffusion", "radar", "run", *args, "--out", str(tmp_path / "o"), "--no-progress"])
    one_error_line(res, fragment)
    assert not (tmp_path / "o").exists()
