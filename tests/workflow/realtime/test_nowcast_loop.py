"""The nowcast loop of the real-time service on real MeteoSwiss composites (read in place).

The loop is driven by calling ``poll`` on files copied into its inbox in the order a test needs.
"""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dacast.io import read_radar, to_dbz
from dacast.nowcast import extrapolation_nowcast
from dacast.workflow.nowcast.config import extrapolation_config
from dacast.workflow.realtime.config import RealtimeConfig, realtime_config_from_dict
from dacast.workflow.realtime.inbox import arrived
from dacast.workflow.realtime.nowcast_loop import NowcastLoop
from dacast.workflow.realtime.products import DBZ_SCALE, INDEX, issues_dir, read_status, render_png


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
