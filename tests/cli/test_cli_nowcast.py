"""`dacast nowcast run|verify|train` on the real MeteoSwiss event, and every bad input -> exit 2, one line."""

from __future__ import annotations

import csv
import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
import yaml
from typer.testing import CliRunner

from dacast.cli import app
from dacast.ml import ConvLSTMConfig, ConvLSTMNowcaster

runner = CliRunner()
T0 = "2015-05-15T16:30"

TINY_TRAIN = {
    "data": {
        "train": [{"source": "mch", "start": "2015-05-15T15:45", "end": "2015-05-15T16:15"}],
        "validation": [{"source": "mch", "start": "2015-05-15T16:20", "end": "2015-05-15T16:45"}],
    },
    "extrapolation": {"motion": "dis", "n_frames": 3},
    "model": {"t_in": 3, "t_out": 3, "hidden_channels": [4, 8], "use_extrapolation": True},
    "loss": {"adversarial_weight": 0.02, "nonlocal_weight": 0.1, "nonlocal_scales": [1, 2]},
    "discriminator": {"channels": [4, 8], "n_frames": 2},
    "samples": {"samples_per_epoch": 4},
    "training": {"crop_size": 32, "batch_size": 2, "max_steps": 2, "val_every": 2, "val_batches": 1, "device": "cpu"},
}


def _ok(result) -> None:  # type: ignore[no-untyped-def]
    assert result.exit_code == 0, result.output


