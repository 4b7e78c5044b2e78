"""The assimilation-forecast loop of the real-time service: radar volumes in, LETKF analyses and forecasts out.

For each volume that arrives in the inbox (the twin radar feed, or any feed writing the
same files), on the cycle engine (`dacast.workflow.cycle.cycle`):

1. the ensemble runs from its last analysis to the volume's time (30 s, or more when
   volumes were missed or skipped), each member with its own noise;
2. H(x) of the prior and the gridded LETKF (`GriddedAnalyser`);
3. a forecast of ``forecast_minutes`` from the analysis mean (no noise) and from the first
   ``forecast_members`` members (P(dBZ > threshold)), a frame every ``frame_minutes``;
4. every earlier forecast with a frame valid now is verified against the volume (CSI, FSS);
5. products published as one issue folder, the latest analysis as netCDF, a checkpoint,
   the volume moved to ``state/done/``, then ``status.json``.

A volume not there ``grace_cycles`` after its due time is missing: the loop forecasts
without it and says so. When several volumes wait (the loop fell behind, or restarted),
the newest is assimilated and the older ones are skipped and counted. The ensemble
and the verification totals are checkpointed every cycle; after a kill the loop continues
from the checkpoint. With the same settings and start time the analyses equal
`dacast bda run`'s.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import torch
import xarray as xr
from torch import Tensor

from dacast.models import WurschCraig
from dacast.workflow.bda.forecast import Forecaster, Seeds, initial_state, state_dbz, torch_dtype
from dacast.workflow.bda.run import divergence_reason
from dacast.workflow.cycle import CycleStep, GriddedAnalyser, Observation, cycle
from dacast.workflow.files import atomic_write, save_checkpoint
from dacast.workflow.realtime.config import RealtimeConfig, parse_time
from dacast.workflow.realtime.inbox import RadarVolume, Rejected, arrived, read_volume, volume_observation
from dacast.workflow.realtime.products import (
    DBZ_SCALE,
    LATEST_ANALYSIS,
    PROBABILITY_SCALE,
    frame_names,
    iso,
    publish_issue,
    render_png,
)
from dacast.workflow.realtime.service import Desk, serve
from dacast.workflow.realtime.status import ServiceStatus
from dacast.workflow.realtime.verification import Verifier, skill_png
from dacast.workflow.runtime import Say, quiet, resolve_device

CHECKPOINT = "bda_loop.pt"


@dataclass
class LoopState:
    """What the loop carries from cycle to cycle (and checkpoints).

    Attributes:
        epoch: the time the initial ensemble is valid at (UTC); volume ``k`` is valid at ``epoch + k * cycle``.
        cycle: cycles done: the ensemble is valid at ``epoch + cycle * cycle_seconds``.
        ensemble: ``(members, 4, ny, nx)``.
    """

    epoch: datetime | None
    cycle: int
    ensemble: Tensor


class BDALoop:
    """The loop of the ``bda`` mode; `run` until ``stop`` is set (or ``max_issues`` are published)."""

    def __init__(self, config: RealtimeConfig, *, say: Say = quiet, stop: threading.Event | None = None) -> None:
        self.config, self.say = config, say
        self.stop = stop or threading.Event()
        self.paths = config.paths()
        bda = config.bda
        self.model = WurschCraig(bda.model)
        self.device = resolve_device(bda.device)
        self.forecaster = Forecaster(self.model)
        self.seeds = Seeds.of(bda.seed)
        self.analyser = GriddedAnalyser(bda.letkf, bda.dx_km)
        self.shape = (bda.grid, bda.grid)
        leads = [i * config.frame_minutes for i in range(config.n_frames)]
        scale = max(1, round(config.fss_scale_km / bda.dx_km))
        self.verifier = Verifier(shape=self.shape, lead_minutes=leads, scale=scale)
        self.status = ServiceStatus.resume(
            self.paths.products, mode="bda", title=self.title, cycle_wall_seconds=config.cycle_wall_seconds
        )
        self.desk = Desk(self.paths, self.status, config.retention_hours, say)
        self.state: LoopState | None = None
        self.last_arrival: tuple[int, float] | None = None  # (volume index, arrival wall time)

    @property
    def title(self) -> str:
        """One line for the page header."""
        bda = self.config.bda
        return f"BDA twin radar, {bda.grid}x{bda.grid} at {bda.model.dx:g} m, {bda.members} members, gridded LETKF"

    # ---- start-up ------------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Create the folders, remove half-written issues, and resume from the checkpoint or spin up the ensemble."""
        data = self.desk.open(CHECKPOINT, self._settings())
        if data is not None:
            epoch = datetime.fromisoformat(data["epoch"]) if data.get("epoch") else None
            self.state = LoopState(epoch=epoch, cycle=int(data["cycle"]), ensemble=data["ensemble"].to(self.device))
            self.verifier.load_state_dict(data["verifier"])
            at = iso(epoch + self._cycle_delta(self.state.cycle)) if epoch else "start"
            self.desk.resumed(f"restarted; resumed from the checkpoint of {at}")
        else:
            self.status.state = "starting"
            self.status.event("info", "spinning up the ensemble")
            self.status.save()
            bda = self.config.bda
            init = initial_state(bda, self.model, self.forecaster, self.device)
            epoch = parse_time(self.config.start_time, "start_time") if self.config.start_time else None
            self.state = LoopState(epoch=epoch, cycle=0, ensemble=init.ensemble)
        self.desk.running()

    def _settings(self) -> dict:
        """What a checkpoint must have been written with to be continued."""
        bda, config = self.config.bda, self.config
        return {
            "grid": bda.grid,
            "members": bda.members,
            "dtype": bda.dtype,
            "seed": bda.seed,
            "cycle_seconds": bda.cycle_seconds,
            "frames": config.n_frames,
            "frame_minutes": config.frame_minutes,
        }

    def _cycle_delta(self, n: int) -> timedelta:
        return timedelta(seconds=n * self.config.bda.cycle_seconds)

    # ---- the loop ------------------------------------------------------------------------------------------------

    def run(self, max_issues: int | None = None) -> ServiceStatus:
        """Serve until ``stop`` is set or ``max_issues`` issues were published in this call."""
        if self.state is None:
            self.start()
        serve(self.poll, self.status, self.stop, max_issues)
        return self.status

    def poll(self) -> int:
        """Look at the inbox once; run a cycle when a volume (or a missing one's deadline) is there.

        Returns:
            The number of issues published (0 or 1).
        """
        state = self.state
        assert state is not None
        waiting: list[tuple[int, RadarVolume, float]] = []
        for path in arrived(self.paths.inbox):
            try:
                volume = read_volume(path, self.config.bda.model)
                if state.epoch is None:
                    state.epoch = volume.time - self._cycle_delta(1)
                index = self._index(volume.time, state.epoch)
            except Rejected as err:
                self.desk.reject(path, str(err))
                continue
            if index <= state.cycle:
                self.desk.skip(path, f"{path.name}: arrived after the analysis of its time or a later one; not used")
                continue
            waiting.append((index, volume, path.stat().st_mtime))
        if waiting:
            waiting.sort(key=lambda w: w[0])
            for _index, volume, _t in waiting[:-1]:
                self.desk.skip(volume.path, f"{volume.path.name}: a newer volume was waiting; skipped to keep up")
            index, volume, arrival = waiting[-1]
            self._cycle(index, volume, arrival)
            return 1
        if state.epoch is not None and self.last_arrival is not None:
            last_index, last_wall = self.last_arrival
            due = last_wall + (state.cycle + 1 - last_index) * self.config.cycle_wall_seconds
            if time.time() > due + self.config.grace_cycles * self.config.cycle_wall_seconds:
                self._cycle(state.cycle + 1, None, None)
                return 1
        return 0

    def _index(self, t: datetime, epoch: datetime) -> int:
        seconds = (t - epoch).total_seconds()
        step = self.config.bda.cycle_seconds
        k = round(seconds / step)
        if abs(seconds - k * step) > 1e-6 or k < 1:
            raise Rejected(f"wrong time: {iso(t)} is not on this service's {step:g}-s cycle from {iso(epoch)}")
        return k

    def _cycle(self, index: int, volume: RadarVolume | None, arrival: float | None) -> None:
        """Forecast to volume ``index``'s time, assimilate ``volume`` (``None``: missing), publish, checkpoint."""
        config, bda, state = self.config, self.config.bda, self.state
        assert state is not None and state.epoch is not None
        spc = bda.steps_per_cycle
        observation = None
        if volume is not None:
            observation = volume_observation(volume, bda.model, bda.radar, dtype=torch_dtype(bda), device=self.device)

        def forecast(ensemble: Tensor, c: int) -> Tensor:
            return self.forecaster(ensemble, bda.cycle_seconds, seed=self.seeds.pool, start_step=c * spc)

        def observations(c: int) -> Observation | None:
            return observation if c == index - 1 else None

        steps = cycle(
            state.ensemble,
            forecast=forecast,
            observations=observations,
            analyse=self.analyser,
            cycles=range(state.cycle, index),
            precompute_hx=True,
        )
        last: CycleStep | None = None
        for last in steps:  # noqa: B007 - only the last step is published
            pass
        assert last is not None
        issue_time = state.epoch + self._cycle_delta(index)
        notes, flags = [], {"analysis": last.analysis is not None, "missing_volume": volume is None, "late": False}
        reason = divergence_reason(last)
        ensemble = last.posterior
        if reason:
            flags["analysis"], flags["diverged"] = False, True
            ensemble = last.prior
            self.status.event("diverged", f"{iso(issue_time)}: {reason}; the forecast is kept, no analysis")
            notes.append(f"the analysis diverged ({reason}): forecast only")
        if volume is None:
            self.status.counts["forecast_only"] += 1
            message = f"no radar volume for {iso(issue_time)}: forecast only"
            self.status.event("missing", message)
            notes.append(message)
        else:
            self.status.counts["analyses"] += int(flags["analysis"])
            if self.last_arrival is not None and arrival is not None:
                due = self.last_arrival[1] + (index - self.last_arrival[0]) * config.cycle_wall_seconds
                if arrival > due + 0.1 * config.cycle_wall_seconds:
                    flags["late"] = True
                    self.status.counts["late"] += 1
                    late = f"{volume.path.name} arrived {arrival - due:.1f} s late; assimilated (still the newest)"
                    self.status.event("late", late, volume.path.name)
                    notes.append(late)
            self.last_arrival = (index, arrival if arrival is not None else time.time())
        state.ensemble, state.cycle = ensemble, index
        timing = {
            "arrival": None if arrival is None else iso(datetime.fromtimestamp(arrival, UTC)),
            "seconds_forecast": last.seconds["forecast"],
            "seconds_analysis": last.seconds["observation"] + last.seconds["analysis"],
        }
        self._publish(issue_time, volume, flags, notes, timing, spc * index)
        save_checkpoint(
            {
                "settings": self._settings(),
                "epoch": state.epoch.isoformat(),
                "cycle": state.cycle,
                "ensemble": state.ensemble.cpu(),
                "verifier": self.verifier.state_dict(),
            },
            self.paths.state / CHECKPOINT,
        )
        self.desk.used(None if volume is None else volume.path)
        latency = self.desk.published(issue_time, arrival)
        self.say(f"{iso(issue_time)}: published" + ("" if latency is None else f" {latency:.2f} s after arrival"))

    # ---- products ------------------------------------------------------------------------------------------------

    def _publish(
        self, issue_time: datetime, volume: RadarVolume | None, flags: dict, notes: list, timing: dict, step: int
    ) -> None:
        config, bda = self.config, self.config.bda
        state = self.state
        assert state is not None
        t0 = time.perf_counter()
        mean = state.ensemble.mean(0)
        det, prob = self._forecast(mean, state.ensemble[: config.forecast_members], step)
        timing["seconds_extended_forecast"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        files: dict[str, bytes] = {}
        products: dict[str, list[str]] = {}
        observed = None
        if volume is not None:
            files["observation.png"] = render_png(volume.reflectivity, DBZ_SCALE)
            products["observation"] = ["observation.png"]
            observed = np.where(np.isnan(volume.reflectivity), np.nan, volume.reflectivity > config.threshold_dbz)
        if flags["analysis"]:
            files["analysis.png"] = render_png(det[0], DBZ_SCALE)  # frame 0 is the analysis mean's reflectivity
            products["analysis"] = ["analysis.png"]
        names = frame_names("forecast", len(det))
        files.update({n: render_png(f, DBZ_SCALE) for n, f in zip(names, det, strict=True)})
        products["forecast"] = names
        names = frame_names("probability", len(prob))
        files.update({n: render_png(p, PROBABILITY_SCALE) for n, p in zip(names, prob, strict=True)})
        products["probability"] = names
        if observed is not None:
            self.verifier.observe(issue_time, observed)
        self.verifier.add_issue(issue_time, det > config.threshold_dbz, observed)
        scores = self.verifier.scores()
        files["verification.png"] = skill_png(
            scores, title=f"live skill at {config.threshold_dbz:g} dBZ (pooled over every verified forecast)"
        )
        products["verification"] = ["verification.png"]
        leads = self.verifier.lead_minutes
        index = {
            "mode": "bda",
            "title": self.title,
            "grid": {"ny": bda.grid, "nx": bda.grid, "dx_km": bda.dx_km},
            "lead_minutes": leads,
            "valid_times": [iso(issue_time + timedelta(minutes=m)) for m in leads],
            "products": products,
            "scales": {
                "observation": DBZ_SCALE.to_json(),
                "analysis": DBZ_SCALE.to_json(),
                "forecast": DBZ_SCALE.to_json(),
                "probability": PROBABILITY_SCALE.to_json(),
            },
            "flags": flags,
            "timing": timing,
            "verification": {"threshold": config.threshold_dbz, "units": "dBZ", **scores},
            "notes": notes,
        }
        timing["seconds_products"] = time.perf_counter() - t1
        publish_issue(self.paths.products, issue_time, files, index)
        atomic_write(self.paths.products / LATEST_ANALYSIS, self._analysis_dataset(issue_time, mean, det[0]).to_netcdf)

    def _forecast(self, mean: Tensor, members: Tensor, step: int) -> tuple[np.ndarray, np.ndarray]:
        """Reflectivity of the forecast from the mean and P(dBZ > threshold) of the members, ``(frames, ny, nx)``."""
        config, bda = self.config, self.config.bda
        frame_seconds = config.frame_minutes * 60.0
        frame_steps = round(frame_seconds / bda.model.dt)
        det = mean[None].clone()
        dets, probs = [state_dbz(bda, det[0])], [self._prob(members)]
        for j in range(config.n_frames - 1):
            s = step + j * frame_steps
            det = self.model.forecast(det, frame_seconds, seed=None, start_step=s)
            members = self.forecaster(members, frame_seconds, seed=self.seeds.pool, start_step=s)
            dets.append(state_dbz(bda, det[0]))
            probs.append(self._prob(members))
        return torch.stack(dets).cpu().numpy(), torch.stack(probs).cpu().numpy()

    def _prob(self, members: Tensor) -> Tensor:
        return (state_dbz(self.config.bda, members) > self.config.threshold_dbz).float().mean(0)

    def _analysis_dataset(self, t: datetime, mean: Tensor, dbz: np.ndarray) -> xr.Dataset:
        """The latest analysis: ``mean`` ``(4, ny, nx)``, the ensemble spread, and ``dbz`` ``(ny, nx)`` of the mean."""
        bda = self.config.bda
        spread = self.state.ensemble.std(0) if self.state is not None else torch.zeros_like(mean)
        km = bda.model.dx / 1000.0
        dims = ("y", "x")
        units = {"u": "m s-1", "v": "m s-1", "h": "m", "r": "1"}
        data = {name: (dims, mean[i].float().cpu().numpy(), {"units": units[name]}) for i, name in enumerate(units)}
        data.update(
            {
                f"{name}_spread": (dims, spread[i].float().cpu().numpy(), {"units": units[name]})
                for i, name in enumerate(units)
            }
        )
        data["reflectivity"] = (dims, dbz.astype(np.float32), {"units": "dBZ"})
        coords = {
            "y": ("y", np.arange(bda.grid) * km, {"units": "km"}),
            "x": ("x", np.arange(bda.grid) * km, {"units": "km"}),
        }
        return xr.Dataset(
            data,
            coords={**coords, "time": np.datetime64(t.astimezone(UTC).replace(tzinfo=None), "ns")},
            attrs={
                "Conventions": "CF-1.10",
                "title": "dacast real-time LETKF analysis (ensemble mean and spread)",
                "members": bda.members,
            },
        )


__all__ = ["CHECKPOINT", "BDALoop", "LoopState"]
