"""Settings of the real-time service (`dacast realtime`) and its YAML schema.

YAML schema (every key optional; defaults in parentheses)::

    [preset]: bda-small          # start from a preset (`dacast realtime presets`); keys below override it
    mode: bda                    # bda: twin radar feed + LETKF loop | replay: real composites + nowcast loop
    folder: realtime             # holds inbox/, products/ and state/
    speed: 1.0                   # feeds run this many times faster than real time
    volumes: null                # the twin feed stops after this many volumes (null: runs until stopped)
    missing_volumes: []          # volumes (0-based) the twin feed does not deliver (fault drills)
    start_time: null             # the twin's first time, ISO UTC (null: now, rounded down to the cycle)
    grace_cycles: 0.5            # how long past its due time (in cycles) a volume is waited for
    retention_hours: 3.0         # issues older than this before the newest are removed
    forecast_minutes: 30.0       # length of the forecast from each analysis (min)
    frame_minutes: 1.0           # spacing of the forecast frames (min)
    forecast_members: 20         # members of the probability forecast
    threshold_dbz: 30.0          # probability and verification threshold (dBZ)
    fss_scale_km: 5.0            # neighbourhood of the fractions skill score (km)
    threads: 1                   # torch threads of the loop (the feed and the server share the other core)
    bda: {...}                   # the twin (`dacast bda run` settings; `cycles` is not used)
    replay: {source: mch, root: null, start: null, frames: null, past_frames: 3, leads: 12, motion: dis,
             threshold_mm_h: 1.0, checkpoint: null, device: auto}

Numbers must be finite; ``speed`` in (0, 1000].
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from dacast.da.gridded import GriddedLETKFConfig
from dacast.io.sources import SOURCES
from dacast.workflow.bda.config import BDAConfig, bda_config_from_dict, bda_config_to_dict, get_bda_preset
from dacast.workflow.limits import require_seed
from dacast.workflow.schema import ConfigError, Preset, Presets, mapping, parse, require, resolve, with_preset

Mode = Literal["bda", "replay"]
Motion = Literal["trec", "farneback", "dis"]


@dataclass(frozen=True, kw_only=True)
class ReplayConfig:
    """The replay feed and its nowcast loop.

    Attributes:
        source: ``mch``, ``fmi`` or ``knmi``.
        root: radar data root (``None``: ``$DACAST_RADAR_ROOT`` or the shared data folder).
        start: first frame, ISO UTC (``None``: the source's first event).
        frames: frames to replay (``None``: every frame of the event).
        past_frames: frames used for the motion field (>= 2).
        leads: nowcast lead times, one per frame spacing (12 x 5 min = 60 min).
        motion: motion estimator (DIS optical flow by default: TREC costs 2-3 s per 640x710 frame pair on
            one core, over the 2-s publication target; docs/realtime.md).
        threshold_mm_h: verification and colour threshold (mm/h).
        checkpoint: a ConvLSTM trained by ``dacast nowcast train`` (its folder or a ``.pt`` file): each issue
            then also gets the network's nowcast, added after the extrapolation one is published, and
            verified beside it (``None``: extrapolation only).
        device: where the ConvLSTM runs: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
    """

    source: str = "mch"
    root: str | None = None
    start: str | None = None
    frames: int | None = None
    past_frames: int = 3
    leads: int = 12
    motion: Motion = "dis"
    threshold_mm_h: float = 1.0
    checkpoint: str | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"

    def __post_init__(self) -> None:
        require(self.source in SOURCES, f"replay.source must be one of {', '.join(SOURCES)}, got {self.source!r}")
        require(self.frames is None or self.frames >= 1, f"replay.frames must be positive, got {self.frames}")
        require(2 <= self.past_frames <= 12, f"replay.past_frames must lie in [2, 12], got {self.past_frames}")
        require(1 <= self.leads <= 48, f"replay.leads must lie in [1, 48], got {self.leads}")
        require(self.threshold_mm_h > 0, f"replay.threshold_mm_h must be positive, got {self.threshold_mm_h}")
        if self.start is not None:
            parse_time(self.start, "replay.start")


@dataclass(frozen=True, kw_only=True)
class RealtimeConfig:
    """One real-time service: feeds, loop and products (see the module docstring for each key)."""

    mode: Mode = "bda"
    folder: str = "realtime"
    speed: float = 1.0
    volumes: int | None = None
    missing_volumes: tuple[int, ...] = ()
    start_time: str | None = None
    grace_cycles: float = 0.5
    retention_hours: float = 3.0
    forecast_minutes: float = 30.0
    frame_minutes: float = 1.0
    forecast_members: int = 20
    threshold_dbz: float = 30.0
    fss_scale_km: float = 5.0
    threads: int = 1
    bda: BDAConfig = field(default_factory=BDAConfig)
    replay: ReplayConfig = field(default_factory=ReplayConfig)

    def __post_init__(self) -> None:
        require(0 < self.speed <= 1000, f"speed must lie in (0, 1000], got {self.speed}")
        require(self.volumes is None or self.volumes >= 1, f"volumes must be positive or null, got {self.volumes}")
        require(all(v >= 0 for v in self.missing_volumes), "missing_volumes must be >= 0")
        require(0 <= self.grace_cycles <= 10, f"grace_cycles must lie in [0, 10], got {self.grace_cycles}")
        require(self.retention_hours > 0, f"retention_hours must be positive, got {self.retention_hours}")
        require(0 < self.forecast_minutes <= 180, f"forecast_minutes must lie in (0, 180], got {self.forecast_minutes}")
        step = self.frame_minutes * 60.0 / self.bda.model.dt
        require(
            self.frame_minutes > 0 and abs(step - round(step)) < 1e-9,
            f"frame_minutes ({self.frame_minutes:g}) must be a positive multiple of the model step "
            f"({self.bda.model.dt:g} s)",
        )
        frames = self.forecast_minutes / self.frame_minutes
        require(
            abs(frames - round(frames)) < 1e-9 and round(frames) >= 1,
            f"forecast_minutes ({self.forecast_minutes:g}) must be a whole number (>= 1) of frame_minutes "
            f"({self.frame_minutes:g})",
        )
        require(self.n_frames <= 181, f"forecast_minutes / frame_minutes gives {self.n_frames} frames; at most 181")
        require(self.forecast_members >= 1, f"forecast_members must be positive, got {self.forecast_members}")
        require(-30 <= self.threshold_dbz <= 90, f"threshold_dbz must lie in [-30, 90], got {self.threshold_dbz}")
        require(self.fss_scale_km > 0, f"fss_scale_km must be positive, got {self.fss_scale_km}")
        require(1 <= self.threads <= 64, f"threads must lie in [1, 64], got {self.threads}")
        if self.start_time is not None:
            parse_time(self.start_time, "start_time")

    @property
    def n_frames(self) -> int:
        """Forecast frames per issue, lead 0 included."""
        return round(self.forecast_minutes / self.frame_minutes) + 1

    @property
    def cycle_wall_seconds(self) -> float:
        """Wall seconds between two inputs at ``speed``."""
        interval = self.bda.cycle_seconds if self.mode == "bda" else 300.0
        return interval / self.speed

    def paths(self) -> RealtimePaths:
        """The folders of the service."""
        root = Path(self.folder)
        return RealtimePaths(inbox=root / "inbox", products=root / "products", state=root / "state")


@dataclass(frozen=True)
class RealtimePaths:
    """The service's folders: ``inbox`` (arriving files), ``products`` (what the server shows), ``state``."""

    inbox: Path
    products: Path
    state: Path

    @property
    def rejected(self) -> Path:
        """Inputs that could not be used, each with a ``.reason`` file beside it."""
        return self.state / "rejected"

    @property
    def done(self) -> Path:
        """Inputs already used (kept for the retention period)."""
        return self.state / "done"

    def create(self) -> None:
        """Create every folder; `ConfigError` (one line) when one cannot be written."""
        for folder in (self.inbox, self.products, self.state, self.rejected, self.done):
            try:
                folder.mkdir(parents=True, exist_ok=True)
                probe = folder / f".write-test-{id(self)}"
                probe.write_bytes(b"")
                probe.unlink()
            except OSError as err:
                raise ConfigError(f"cannot write to {folder}: {err.strerror or err}") from None


def parse_time(text: str, where: str) -> datetime:
    """An ISO 8601 time (naive = UTC) as an aware UTC datetime; `ConfigError` naming ``where``."""
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (TypeError, ValueError):
        raise ConfigError(f"{where} must be an ISO time such as 2026-07-01T12:00:00Z, got {text!r}") from None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def _bda_section(value: Any, where: str) -> BDAConfig:
    try:
        return bda_config_from_dict(value)
    except ConfigError as err:
        raise ConfigError(f"{where}.{err}" if not str(err).startswith(where) else str(err)) from None


def realtime_config_from_dict(data: Any) -> RealtimeConfig:
    """A validated `RealtimeConfig` from a YAML mapping (see the module docstring); `ConfigError` on bad input."""
    merged = with_preset(mapping(data), REALTIME_PRESETS, realtime_config_to_dict)
    config = parse(RealtimeConfig, merged, hooks={BDAConfig: _bda_section})
    require_seed(config.bda.seed)
    return config


def realtime_config_to_dict(config: RealtimeConfig) -> dict[str, Any]:
    """Plain (YAML-ready) form of ``config``; `realtime_config_from_dict` reads it back."""
    out = dataclasses.asdict(config)
    out["bda"] = bda_config_to_dict(config.bda)
    out["missing_volumes"] = list(config.missing_volumes)
    return out


def load_realtime_target(target: str | Path, **overrides: Any) -> tuple[RealtimeConfig, Preset[RealtimeConfig] | None]:
    """A preset name or YAML file, with command-line overrides (``None`` values ignored); `ConfigError` on problems."""
    config, preset = resolve(target, REALTIME_PRESETS, realtime_config_from_dict)
    given = {k: v for k, v in overrides.items() if v is not None}
    if given:
        config = realtime_config_from_dict({**realtime_config_to_dict(config), **given})
    return config, preset


def _presets() -> tuple[Preset[RealtimeConfig], ...]:
    small = get_bda_preset("bda-small").config
    mid = get_bda_preset("bda-256").config
    tiny = dataclasses.replace(
        small, members=8, grid=32, spinup_minutes=10.0, ensemble_pool=4, letkf=GriddedLETKFConfig(localization=1.0)
    )
    return (
        Preset(
            name="bda-small",
            description="twin radar every 30 s into a 64x64, 50-member LETKF; 30-min forecasts, 10-member probability",
            config=RealtimeConfig(bda=small, forecast_members=10),
        ),
        Preset(
            name="bda-256",
            description="256x256 at 500 m, 100 members (the latency target); 20-member probability",
            config=RealtimeConfig(bda=mid, forecast_members=20),
        ),
        Preset(
            name="bda-tiny",
            description="32x32, 8 members, 10-min forecasts: seconds per cycle (tests, quick demos)",
            config=RealtimeConfig(bda=tiny, forecast_members=4, forecast_minutes=10.0),
        ),
        Preset(
            name="replay-mch",
            description="MeteoSwiss composites (640x710, 5 min) replayed; 60-min extrapolation nowcasts, live skill",
            config=RealtimeConfig(mode="replay", replay=ReplayConfig(source="mch")),
        ),
        Preset(
            name="replay-fmi",
            description="FMI composites replayed; 60-min extrapolation nowcasts",
            config=RealtimeConfig(mode="replay", replay=ReplayConfig(source="fmi")),
        ),
        Preset(
            name="replay-knmi",
            description="KNMI composites replayed; 60-min extrapolation nowcasts",
            config=RealtimeConfig(mode="replay", replay=ReplayConfig(source="knmi")),
        ),
    )


#: The real-time presets, in listing order.
REALTIME_PRESETS: Presets[RealtimeConfig] = Presets(_presets())

__all__ = [
    "REALTIME_PRESETS",
    "RealtimeConfig",
    "RealtimePaths",
    "ReplayConfig",
    "load_realtime_target",
    "parse_time",
    "realtime_config_from_dict",
    "realtime_config_to_dict",
]