def _one_red_line(result, fragment: str) -> None:  # type: ignore[no-untyped-def]
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error:") and fragment in lines[0], lines[0]
    assert "Traceback" not in result.output


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def runs(radar_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An extrapolation nowcast (3 leads, with plots) and a persistence one (no plots) from 16:30."""
    base = tmp_path_factory.mktemp("nowcast")
    out = {"extrapolation": base / "ext", "persistence": base / "pers"}
    common = ["nowcast", "run", "--source", "mch", "--start", T0, "--leads", "3", "--root", str(radar_root)]
    result = runner.invoke(app, [*common, "--method", "extrapolation", "--out", str(out["extrapolation"])])
    _ok(result)
    assert "CSI>1" in result.stdout and "FSS≥5/10km" in result.stdout and "extrapolation (trec)" in result.stdout
    _ok(runner.invoke(app, [*common, "-m", "persistence", "--out", str(out["persistence"]), "--no-plots"]))
    return out


def test_extrapolation_run_writes_nowcast_scores_and_plots(runs: dict[str, Path]) -> None:
    out = runs["extrapolation"]
    for name in ("nowcast.nc", "scores.csv", "scores.nc", "panel.png", "nowcast.gif", "skill.png"):
        assert (out / name).is_file(), name
    assert not (runs["persistence"] / "panel.png").exists()
    with xr.open_dataset(out / "nowcast.nc") as ds:
        assert ds["forecast"].dims == ("lead_time", "y", "x") and ds["forecast"].shape == (3, 640, 710)
        assert ds["observed"].shape == (3, 640, 710) and ds["forecast"].attrs["units"] in ("mm/h", "mm h-1")
        assert ds.attrs["source"] == "mch" and ds.attrs["method"] == "extrapolation" and ds.attrs["motion"] == "trec"
        assert ds.attrs["issue_time"] == "2015-05-15T16:30:00"
        assert "MeteoSwiss" in ds.attrs["attribution"] and ds["x"].size == 710
        fc = ds["forecast"].values
        assert np.isfinite(fc).mean() > 0.5 and np.nanmin(fc) >= 0
    rows = _csv(out / "scores.csv")
    assert [r["lead_time_min"] for r in rows] == ["5", "10", "15"]
    assert {"csi_1mmh", "csi_5mmh", "fss_1mmh_10km", "fss_5mmh_10km", "mae_mmh", "n_valid"} <= set(rows[0])


def test_extrapolation_beats_persistence_at_15_min(runs: dict[str, Path]) -> None:
    """pysteps on these files: CSI(1 mm/h, +15 min) 0.60 for extrapolation, 0.50 for persistence."""
    ext = float(_csv(runs["extrapolation"] / "scores.csv")[2]["csi_1mmh"])
    pers = float(_csv(runs["persistence"] / "scores.csv")[2]["csi_1mmh"])
    assert ext >= pers
    assert 0.5 < ext < 0.8 and 0.4 < pers < 0.6


def test_verify_rescoring_matches_the_run(runs: dict[str, Path], tmp_path: Path) -> None:
    nc = runs["extrapolation"] / "nowcast.nc"
    _ok(runner.invoke(app, ["nowcast", "verify", str(nc), "--out", str(tmp_path / "v"), "--no-plots"]))
    assert _csv(tmp_path / "v" / "scores.csv") == _csv(runs["extrapolation"] / "scores.csv")
    result = runner.invoke(
        app, ["nowcast", "verify", str(nc), "--thresholds", "0.5", "--scales-km", "5,20", "-o", str(tmp_path / "w")]
    )
    _ok(result)
    assert "CSI>0.5" in result.stdout
    assert list(_csv(tmp_path / "w" / "scores.csv")[0])[3:6] == ["csi_0.5mmh", "fss_0.5mmh_5km", "fss_0.5mmh_20km"]
    assert (tmp_path / "w" / "skill.png").is_file()


def test_train_resume_and_convlstm_run(radar_root: Path, tmp_path: Path) -> None:
    """A 2-step training run on 32-px crops, resumed for one more step, then a ConvLSTM nowcast with it."""
    ck = tmp_path / "ck"
    config = tmp_path / "tiny.yaml"
    config.write_text(
        yaml.safe_dump(
            {**TINY_TRAIN, "data": {**TINY_TRAIN["data"], "root": str(radar_root)}, "checkpoint_dir": str(ck)}
        )
    )
    result = runner.invoke(app, ["nowcast", "train", str(config), "--no-progress"])
    _ok(result)
    assert "trained to step 2/2 on cpu" in result.stdout
    for name in ("best.pt", "last.pt", "metrics.json", "nowcast_workflow.json"):
        assert (ck / name).is_file(), name
    result = runner.invoke(app, ["nowcast", "train", str(config), "--max-steps", "3", "--no-progress"])
    _ok(result)
    assert "resuming from step 2" in result.stdout and "trained to step 3/3" in result.stdout
    other = yaml.safe_load(config.read_text())
    other["extrapolation"]["motion"] = "trec"
    config.write_text(yaml.safe_dump(other))
    _one_red_line(runner.invoke(app, ["nowcast", "train", str(config)]), "other extrapolation settings")
    other["extrapolation"]["motion"] = "dis"
    other["model"]["hidden_channels"] = [4, 4]
    config.write_text(yaml.safe_dump(other))
    _one_red_line(runner.invoke(app, ["nowcast", "train", str(config)]), "different model configuration")

    out = tmp_path / "conv"
    args = ["nowcast", "run", "--source", "mch", "--start", "2015-05-15T17:30", "--method", "convlstm"]
    args += ["--checkpoint", str(ck), "--root", str(radar_root), "--device", "cpu", "--out", str(out), "--no-plots"]
    result = runner.invoke(app, args)
    _ok(result)
    assert "convlstm (dis), 3 leads" in result.stdout
    with xr.open_dataset(out / "nowcast.nc") as ds:
        assert ds["forecast"].shape == (3, 640, 710) and ds.attrs["method"] == "convlstm"
        valid = np.isfinite(ds["last_observed"].values)
        fc = ds["forecast"].values
        assert np.isfinite(fc[:, valid]).all() and (fc[:, valid] >= 0).all()
        assert np.isnan(fc[:, ~valid]).all()
    assert (out / "scores.csv").is_file()
    _one_red_line(runner.invoke(app, [*args, "--leads", "4"]), "exceeds the 3 leads")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--source", "dwd"], "unknown radar source 'dwd'; choose one of: mch, fmi, knmi"),
        (["--method", "steps"], "unknown method 'steps'; choose one of: extrapolation, persistence, convlstm"),
        (["--motion", "lk"], "unknown motion method 'lk'; choose one of: trec, farneback, dis"),
        (["--leads", "0"], "leads must be >= 1 and <= 288 (24 h of 5-min leads), got 0"),
        (["--leads", "-2"], "leads must be >= 1 and <= 288 (24 h of 5-min leads), got -2"),
        (["--leads", "289"], "leads must be >= 1 and <= 288 (24 h of 5-min leads), got 289"),
        (["--past-frames", "1000"], "past_frames must be <= 288"),
        (["--past-frames", "1"], "too few past frames"),
        (["--start", "2015-05-15T15:45"], "missing: 2015-05-15 15:35, 2015-05-15 15:40"),
        (["--start", "2015-05-15T16:31"], "not on the 5-min grid"),
        (["--start", "tomorrow"], "ISO time"),
        (["--method", "convlstm", "--members", "1"], "members must be >= 2 and <= 100, got 1"),
        (["--method", "convlstm", "--members", "101"], "members must be >= 2 and <= 100, got 101"),
        (["--members", "4"], "members apply to method convlstm only, not extrapolation"),
        (["--method", "convlstm", "--checkpoint", "nowhere/best.pt"], "checkpoint not found: nowhere/best.pt"),
        (["--method", "convlstm", "--checkpoint", "garbage.pt"], "invalid checkpoint garbage.pt: not a PyTorch"),
        (["--method", "convlstm", "--checkpoint", "foreign.pt"], "no 'model_config' entry"),
        (["--method", "convlstm", "--checkpoint", "two.pt"], "reads 2 channel(s) per past frame; radar nowcasts give"),
        (["--checkpoint", "garbage.pt"], "applies to method convlstm only"),
        (["--thresholds", "1,x"], "--thresholds must be comma-separated numbers"),
        (["--root", "no-such-dir"], "radar root no-such-dir is not an existing folder"),
        (["--root", "."], "found 0; missing: 2015-05-15 16:20, 2015-05-15 16:25, 2015-05-15 16:30"),
    ],
)
def test_run_errors_exit_2(
    args: list[str], fragment: str, radar_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("garbage.pt").write_text("not a checkpoint")
    torch.save({"weights": torch.zeros(2)}, "foreign.pt")
    two = ConvLSTMConfig(t_in=2, t_out=3, hidden_channels=(4, 8), in_channels=2)  # another input: 2 channels
    torch.save({"model_config": dataclasses.asdict(two), "model": ConvLSTMNowcaster(two).state_dict()}, "two.pt")
    base = {"--source": "mch", "--start": T0, "--root": str(radar_root)}
    for key in args[::2]:
        base.pop(key, None)
    full = ["nowcast", "run", *[x for kv in base.items() for x in kv], *args, "--out", "o", "--no-plots"]
    _one_red_line(runner.invoke(app, full), fragment)
    assert not Path("o").exists()


def test_ensemble_members_run_write_probabilities_and_crps(radar_root: Path, tmp_path: Path) -> None:
    """A tiny ensemble network (latent noise, fair-CRPS training) run with --members; a deterministic one refuses."""
    ck = tmp_path / "ens"
    model = {"kind": "multires", "n_outputs": 2, "noise_channels": 2, **TINY_TRAIN["model"]}
    spec = {**TINY_TRAIN, "model": model, "loss": {"adversarial_weight": 0.0, "nonlocal_scales": [1, 2]}}
    spec["training"] = {**TINY_TRAIN["training"], "ensemble_members": 2}
    config = tmp_path / "ens.yaml"
    config.write_text(
        yaml.safe_dump({**spec, "data": {**spec["data"], "root": str(radar_root)}, "checkpoint_dir": str(ck)})
    )
    _ok(runner.invoke(app, ["nowcast", "train", str(config), "--no-progress"]))
    out = tmp_path / "run"
    args = ["nowcast", "run", "--source", "mch", "--start", "2015-05-15T17:30", "--method", "convlstm", "--root"]
    args += [str(radar_root), "--checkpoint", str(ck), "--device", "cpu", "--no-plots", "--thresholds", "0.5,1"]
    result = runner.invoke(app, [*args, "--members", "3", "--out", str(out)])
    _ok(result)
    with xr.open_dataset(out / "nowcast.nc") as ds:
        assert ds["members"].shape == (3, 3, 640, 710) and ds.attrs["members"] == 3
        prob = ds["exceedance_probability"]
        assert prob.dims == ("threshold", "lead_time", "y", "x") and list(prob["threshold"].values) == [0.5, 1.0]
        valid = np.isfinite(ds["last_observed"].values)
        p = prob.values[:, :, valid]
        assert np.allclose(3 * p, np.round(3 * p), atol=1e-5) and (p[0] >= p[1]).all()  # multiples of 1/3
        members = ds["members"].values[:, :, valid]
        assert (members >= 0).all() and np.abs(members[0] - members[1]).max() > 0
    rows = _csv(out / "scores.csv")
    assert {"crps_mmh", "spread_skill"} <= set(rows[0]) and float(rows[0]["crps_mmh"]) >= 0
    # The same network without --members: its central member only.
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "central")])
    _ok(result)
    with xr.open_dataset(tmp_path / "central" / "nowcast.nc") as ds:
        assert "members" not in ds and ds.attrs["deterministic_member"].startswith("central")
    det = tmp_path / "det"
    config.write_text(
        yaml.safe_dump(
            {**TINY_TRAIN, "data": {**TINY_TRAIN["data"], "root": str(radar_root)}, "checkpoint_dir": str(det)}
        )
    )
    _ok(runner.invoke(app, ["nowcast", "train", str(config), "--no-progress"]))
    det_args = [str(det) if a == str(ck) else a for a in args]
    _one_red_line(runner.invoke(app, [*det_args, "--members", "3", "--out", str(tmp_path / "x")]), "not an ensemble")


def test_run_needs_source_and_start() -> None:
    _one_red_line(runner.invoke(app, ["nowcast", "run", "--start", T0]), "--source is required")
    _one_red_line(runner.invoke(app, ["nowcast", "run", "--source", "mch"]), "--start is required")


def test_verify_errors_exit_2(tmp_path: Path) -> None:
    _one_red_line(runner.invoke(app, ["nowcast", "verify", str(tmp_path / "none.nc")]), "file not found")
    (tmp_path / "text.nc").write_text("hello")
    _one_red_line(runner.invoke(app, ["nowcast", "verify", str(tmp_path / "text.nc")]), "cannot read")
    fc = xr.Dataset({"forecast": (("lead_time", "y", "x"), np.zeros((1, 4, 4), np.float32))})
    fc.to_netcdf(tmp_path / "fc.nc")
    _one_red_line(runner.invoke(app, ["nowcast", "verify", str(tmp_path / "fc.nc")]), "no observed frames")
    xr.Dataset({"rain": ("x", np.zeros(3))}).to_netcdf(tmp_path / "other.nc")
    _one_red_line(runner.invoke(app, ["nowcast", "verify", str(tmp_path / "other.nc")]), "not a dacast nowcast")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("data: [unclosed\n", "malformed YAML"),
        ("", "is empty"),
        (yaml.safe_dump({**TINY_TRAIN, "checkpoint_dir": "ck", "epochs": 3}), "unknown key 'epochs'"),
        (
            yaml.safe_dump({**TINY_TRAIN, "checkpoint_dir": "ck", "loss": {"adversarial_weight": -1}}),
            "adversarial_weight must be >= 0",
        ),
        (yaml.safe_dump(TINY_TRAIN), "missing the required key 'checkpoint_dir'"),
    ],
)
def test_train_yaml_errors_exit_2(text: str, fragment: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("c.yaml").write_text(text)
    _one_red_line(runner.invoke(app, ["nowcast", "train", "c.yaml", "--no-progress"]), fragment)
    assert not Path("ck").exists()


def test_train_override_errors_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("c.yaml").write_text(yaml.safe_dump({**TINY_TRAIN, "checkpoint_dir": "ck"}))
    _one_red_line(runner.invoke(app, ["nowcast", "train", "missing.yaml"]), "file not found: missing.yaml")
    _one_red_line(runner.invoke(app, ["nowcast", "train", "c.yaml", "--device", "gpu"]), "device must be one of")
    _one_red_line(runner.invoke(app, ["nowcast", "train", "c.yaml", "--max-steps", "0"]), "max_steps")


def test_console_script_one_line_no_traceback() -> None:
    env = {**os.environ, "COLUMNS": "200"}
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from dacast.cli import main; main()",
            "nowcast",
            "run",
            "--source",
            "dwd",
            "--start",
            T0,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "unknown radar source" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("args", [["nowcast", "--help"], ["nowcast", "run", "--help"], ["nowcast", "train", "--help"]])
def test_help(args: list[str]) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 0 and "Usage" in result.output
