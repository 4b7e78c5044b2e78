"""The feeds that fill the inbox: the BDA twin's radar and a replay of real radar composites.

Each runs as its own command (`dacast realtime feed twin|replay`), so a real radar feed can
replace it: all the service needs are files renamed into the inbox. Both pace themselves on
the wall clock (``speed`` times real time) and stop after their last file or when ``stop`` is set.

* Twin radar: the truth of the BDA twin (its own triggering noise) advances 30 s per volume
  and the simulated radar scans it (`RadarTwin`); volume ``k`` is valid at ``start + (k+1) x 30 s``
  and is delivered at that time on the feed's clock. Its state (truth, next volume) is kept in
  ``state/twin_feed.pt`` after every volume, so a restarted feed carries on.
* Replay: the files of one event of ``../shared/data/radar`` (or any folder laid out like it)
  are copied into the inbox in time order, spaced as their times are (5 min, over ``speed``).
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from dacast.io import default_radar_root, find_frames, list_events
from dacast.io.sources import match_source, to_datetime
from dacast.models import WurschCraig
from dacast.workflow.bda.forecast import CycleState, Seeds, initial_truth
from dacast.workflow.bda.run import RadarTwin
from dacast.workflow.files import load_checkpoint, save_checkpoint
from dacast.workflow.limits import ConfigError
from dacast.workflow.realtime.config import RealtimeConfig, parse_time
from dacast.workflow.realtime.inbox import deliver, volume_dataset, write_volume
from dacast.workflow.runtime import Say, quiet, resolve_device

TWIN_STATE = "twin_feed.pt"


def _wait_until(wall: float, stop: threading.Event) -> bool:
    """Sleep until the monotonic time ``wall``; False when ``stop`` was set first."""
    while True:
        left = wall - time.monotonic()
        if stop.is_set():
            return False
        if left <= 0:
            return True
        stop.wait(min(left, 0.2))


def twin_start(config: RealtimeConfig) -> datetime:
    """The twin's first time: ``start_time``, or now rounded down to the cycle."""
    if config.start_time is not None:
        return parse_time(config.start_time, "start_time")
    step = config.bda.cycle_seconds
    now = time.time()
    return datetime.fromtimestamp(now - now % step, UTC)


def run_twin_feed(config: RealtimeConfig, *, say: Say = quiet, stop: threading.Event | None = None) -> int:
    """Deliver twin radar volumes into the inbox until ``config.volumes`` are done or ``stop`` is set.

    Returns:
        The number of volumes delivered by this call.
    """
    stop = stop or threading.Event()
    paths = config.paths()
    paths.create()
    bda = replace(config.bda, outage_cycles=())
    model = WurschCraig(bda.model)
    device = resolve_device("cpu")
    ckpt = paths.state / TWIN_STATE
    if ckpt.exists():
        data = load_checkpoint(ckpt)
        truth, k, start = data["truth"], int(data["volume"]), datetime.fromisoformat(data["start"])
        say(f"twin feed: carrying on at volume {k + 1}")
    else:
        say("twin feed: spinning up the truth")
        truth, k, start = initial_truth(bda, model, device), 0, twin_start(config)
    state = CycleState(cycle=k, truth=truth, ensemble=truth.new_zeros(0), free=truth.new_zeros(0))
    radar = RadarTwin(bda, model, Seeds.of(bda.seed), state, say)
    first, wall0, delivered = k, time.monotonic(), 0
    interval = config.cycle_wall_seconds
    while config.volumes is None or k < config.volumes:
        observation = radar(k)
        assert observation is not None
        t = start + timedelta(seconds=(k + 1) * bda.cycle_seconds)
        if not _wait_until(wall0 + (k + 1 - first) * interval, stop):
            break
        if k in config.missing_volumes:
            say(f"twin feed: volume {k + 1} ({t:%H:%M:%S}Z) withheld (missing_volumes)")
        else:
            write_volume(paths.inbox, volume_dataset(observation.y, observation.operator, t, bda.model, bda.radar), t)
            delivered += 1
        k += 1
        save_checkpoint({"truth": state.truth.cpu(), "volume": k, "start": start.isoformat()}, ckpt)
    return delivered


def replay_frames(config: RealtimeConfig) -> list[Path]:
    """The files the replay feed delivers, in time order; `ConfigError` when there are none."""
    rp = config.replay
    try:
        root = Path(rp.root) if rp.root else default_radar_root()
    except FileNotFoundError as err:
        raise ConfigError(str(err)) from None
    if not root.is_dir():
        raise ConfigError(f"replay.root {root} is not a folder")
    if rp.start is None:
        events = list_events(root, sources=(rp.source,))  # type: ignore[arg-type]
        if not events:
            raise ConfigError(f"no {rp.source} radar files under {root}")
        start, end = events[0].start, events[0].end
    else:
        start = np.datetime64(parse_time(rp.start, "replay.start").replace(tzinfo=None), "s")
        end = start + np.timedelta64(7, "D")
    frames = find_frames(root, rp.source, start, end)  # type: ignore[arg-type]
    if not frames:
        raise ConfigError(f"no {rp.source} radar files under {root} from {start}")
    return [f.path for f in frames[: rp.frames]]


def run_replay_feed(config: RealtimeConfig, *, say: Say = quiet, stop: threading.Event | None = None) -> int:
    """Copy the replayed composites into the inbox, spaced by their times over ``speed``; the number delivered."""
    stop = stop or threading.Event()
    paths = config.paths()
    paths.create()
    files = replay_frames(config)
    times = []
    for f in files:
        found = match_source(f)
        assert found is not None
        times.append(to_datetime(found[1]))
    wall0, delivered = time.monotonic(), 0
    for path, t in zip(files, times, strict=True):
        if not _wait_until(wall0 + (t - times[0]).total_seconds() / config.speed, stop):
            break
        deliver(path, paths.inbox, path.name)
        delivered += 1
        say(f"replay feed: {path.name}")
    return delivered


__all__ = ["TWIN_STATE", "replay_frames", "run_replay_feed", "run_twin_feed", "twin_start"]
