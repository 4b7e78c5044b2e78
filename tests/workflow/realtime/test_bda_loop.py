"""The BDA loop of the real-time service: the batch twin's analyses, and the fault drills of the issue.

The loop is driven by calling ``poll`` on volumes written by the twin feed (copied into the
inbox in the order and at the times a test needs); the kill test runs ``dacast realtime run``
as a process and kills it with SIGKILL.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from dacast.workflow.bda.run import run_cycles
from dacast.workflow.files import write_text
from dacast.workflow.realtime.bda_loop import BDALoop
from dacast.workflow.realtime.config import RealtimeConfig, realtime_config_from_dict, realtime_config_to_dict
from dacast.workflow.realtime.feeds import run_twin_feed
from dacast.workflow.realtime.inbox import arrived
from dacast.workflow.realtime.products import INDEX, issues_dir, list_issues, read_status

START = "2026-07-01T00:00:00Z"
N_VOLUMES = 12


def _config(folder: Path, preset: str = "bda-tiny", **overrides: object) -> RealtimeConfig:
    return realtime_config_from_dict(
        {"preset": preset, "folder": str(folder), "start_time": START, "speed": 100.0, **overrides}
    )


@pytest.fixture(scope="module")
def volumes(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Twin volumes 1..N_VOLUMES of `bda-tiny` (00:00:30, 00:01:00, ...), delivered at once."""
    config = _config(tmp_path_factory.mktemp("feed"), speed=1000.0, volumes=N_VOLUMES)
    run_twin_feed(config)
    files = arrived(config.paths().inbox)
    assert len(files) == N_VOLUMES
    return files


