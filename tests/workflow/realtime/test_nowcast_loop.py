"""The nowcast loop of the real-time service on real MeteoSwiss composites (read in place).

The loop is driven by calling ``poll`` on files copied into its inbox in the order a test needs.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dacast.io import read_radar, to_dbz
from dacast.nowcast import extrapolation_nowcast
from dacast.workflow.nowcast.config import extrapolation_config
from dacast.workflow.realtime.config import RealtimeConfig, realtime_config_from_dict, realtime_config_to_dict
from dacast.workflow.realtime.inbox import arrived
from dacast.workflow.realtime.nowcast_loop import NowcastLoop
from dacast.workflow.realtime.products import DBZ_SCALE, INDEX, issues_dir, read_status, render_png
from dacast.workflow.schema import ConfigError


@pytest.fixture(scope="module")
def frames(radar_root: Path) -> list[Path]:
    """The first nine MeteoSwiss frames of 2015-05-15 (15:45-16:25 UTC, 5 min apart)."""
    files = sorted((radar_root / "mch" / "20150515").glob("AQC*.gif"))[:9]
    assert len(files) == 9
    return files


def _config(folder: Path) -> RealtimeConfig:
    return realtime_config_from_dict({"preset": "replay-mch", "folder": str(folder), "speed": 100.0})


def _arrive(config: RealtimeConfig, source: Path | bytes, name: str) -> None:
    inbox = config.paths().inbox
    inbox.mkdir(parents=True, exist_ok=True)
    tmp = inbox / f".{name}"
    if isinstance(source, bytes):
        tmp.write_bytes(source)
    else:
        shutil.copyfile(source, tmp)
    os.replace(tmp, inbox / name)


def _index(config: RealtimeConfig) -> dict:
    status = read_status(config.paths().products)
    return json.loads((issues_dir(config.paths().products) / status["latest_issue"] / INDEX).read_text())


def test_nowcasts_verification_faults_and_restart(tmp_path: Path, frames: list[Path]) -> None:
    config = _config(tmp_path)
    loop = NowcastLoop(config)
    loop.start()
    # first frame: observation only (no motion yet)
    _arrive(config, frames[0], frames[0].name)
    assert loop.poll() == 1
    first = _index(config)
    assert set(first["products"]) == {"observation", "verification"} and first["notes"]
    # second and third: nowcasts of 12 leads (60 min) from the frames so far, equal to the batch nowcast
    for f in frames[1:3]:
        _arrive(config, f, f.name)
        assert loop.poll() == 1
    index = _index(config)
    assert len(index["products"]["forecast"]) == 13 and index["lead_minutes"][-1] == 60
    past = torch.from_numpy(np.stack([read_radar(f).values for f in frames[:3]]))
    expected = extrapolation_nowcast(past, 12, extrapolation_config({"motion": "dis", "n_frames": 3}))
    spec_zr = (316.0, 1.5)
    png = render_png(to_dbz(expected[5].float().numpy(), *spec_zr), DBZ_SCALE, north_up=False)
    published = issues_dir(config.paths().products) / read_status(config.paths().products)["latest_issue"]
    assert np.array_equal(
        np.asarray(Image.open(io.BytesIO(png))), np.asarray(Image.open(published / "forecast_06.png"))
    )  # lead 30 min (frame 6: lead 0 is the observation)
    # the nowcasts of 15:50 and 15:55 were verified at +5 min (and 15:50's at +10) against the later frames
    assert index["verification"]["pairs"][1] == 1 and index["verification"]["csi"]["forecast"][1] is not None
    # faults: a truncated GIF, another provider's file, a wrong-grid GIF, an older frame: rejected or skipped
    _arrive(config, frames[3].read_bytes()[:500], frames[3].name)
    fmi = next((frames[0].parents[2] / "fmi").rglob("*.pgm.gz"))  # another provider, same radar root
    _arrive(config, fmi, fmi.name)
    small = io.BytesIO()
    Image.new("P", (64, 64)).save(small, format="GIF")
    _arrive(config, small.getvalue(), frames[4].name)
    _arrive(config, frames[1], frames[1].name)
    assert loop.poll() == 0
    status = read_status(config.paths().products)
    assert status["counts"]["rejected"] == 3 and status["counts"]["skipped"] == 1
    reasons = {e["file"]: e["message"] for e in status["events"] if e["kind"] == "rejected"}
    assert set(reasons) == {frames[3].name, fmi.name, frames[4].name}
    assert all(str(tmp_path) not in m for m in reasons.values())  # names, not the service's paths
    assert not arrived(config.paths().inbox)
    # 16:00 and 16:05 were lost: 16:10 restarts the motion (a gap is reported) and is observation only
    _arrive(config, frames[5], frames[5].name)
    assert loop.poll() == 1
    assert any(e["kind"] == "missing" for e in read_status(config.paths().products)["events"])
    assert "forecast" not in _index(config)["products"]
    # a new loop on the same folder (after a kill) carries on from the checkpoint: 16:15 gets a nowcast at once
    restarted = NowcastLoop(config)
    restarted.start()
    _arrive(config, frames[6], frames[6].name)
    assert restarted.poll() == 1
    assert "forecast" in _index(config)["products"]
    status = read_status(config.paths().products)
    assert status["counts"]["restarts"] == 1 and status["counts"]["issues"] == 5
    # two frames waiting: the older joins the motion and the verification, the newer gets the nowcast
    _arrive(config, frames[7], frames[7].name)
    _arrive(config, frames[8], frames[8].name)
    assert restarted.poll() == 1
    status = read_status(config.paths().products)
    assert status["counts"]["issues"] == 6 and status["counts"]["skipped"] == 2
    assert [t.strftime("%H%M") for t in restarted.times] == ["1615", "1620", "1625"]


def _tiny_convlstm(folder: Path) -> Path:
    """An untrained (seeded) ConvLSTM with an extrapolation input, saved as ``dacast nowcast train`` saves one."""
    from dataclasses import asdict

    from dacast.ml import ConvLSTMConfig, ConvLSTMNowcaster
    from dacast.workflow.nowcast.train import SIDECAR

    config = ConvLSTMConfig(t_in=3, t_out=4, hidden_channels=(4, 8), use_extrapolation=True, seed=3)
    folder.mkdir()
    torch.save({"model_config": asdict(config), "model": ConvLSTMNowcaster(config).state_dict()}, folder / "best.pt")
    (folder / SIDECAR).write_text(json.dumps({"extrapolation": {"motion": "dis", "n_frames": 3}}))
    return folder


def test_convlstm_joins_each_issue_after_it_is_published(tmp_path: Path, frames: list[Path], radar_root: Path) -> None:
    from dacast.workflow.nowcast.config import NowcastRunConfig
    from dacast.workflow.nowcast.run import compute_forecast

    net = _tiny_convlstm(tmp_path / "net")
    config = realtime_config_from_dict(
        {
            "preset": "replay-mch",
            "folder": str(tmp_path / "service"),
            "replay": {"checkpoint": str(net), "leads": 4, "device": "cpu"},
        }
    )
    loop = NowcastLoop(config)
    loop.start()
    assert "ConvLSTM" in loop.title
    revisions = []
    for f in frames[:5]:
        _arrive(config, f, f.name)
        assert loop.poll() == 1
        revisions.append(read_status(config.paths().products)["latest_revision"])
    assert revisions == [1] * 5  # every issue was amended once after it was listed
    names = sorted(p.name for p in issues_dir(config.paths().products).iterdir())
    second = json.loads((issues_dir(config.paths().products) / names[1] / INDEX).read_text())
    assert "convlstm" not in second["products"]  # two frames: extrapolation yes, the network (t_in = 3) not yet
    assert any("needs 3 consecutive frames" in n for n in second["notes"])
    index = _index(config)
    assert index["products"]["convlstm"] == [f"convlstm_{i:02d}.png" for i in range(5)]
    assert list(index["products"]) == ["observation", "forecast", "convlstm", "verification"]  # tab order
    assert index["timing"]["seconds_convlstm"] > 0 and index["amended"] >= index["published"]
    assert not any("added when it is ready" in n for n in index["notes"])
    # the frames are what `dacast nowcast run --method convlstm` gives at this issue time
    batch = NowcastRunConfig(
        source="mch", start=index["issue_time"].rstrip("Z"), method="convlstm", checkpoint=str(net),
        root=radar_root, device="cpu",
    )  # fmt: skip
    expected = compute_forecast(batch, radar_root).forecast
    folder = issues_dir(config.paths().products) / read_status(config.paths().products)["latest_issue"]
    for lead in (1, 4):
        png = render_png(to_dbz(expected[lead - 1].numpy(), 316.0, 1.5), DBZ_SCALE, north_up=False)
        assert np.array_equal(
            np.asarray(Image.open(io.BytesIO(png))), np.asarray(Image.open(folder / f"convlstm_{lead:02d}.png"))
        )
    # the ConvLSTM nowcasts of 15:55 and 16:00 were verified at +5 min beside extrapolation and persistence
    csi = index["verification"]["csi"]
    assert set(csi) == {"forecast", "convlstm", "persistence"} and csi["convlstm"][1] is not None
    # a restarted loop resumes the ConvLSTM's scores; a service with another checkpoint setting refuses the folder
    again = NowcastLoop(config)
    again.start()
    assert again.scores() == loop.scores()
    other = realtime_config_from_dict({**realtime_config_to_dict(config), "replay": {"leads": 4}})
    with pytest.raises(ConfigError, match="checkpoint"):
        NowcastLoop(other).start()


@pytest.mark.parametrize(
    ("replay", "message"),
    [
        ({"checkpoint": "nowhere"}, "checkpoint not found: nowhere"),
        ({"checkpoint": "NET", "leads": 12}, "replay.leads (12) exceeds the 4 leads the checkpoint"),
    ],
)
def test_a_bad_convlstm_setting_is_one_config_error(tmp_path: Path, replay: dict, message: str) -> None:
    net = _tiny_convlstm(tmp_path / "net")
    replay = {k: str(net) if v == "NET" else v for k, v in replay.items()}
    config = realtime_config_from_dict({"preset": "replay-mch", "folder": str(tmp_path), "replay": replay})
    with pytest.raises(ConfigError, match=re.escape(message)):
        NowcastLoop(config)
