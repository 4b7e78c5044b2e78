"""The nowcast loop of the real-time service: radar composites in, 60-minute nowcasts and live skill out.

For each composite that arrives in the inbox (the replay feed, or a real feed writing the
same files): it is read with `dacast.io.read_radar` (unreadable, of another source or
another grid: rejected with the reason), joins the recent frames, and an extrapolation
nowcast of ``replay.leads`` frames runs from the last ``replay.past_frames`` (motion on
dBR, `dacast.nowcast.extrapolation_nowcast`); every earlier nowcast with a frame valid now
is verified against it (CSI and FSS at ``replay.threshold_mm_h``), next to persistence.
A gap in the frames restarts the motion history and is reported. Products, checkpoint and
status as in the BDA loop.

With ``replay.checkpoint`` set, a trained ConvLSTM (``dacast nowcast train``) also nowcasts from
each frame, exactly as ``dacast nowcast run --method convlstm`` would at that time. The network
is slower than extrapolation (seconds on a CPU), so the issue is published first with the
extrapolation nowcast and the ConvLSTM frames join it afterwards (`amend_issue`); its skill is
verified beside extrapolation and persistence.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import torch

from dacast.io import RadarReadError, read_radar, to_dbz
from dacast.io.sources import get_spec, match_source, to_datetime
from dacast.ml import Nowcaster
from dacast.nowcast import ExtrapolationConfig, extrapolation_nowcast
from dacast.workflow.files import save_checkpoint
from dacast.workflow.nowcast.config import check_device, extrapolation_config
from dacast.workflow.nowcast.run import checkpoint_model, convlstm_nowcast
from dacast.workflow.realtime.config import RealtimeConfig
from dacast.workflow.realtime.inbox import arrived
from dacast.workflow.realtime.products import (
    DBZ_SCALE,
    amend_issue,
    frame_names,
    iso,
    publish_issue,
    render_png,
)
from dacast.workflow.realtime.service import Desk, serve
from dacast.workflow.realtime.status import ServiceStatus
from dacast.workflow.realtime.verification import Verifier, skill_png
from dacast.workflow.runtime import Say, quiet
from dacast.workflow.schema import require

CHECKPOINT = "nowcast_loop.pt"
FRAME_MINUTES = 5.0


@dataclass(frozen=True)
class LearnedNowcaster:
    """A trained ConvLSTM (single- or multi-resolution) run by the nowcast loop.

    Attributes:
        model: the network (CPU until first used).
        extrapolation: settings of its extrapolation input (``None``: it reads none).
        path: where it was loaded from.
        device: ``auto``, ``cpu`` or ``cuda``.
    """

    model: Nowcaster
    extrapolation: ExtrapolationConfig | None
    path: str
    device: str

    @property
    def t_in(self) -> int:
        """Past frames the network reads."""
        return self.model.config.t_in


def load_replay_nowcaster(config: RealtimeConfig) -> LearnedNowcaster | None:
    """The ConvLSTM of ``config.replay.checkpoint`` (``None`` when none is set), checked against the loop.

    Raises:
        ConfigError: the checkpoint is missing or not a nowcaster, it forecasts fewer than ``replay.leads``
            leads, or ``replay.device`` is ``cuda`` without CUDA (one line each).
    """
    rp = config.replay
    if rp.checkpoint is None:
        return None
    model, extrapolation, _ = checkpoint_model(Path(rp.checkpoint))  # its input as it was trained with
    mc = model.config
    require(
        extrapolation is None or mc.t_in >= 2,
        f"replay.checkpoint {rp.checkpoint}: an extrapolation input needs t_in >= 2",
    )
    require(
        rp.leads <= mc.t_out,
        f"replay.leads ({rp.leads}) exceeds the {mc.t_out} leads the checkpoint {rp.checkpoint} forecasts",
    )
    check_device(rp.device)
    return LearnedNowcaster(model=model, extrapolation=extrapolation, path=rp.checkpoint, device=rp.device)


class NowcastLoop:
    """The loop of the ``replay`` mode; `run` until ``stop`` is set (or ``max_issues`` are published)."""

    def __init__(self, config: RealtimeConfig, *, say: Say = quiet, stop: threading.Event | None = None) -> None:
        self.config, self.say = config, say
        self.stop = stop or threading.Event()
        self.paths = config.paths()
        rp = config.replay
        self.spec = get_spec(rp.source)
        self.extrapolation = extrapolation_config({"motion": rp.motion, "n_frames": rp.past_frames})
        self.nowcaster = load_replay_nowcaster(config)
        self.history = max(rp.past_frames, self.nowcaster.t_in if self.nowcaster else 0)
        self.status = ServiceStatus.resume(
            self.paths.products, mode="replay", title=self.title, cycle_wall_seconds=config.cycle_wall_seconds
        )
        self.desk = Desk(self.paths, self.status, config.retention_hours, say)
        self.leads = [i * FRAME_MINUTES for i in range(rp.leads + 1)]
        self.frames: list[np.ndarray] = []  # recent rain-rate frames (mm/h), oldest first, 5 min apart
        self.times: list[datetime] = []
        self.grid: tuple[np.ndarray, np.ndarray] | None = None  # (y, x) coordinates of the first frame
        self.verifier: Verifier | None = None
        self.convlstm_verifier: Verifier | None = None  # with a nowcaster only
        self.started = False

    @property
    def title(self) -> str:
        """One line for the page header."""
        methods = "extrapolation and ConvLSTM" if self.nowcaster else "extrapolation"
        return f"{self.spec.institution} radar composites, {FRAME_MINUTES:g}-min {methods} nowcasts"

    def start(self) -> None:
        """Create the folders, remove half-written issues, resume from the checkpoint when there is one."""
        data = self.desk.open(CHECKPOINT, self._settings())
        if data is not None:
            self.frames = [f.numpy() for f in data["frames"]]
            self.times = [datetime.fromisoformat(t) for t in data["times"]]
            self.grid = (data["y"].numpy(), data["x"].numpy())
            self.verifier_for(self.frames[0]).load_state_dict(data["verifier"])
            if self.convlstm_verifier is not None:
                self.convlstm_verifier.load_state_dict(data["convlstm_verifier"])
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
            "checkpoint": rp.checkpoint,
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
            self._observe(t, rain)
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
        """The extrapolation's verifier (made on the first frame's grid, with the ConvLSTM's when there is one)."""
        if self.verifier is None:
            self.verifier = self._new_verifier(rain.shape)
            if self.nowcaster is not None:
                self.convlstm_verifier = self._new_verifier(rain.shape)
        return self.verifier

    def _observe(self, t: datetime, rain: np.ndarray) -> np.ndarray:
        """Score every kept nowcast valid at ``t`` against the frame ``rain``; the thresholded observation."""
        observed = self._observed(rain)
        self.verifier_for(rain).observe(t, observed)
        if self.convlstm_verifier is not None:
            self.convlstm_verifier.observe(t, observed)
        return observed

    def scores(self) -> dict:
        """`Verifier.scores` of extrapolation (``forecast``) and persistence, and of the ConvLSTM (``convlstm``)."""
        assert self.verifier is not None
        scores = self.verifier.scores()
        if self.convlstm_verifier is not None:
            extra = self.convlstm_verifier.scores()
            scores["csi"]["convlstm"], scores["fss"]["convlstm"] = extra["csi"]["forecast"], extra["fss"]["forecast"]
        return scores

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
        keep = self.history
        self.frames, self.times = [*self.frames, rain][-keep:], [*self.times, t][-keep:]

    def _issue(self, t: datetime, rain: np.ndarray, path: Path, arrival: float) -> None:
        """Nowcast from the frame ``rain`` valid at ``t``; verify, publish, checkpoint."""
        rp, notes = self.config.replay, []
        self._add_frame(t, rain, notes)
        verifier = self.verifier_for(rain)
        t0 = time.perf_counter()
        forecast = None
        if len(self.frames) >= 2:
            past = np.stack(self.frames[-rp.past_frames :])
            with torch.inference_mode():
                fc = extrapolation_nowcast(torch.from_numpy(past), rp.leads, self.extrapolation)
            forecast = np.concatenate([rain[None], fc.float().numpy()])
        else:
            notes.append("first frame (or after a gap): observation only until a second frame gives the motion")
        seconds_nowcast = time.perf_counter() - t0
        t1 = time.perf_counter()
        thr = rp.threshold_mm_h
        observed = self._observe(t, rain)
        if forecast is not None:
            verifier.add_issue(t, np.nan_to_num(forecast) >= thr, observed)
        a, b = self.spec.zr_a, self.spec.zr_b
        files = {"observation.png": render_png(to_dbz(rain, a, b), DBZ_SCALE, north_up=False)}
        products = {"observation": ["observation.png"]}
        if forecast is not None:
            products["forecast"], frames = self._frames("forecast", forecast)
            files.update(frames)
        scores = self.scores()
        files["verification.png"] = skill_png(
            scores,
            title=f"live skill at {thr:g} mm/h against the later frames",
            labels={"forecast": "extrapolation", "convlstm": "ConvLSTM"},
        )
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
        if self.nowcaster is not None:
            index = {**index, "notes": [*notes, "the ConvLSTM nowcast is added when it is ready"]}
        publish_issue(self.paths.products, t, files, index)
        latency = self.desk.published(t, arrival)  # listed now: the ConvLSTM below does not delay it
        self.say(f"{iso(t)}: published" + ("" if latency is None else f" {latency:.2f} s after arrival"))
        if self.nowcaster is not None:
            self._add_convlstm(t, {**index, "notes": notes})
        save_checkpoint(
            {
                "settings": self._settings(),
                "frames": [torch.from_numpy(f) for f in self.frames],
                "times": [x.isoformat() for x in self.times],
                "y": torch.tensor(self.grid[0] if self.grid else []),
                "x": torch.tensor(self.grid[1] if self.grid else []),
                "verifier": verifier.state_dict(),
                **({"convlstm_verifier": self.convlstm_verifier.state_dict()} if self.convlstm_verifier else {}),
            },
            self.paths.state / CHECKPOINT,
        )
        self.desk.used(path)

    def _frames(self, kind: str, forecast: np.ndarray) -> tuple[list[str], dict[str, bytes]]:
        """PNG names and files of the frames of ``forecast`` ``(n, y, x)`` [mm/h]."""
        a, b = self.spec.zr_a, self.spec.zr_b
        names = frame_names(kind, len(forecast))
        pngs = [render_png(to_dbz(f, a, b), DBZ_SCALE, north_up=False) for f in forecast]
        return names, dict(zip(names, pngs, strict=True))

    def _add_convlstm(self, t: datetime, index: dict) -> None:
        """The ConvLSTM nowcast from the frames up to ``t``, added to the issue published with ``index`` and to
        the ConvLSTM's verifier."""
        assert self.nowcaster is not None and self.convlstm_verifier is not None
        rp, nc = self.config.replay, self.nowcaster
        if len(self.frames) < nc.t_in:
            message = f"no ConvLSTM nowcast: it needs {nc.t_in} consecutive frames, {len(self.frames)} so far"
            if amend_issue(self.paths.products, t, {}, {"notes": [*index["notes"], message]}) is not None:
                self.desk.amended(t)
            return
        t0 = time.perf_counter()
        past = torch.from_numpy(np.stack(self.frames[-nc.t_in :]))
        with torch.inference_mode():
            fc = convlstm_nowcast(nc.model, nc.extrapolation, past, rp.leads, device=nc.device).numpy()
        forecast = np.concatenate([self.frames[-1][None], fc])
        seconds = time.perf_counter() - t0
        # no observation: persistence is scored once, by the extrapolation's verifier
        self.convlstm_verifier.add_issue(t, np.nan_to_num(forecast) >= rp.threshold_mm_h, None)
        a, b = self.spec.zr_a, self.spec.zr_b
        names, files = self._frames("convlstm", forecast)
        update = {
            "lead_minutes": self.leads,
            "valid_times": [iso(t + timedelta(minutes=m)) for m in self.leads],
            "products": {"convlstm": names},
            "scales": {**index["scales"], "convlstm": DBZ_SCALE.to_json(zr=(a, b))},
            "timing": {**index["timing"], "seconds_convlstm": seconds},
            "notes": index["notes"],
            "convlstm": {"checkpoint": nc.path, "t_in": nc.t_in, "extrapolation_input": nc.extrapolation is not None},
        }
        folder = amend_issue(self.paths.products, t, files, update)
        if folder is not None:
            self.desk.amended(t)
            self.say(f"{iso(t)}: ConvLSTM nowcast added ({seconds:.2f} s)")


__all__ = ["CHECKPOINT", "FRAME_MINUTES", "LearnedNowcaster", "NowcastLoop", "load_replay_nowcaster"]