@pytest.fixture(scope="module")
def foreign_volume(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A volume of the 64x64 `bda-small` twin (another grid)."""
    config = _config(tmp_path_factory.mktemp("other"), preset="bda-small", speed=1000.0, volumes=1)
    run_twin_feed(config)
    return arrived(config.paths().inbox)[0]


def _arrive(volume: Path, config: RealtimeConfig, name: str | None = None) -> Path:
    """Copy a volume into the loop's inbox (as a feed would: whole, under its final name)."""
    target = config.paths().inbox / (name or volume.name)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(volume, target.with_name("." + target.name))
    os.replace(target.with_name("." + target.name), target)
    return target


def _status(config: RealtimeConfig) -> dict:
    return read_status(config.paths().products)


def _check_products(products: Path) -> None:
    """Every published issue is whole: its index lists only files that are there; no partial folder is left."""
    root = issues_dir(products)
    assert not [p for p in root.iterdir() if p.name.startswith(".")]
    for name in list_issues(products):
        index = json.loads((root / name / INDEX).read_text())
        for files in index["products"].values():
            for f in files:
                assert (root / name / f).stat().st_size > 0, (name, f)


def test_analyses_equal_the_batch_twin(tmp_path: Path, volumes: list[Path]) -> None:
    """With the same settings and start, the loop's ensemble after 4 volumes is the batch twin's, bit for bit."""
    config = _config(tmp_path)
    loop = BDALoop(config)
    loop.start()
    for v in volumes[:4]:
        _arrive(v, config)
        assert loop.poll() == 1
    assert loop.state is not None and loop.state.cycle == 4
    batch = run_cycles(dataclasses.replace(config.bda, cycles=4))
    torch.testing.assert_close(loop.state.ensemble, batch.ensemble, rtol=0, atol=0)
    status = _status(config)
    assert status["counts"]["analyses"] == 4 and status["latency_s"]["n"] == 4
    index = json.loads((issues_dir(config.paths().products) / status["latest_issue"] / INDEX).read_text())
    assert set(index["products"]) == {"observation", "analysis", "forecast", "probability", "verification"}
    assert len(index["products"]["forecast"]) == config.n_frames == len(index["valid_times"])
    # issues at 0:30, 1:00, 1:30, 2:00 with frames every minute: lead 1 min verified twice, lead 2 min not yet
    assert index["verification"]["pairs"][1:3] == [2, 0]
    assert (config.paths().products / "analysis_latest.nc").stat().st_size > 0
    assert len(arrived(config.paths().state / "done")) == 4 and not arrived(config.paths().inbox)
    _check_products(config.paths().products)


def test_fault_drills(tmp_path: Path, volumes: list[Path], foreign_volume: Path) -> None:
    """Waiting, truncated, wrong-grid, off-cycle, stale, late and missing volumes: each reported, publishing goes on.

    Volumes are due every 3 s of wall time (speed 10); the test moves the loop's record of the last
    arrival back instead of sleeping through a due time.
    """
    config = _config(tmp_path, grace_cycles=0.5, speed=10.0)
    paths = config.paths()
    loop = BDALoop(config)
    loop.start()
    # three volumes wait (the loop was busy): the newest is assimilated, the two older skipped and counted
    for v in volumes[:3]:
        _arrive(v, config)
    assert loop.poll() == 1 and loop.state is not None and loop.state.cycle == 3
    assert _status(config)["counts"]["skipped"] == 2
    # damaged and foreign inputs next to each other: rejected with their reasons, nothing published
    (paths.inbox / volumes[3].name).write_bytes(volumes[3].read_bytes()[:300])  # truncated
    _arrive(foreign_volume, config, name=volumes[4].name)  # a 64x64 volume
    _arrive(volumes[5], config, name="radar_20260701T000315Z.nc")  # off the 30-s cycle
    write_text(paths.inbox / "notes.txt", "not a volume\n")
    assert loop.poll() == 0
    status = _status(config)
    assert status["counts"]["rejected"] == 4
    reasons = {e["file"]: e["message"] for e in status["events"] if e["kind"] == "rejected"}
    assert "unreadable" in reasons[volumes[3].name]
    assert "wrong grid" in reasons[volumes[4].name]
    assert "wrong time" in reasons["radar_20260701T000315Z.nc"] or "differs" in reasons["radar_20260701T000315Z.nc"]
    assert "not a radar volume" in reasons["notes.txt"]
    assert (paths.rejected / f"{volumes[3].name}.reason").read_text().strip()
    assert not arrived(paths.inbox)
    # a stale volume (older than the analysis) is skipped
    _arrive(volumes[1], config)
    assert loop.poll() == 0 and _status(config)["counts"]["skipped"] == 3
    # volume 7 arrives late, but is still the newest: assimilated and flagged
    _arrive(volumes[6], config)
    assert loop.poll() == 1
    last = loop.last_arrival
    assert last is not None
    loop.last_arrival = (last[0], time.time() - 1.3 * config.cycle_wall_seconds)  # volume 8 was due 0.3 cycles ago
    _arrive(volumes[7], config)
    assert loop.poll() == 1
    status = _status(config)
    assert status["counts"]["late"] == 1
    index = json.loads((issues_dir(paths.products) / status["latest_issue"] / INDEX).read_text())
    assert index["flags"]["late"] and index["flags"]["analysis"]
    # volume 9 never comes: the loop waits until its due time and the grace, then forecasts without it
    assert loop.poll() == 0
    last = loop.last_arrival
    assert last is not None
    loop.last_arrival = (last[0], time.time() - (1.1 + config.grace_cycles) * config.cycle_wall_seconds)
    assert loop.poll() == 1
    status = _status(config)
    assert status["counts"]["forecast_only"] == 1
    assert any(e["kind"] == "missing" for e in status["events"])
    index = json.loads((issues_dir(paths.products) / status["latest_issue"] / INDEX).read_text())
    assert index["flags"]["missing_volume"] and "observation" not in index["products"] and index["notes"]
    # and the next volume is assimilated again
    _arrive(volumes[-1], config)
    assert loop.poll() == 1
    assert json.loads((issues_dir(paths.products) / _status(config)["latest_issue"] / INDEX).read_text())["flags"][
        "analysis"
    ]
    _check_products(paths.products)


def test_sigkill_resumes_from_the_checkpoint(tmp_path: Path, volumes: list[Path]) -> None:
    """``dacast realtime run`` killed with SIGKILL mid-stream: restarted, it carries on; nothing lost or partial."""
    config = _config(tmp_path)
    settings = tmp_path / "rt.yaml"
    import yaml

    settings.write_text(yaml.safe_dump(realtime_config_to_dict(config)))
    products = config.paths().products
    command = [sys.executable, "-m", "dacast.cli", "realtime", "run", str(settings)]

    def published() -> list[str]:
        return list_issues(products)

    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        for v in volumes[:6]:
            _arrive(v, config)
            deadline = time.monotonic() + 60
            while v.name.replace("radar_", "").replace(".nc", "") not in published():
                assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
                assert time.monotonic() < deadline
                time.sleep(0.05)
        _arrive(volumes[6], config)
        time.sleep(0.3)  # mid-cycle, or just after
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        before = {n: (issues_dir(products) / n / INDEX).read_bytes() for n in published()}
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for v in volumes[7:9]:
            _arrive(v, config)
        deadline = time.monotonic() + 90
        while len(published()) < 9:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    assert proc.returncode in (0, 130)
    after = published()
    assert after[: len(before)] == sorted(before)
    for name, index in before.items():  # published issues are kept as they were
        assert (issues_dir(products) / name / INDEX).read_bytes() == index
    status = read_status(products)
    assert status["counts"]["restarts"] == 1 and any(e["kind"] == "restart" for e in status["events"])
    assert status["state"] == "stopped"
    _check_products(products)


def test_a_checkpoint_of_other_settings_is_refused_in_one_line(tmp_path: Path, volumes: list[Path]) -> None:
    from dacast.workflow.limits import ConfigError

    config = _config(tmp_path)
    loop = BDALoop(config)
    loop.start()
    _arrive(volumes[0], config)
    assert loop.poll() == 1
    bigger = _config(tmp_path, bda={"members": 10})
    with pytest.raises(ConfigError, match="other settings \\(members\\)") as err:
        BDALoop(bigger).start()
    assert "\n" not in str(err.value)
