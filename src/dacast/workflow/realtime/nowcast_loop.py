"""The nowcast loop of the real-time service: radar composites in, 60-minute nowcasts and live skill out.

For each composite that arrives in the inbox (the replay feed, or a real feed writing the
same files): it is read with `dacast.io.read_radar` (unreadable, of another source or
another grid: rejected with the reason), joins the recent frames, and an extrapolation
nowcast of ``replay.leads`` frames runs from the last ``replay.past_frames`` (motion on
dBR, `dacast.nowcast.extrapolation_nowcast`); every earlier nowcast with a frame valid now
is verified against it (CSI and FSS at ``replay.threshold_mm_h``), next to persistence.
A gap in the frames restarts the motion history and is reported. Products, checkpoint and
status as in the BDA loop.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import torch

from dacast.io import RadarReadError, read_radar, to_dbz
from dacast.io.sources import get_spec, match_source, to_datetime
from dacast.nowcast import extrapolation_nowcast
from dacast.workflow.files import save_checkpoint
from dacast.workflow.nowcast.config import extrapolation_config
from dacast.workflow.realtime.config import RealtimeConfig
from dacast.workflow.realtime.inbox import arrived
from dacast.workflow.realtime.products import DBZ_SCALE, frame_names, iso, publish_issue, render_png
from dacast.workflow.realtime.service import Desk, serve
from dacast.workflow.realtime.status import ServiceStatus
from dacast.workflow.realtime.verification import Verifier, skill_png
from dacast.workflow.runtime import Say, quiet

CHECKPOINT = "nowcast_loop.pt"
FRAME_MINUTES = 5.0


class NowcastLoop:
    """The loop of the ``replay`` mode; `run` until ``stop`` is set (or ``max_issues`` are published)."""

    def __init__(self, config: RealtimeConfig, *, say: Say = quiet, stop: threading.Event | None = None) -> None:
        self.config, self.say = config, say
        self.stop = stop or threading.Event()
        self.paths = config.paths()
        rp = config.replay
        self.spec = get_spec(rp.source)
        self.extrapolation = extrapolation_config({"motion": rp.motion, "n_frames": rp.past_frames})
        self.status = ServiceStatus.resume(
            self.paths.products, mode="replay", title=self.title, cycle_wall_seconds=config.cycle_wall_seconds
        )
        self.desk = Desk(self.paths, self.status, config.retention_hours, say)
        self.leads = [i * FRAME_MINUTES for i in range(rp.leads + 1)]
        self.frames: list[np.ndarray] = []  # recent rain-rate frames (mm/h), oldest first, 5 min apart
        self.times: list[datetime] = []
        self.grid: tuple[np.ndarray, np.ndarray] | None = None  # (y, x) coordinates of the first frame
        self.verifier: Verifier | None = None
        self.started = False

    @property
    def title(self) -> str:
        """One line for the page header."""
        return f"{self.spec.institution} radar composites, {FRAME_MINUTES:g}-min extrapolation nowcasts"

    def start(self) -> None:
        """Create the folders, remove half-written issues, resume from the checkpoint when there is one."""
        data = self.desk.open(CHECKPOINT, self._settings())
        if data is not None:
            self.frames = [f.numpy() for f in data["frames"]]
            self.times = [datetime.fromisoformat(t) for t in data["times"]]
            self.grid = (data["y"].numpy(), data["x"].numpy())
            self.verifier = self._new_verifier(self.frames[0].shape)
            self.verifier.load_state_dict(data["verifier"])
            self.desk.resumed(f"restarted; resumed after the frame of {iso(self.times[-1])}")
        self.desk.running()
        self.started = True

    def _settings(self) -> dict:
        """What a checkpoint must have been written with to be continued."""
        rp = self.config.replay
        return {
            "source": rp.source,
            "past_frames": rp.past_frames,
            "leads": rp.leads,
            "fss_scale_km": self.config.fss_scale_km,
        }

    def _new_verifier(self, shape: tuple[int, ...]) -> Verifier:
        scale = max(1, round(self.config.fss_scale_km * 1000.0 / self.spec.pixel_size_m))
        return Verifier(shape=(int(shape[0]), int(shape[1])), lead_minutes=self.leads, scale=scale)

    def run(self, max_issues: int | None = None) -> ServiceStatus:
        """Serve until ``stop`` is set or ``max_issues`` issues were published in this call."""
        if not self.started:
            self.start()
        serve(self.poll, self.status, self.stop, max_issues)
        return self.status

    def poll(self) -> int:
        """Look at the inbox once; nowcast from the newest usable frame.

        Frames older than the newest waiting one still join the motion history and verify the
        earlier nowcasts, but get no nowcast of their own (skipped, to keep up).

        Returns:
            The number of issues published (0 or 1).
        """
        waiting = []
        for path in arrived(self.paths.inbox):
            found = match_source(path)
            if found is None or found[0].name != self.spec.name:
                self.desk.reject(path, f"not a {self.spec.name} composite file name")
                continue
            waiting.append((to_datetime(found[1]).replace(tzinfo=UTC), path))
        usable = []
        for t, path in sorted(waiting):
            if self.times and t <= self.times[-1]:
                self.desk.skip(path, f"{path.name}: not newer than the latest frame ({iso(self.times[-1])}); not used")
                continue
            try:
                usable.append((t, self._read(path), path, path.stat().st_mtime))
            except RadarReadError as err:
                self.desk.reject(path, str(err).replace(str(path), path.name))
        for t, rain, path, _arrival in usable[:-1]:
            self._add_frame(t, rain, [])
            self.verifier_for(rain).observe(t, self._observed(rain))
            self.desk.skip(path, f"{path.name}: a newer frame was waiting; used for the motion, no nowcast of its own")
        if not usable:
            return 0
        self._issue(*usable[-1])
        return 1

    def _read(self, path: Path) -> np.ndarray:
        """Rain rate ``(y, x)`` mm/h of ``path``; `RadarReadError` for an unreadable file or another grid."""
        da = read_radar(path)
        y, x = da["y"].values, da["x"].values
        if self.grid is None:
            self.grid = (y, x)
        elif (
            y.shape != self.grid[0].shape
            or x.shape != self.grid[1].shape
            or not (np.allclose(y, self.grid[0]) and np.allclose(x, self.grid[1]))
        ):
            raise RadarReadError(f"wrong grid: {da.shape}, the service's is {(len(self.grid[0]), len(self.grid[1]))}")
        return da.values.astype(np.float32)

    def verifier_for(self, rain: np.ndarray) -> Verifier:
        """The verifier (made on the first frame's grid)."""
        if self.verifier is None:
            self.verifier = self._new_verifier(rain.shape)
        return self.verifier

    def _observed(self, rain: np.ndarray) -> np.ndarray:
        """1 where ``rain`` reaches the threshold, 0 below, NaN where there is no data: ``(y, x)``."""
        return np.where(np.isnan(rain), np.nan, rain >= self.config.replay.threshold_mm_h)

    def _add_frame(self, t: datetime, rain: np.ndarray, notes: list[str]) -> None:
        """Append a frame to the motion history; a gap restarts it (reported)."""
        if self.times and t - self.times[-1] != timedelta(minutes=FRAME_MINUTES):
            missing = round((t - self.times[-1]).total_seconds() / 60.0 / FRAME_MINUTES) - 1
            message = f"{missing} frame(s) missing before {iso(t)}: the motion restarts from this frame"
            self.status.event("missing", message)
            notes.append(message)
            self.frames, self.times = [], []
        keep = self.config.replay.past_frames
        self.frames, self.times = [*self.frames, rain][-keep:], [*self.times, t][-keep:]

    def _issue(self, t: datetime, rain: np.ndarray, path: Path, arrival: float) -> None:
        """Nowcast from the frame ``rain`` valid at ``t``; verify, publish, checkpoint."""
        rp, notes = self.config.replay, []
        self._add_frame(t, rain, notes)
        verifier = self.verifier_for(rain)
        t0 = time.perf_counter()
        forecast = None
        if len(self.frames) >= 2:
            with torch.inference_mode():
                fc = extrapolation_nowcast(torch.from_numpy(np.stack(self.frames)), rp.leads, self.extrapolation)
            forecast = np.concatenate([rain[None], fc.float().numpy()])
        else:
            notes.append("first frame (or after a gap): observation only until a second frame gives the motion")
        seconds_nowcast = time.perf_counter() - t0
        t1 = time.perf_counter()
        thr = rp.threshold_mm_h
        observed = self._observed(rain)
        verifier.observe(t, observed)
        if forecast is not None:
            verifier.add_issue(t, np.nan_to_num(forecast) >= thr, observed)
        a, b = self.spec.zr_a, self.spec.zr_b
        files = {"observation.png": render_png(to_dbz(rain, a, b), DBZ_SCALE, north_up=False)}
        products = {"observation": ["observation.png"]}
        if forecast is not None:
            names = frame_names("forecast", len(forecast))
            for name, frame in zip(names, forecast, strict=True):
                files[name] = render_png(to_dbz(frame, a, b), DBZ_SCALE, north_up=False)
            products["forecast"] = names
        scores = verifier.scores()
        files["verification.png"] = skill_png(scores, title=f"live skill at {thr:g} mm/h against the later frames")
        products["verification"] = ["verification.png"]
        scale = DBZ_SCALE.to_json(zr=(a, b))
        index = {
            "mode": "replay",
            "title": self.title,
            "attribution": self.spec.attribution,
            "grid": {"ny": int(rain.shape[0]), "nx": int(rain.shape[1]), "dx_km": self.spec.pixel_size_m / 1000.0},
            "lead_minutes": self.leads if forecast is not None else [0.0],
            "valid_times": [iso(t + timedelta(minutes=m)) for m in (self.leads if forecast is not None else [0.0])],
            "products": products,
            "scales": {"observation": scale, "forecast": scale},
            "flags": {"analysis": False, "missing_volume": False, "late": False, "diverged": False},
            "timing": {
                "arrival": iso(datetime.fromtimestamp(arrival, UTC)),
                "seconds_nowcast": seconds_nowcast,
                "seconds_products": time.perf_counter() - t1,
            },
            "verification": {"threshold": thr, "units": "mm/h", **scores},
            "notes": notes,
        }
        publish_issue(self.paths.products, t, files, index)
        save_checkpoint(
            {
                "settings": self._settings(),
                "frames": [torch.from_numpy(f) for f in self.frames],
                "times": [x.isoformat() for x in self.times],
                "y": torch.tensor(self.grid[0] if self.grid else []),
                "x": torch.tensor(self.grid[1] if self.grid else []),
                "verifier": verifier.state_dict(),
            },
            self.paths.state / CHECKPOINT,
        )
        self.desk.used(path)
        latency = self.desk.published(t, arrival)
        self.say(f"{iso(t)}: published" + ("" if latency is None else f" {latency:.2f} s after arrival"))


__all__ = ["CHECKPOINT", "FRAME_MINUTES", "NowcastLoop"]
