"""Settings of the learned regional model inside the 30-second LETKF (`dacast surrogate run bda-surrogate-*`).

One run (`dacast.workflow.bda_surrogate.run.run_bda_surrogate`):

1. makes training pairs of states one cycle apart in a *training period* (its own truth seed,
   never the verification period's) from ``source``: ``truth`` (truth runs: the upper bound),
   ``analyses`` (the analysis members of a BDA run with the imperfect physics: what a centre
   archives) or ``cycle`` (analyses -> surrogate -> analyses with the surrogate -> retrain,
   ``iterations`` times);
2. trains the periodic residual CNN (`dacast.ml.grid_surrogate`) on them;
3. runs the 30-second BDA twin of ``bda`` (same truth, radar volumes, seeds and LETKF) with the
   ensemble run by each model of ``experiments``: ``perfect`` (the truth's physics), ``imperfect``
   (the physics with the stated parameter error ``imperfect``) and ``surrogate``;
4. runs the surrogate freely for ``stability_cycles`` cycles (is it still finite and physical?).

YAML schema (keys in ``[brackets]`` are optional; defaults in parentheses)::

    [preset]: bda-surrogate-analyses  # start from a preset; the keys below override it
    [bda]: {preset: bda-small, cycles: 60}   # the verification twin (`dacast bda run`'s schema)
    [imperfect]: {alpha: 2.8e-4}      # the physics model's parameter error: alpha, beta, hr, hc, gamma
    [source]: analyses                # truth | analyses | cycle
    [training_cycles]: 240            # 30-s cycles of the training period
    [training_members]: 8             # truth runs, or analysis members kept per cycle
    [training_seed]: 1                # seed of the training period (must differ from bda.seed)
    [iterations]: 2                   # cycle only: retrainings on analyses made with the surrogate
    [net]: {channels: 24, layers: 4, bound: 8.0, base: none}   # base imperfect: a hybrid correcting the physics
    [train]: {epochs: 12, batch_size: 16, lr: 0.002, weight_decay: 0.0, val_fraction: 0.2, patience: 4,
              min_delta: 0.001, variable_weights: [1, 1, 1, 2], seed: 0, device: cpu}
    [experiments]: [perfect, imperfect, surrogate]
    [stability_cycles]: 500           # free run of the surrogate after training
    [stability_members]: 4
    [threads]: null                   # torch CPU threads (null: torch's default)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from dacast.ml.grid_surrogate import GridSurrogateSpec
from dacast.ml.grid_surrogate_train import GridTrainConfig
from dacast.models.wursch_craig import WurschCraigConfig
from dacast.models.wursch_craig_limits import unstable_step
from dacast.workflow.bda.config import BDAConfig, bda_config_from_dict, bda_config_to_dict
from dacast.workflow.bda_surrogate.presets import bda_surrogate_presets
from dacast.workflow.limits import read_yaml, require_fits, require_seed
from dacast.workflow.schema import (
    ConfigError,
    Presets,
    build,
    is_yaml_path,
    parse,
    parse_value,
    require,
    resolve,
    with_preset,
)

Source = Literal["truth", "analyses", "cycle"]
Experiment = Literal["perfect", "imperfect", "surrogate"]


@dataclass(frozen=True, kw_only=True)
class PhysicsError:
    """The imperfect physics: Würsch-Craig parameters that differ from the truth's (None: the truth's value)."""

    alpha: float | None = None
    beta: float | None = None
    hr: float | None = None
    hc: float | None = None
    gamma: float | None = None

    def apply(self, model: WurschCraigConfig) -> WurschCraigConfig:
        """``model`` with these parameters changed."""
        return replace(model, **{k: v for k, v in dataclasses.asdict(self).items() if v is not None})

    def describe(self, model: WurschCraigConfig) -> str:
        """``alpha 2.8e-4 (truth 7e-5)``-style text, or ``none``."""
        parts = [
            f"{k} {v:g} (truth {getattr(model, k):g})" for k, v in dataclasses.asdict(self).items() if v is not None
        ]
        return ", ".join(parts) or "none"


@dataclass(frozen=True, kw_only=True)
class NetSpec:
    """The network of `dacast.ml.grid_surrogate` (grid, cycle and noise come from ``bda``).

    ``base``: ``none`` for a purely learned model; ``imperfect`` for a hybrid that corrects the
    imperfect physics' forecast of each cycle (it learns the model error).
    """

    channels: int = 24
    layers: int = 4
    bound: float = 8.0
    base: Literal["none", "imperfect"] = "none"

    def __post_init__(self) -> None:
        require(1 <= self.channels <= 512, f"net.channels must lie in [1, 512], got {self.channels}")
        require(2 <= self.layers <= 32, f"net.layers must lie in [2, 32], got {self.layers}")
        require(0 < self.bound <= 1000, f"net.bound must lie in (0, 1000], got {self.bound}")
        require(self.base in ("none", "imperfect"), f"net.base must be none or imperfect, got {self.base!r}")


@dataclass(frozen=True, kw_only=True)
class BDASurrogateConfig:
    """One learned-regional-model experiment (see the module docstring)."""

    name: str = "bda-surrogate"
    bda: BDAConfig = field(default_factory=lambda: bda_config_from_dict({"preset": "bda-small", "cycles": 60}))
    imperfect: PhysicsError = field(default_factory=lambda: PhysicsError(alpha=2.8e-4))
    source: Source = "analyses"
    training_cycles: int = 240
    training_members: int = 8
    training_seed: int = 1
    iterations: int = 2
    net: NetSpec = field(default_factory=NetSpec)
    train: GridTrainConfig = field(default_factory=lambda: GridTrainConfig(epochs=12))
    experiments: tuple[Experiment, ...] = ("perfect", "imperfect", "surrogate")
    stability_cycles: int = 500
    stability_members: int = 4
    threads: int | None = None

    def __post_init__(self) -> None:
        require(bool(self.name.strip()), "name must not be empty")
        require(
            self.source in ("truth", "analyses", "cycle"),
            f"source must be truth, analyses or cycle, got {self.source!r}",
        )
        require(
            10 <= self.training_cycles <= 100_000,
            f"training_cycles must lie in [10, 100000], got {self.training_cycles}",
        )
        require(
            1 <= self.training_members <= self.bda.members,
            f"training_members must lie in [1, bda.members ({self.bda.members})]",
        )
        require_seed(self.training_seed)
        require(
            self.training_seed != self.bda.seed,
            "training_seed must differ from bda.seed (training and verification periods must not share a truth)",
        )
        require(1 <= self.iterations <= 20, f"iterations must lie in [1, 20], got {self.iterations}")
        require(
            len(self.experiments) >= 1 and len(set(self.experiments)) == len(self.experiments),
            "experiments must be a non-empty list without repeats",
        )
        require(
            0 <= self.stability_cycles <= 100_000,
            f"stability_cycles must lie in [0, 100000], got {self.stability_cycles}",
        )
        require(1 <= self.stability_members <= self.bda.members, "stability_members must lie in [1, bda.members]")
        require(self.threads is None or 1 <= self.threads <= 1024, f"threads must lie in [1, 1024], got {self.threads}")
        pairs = 2.0 * self.training_members * self.training_cycles * 4.0 * float(self.bda.grid) ** 2 * 4.0
        sizes = f"training_members={self.training_members} x training_cycles={self.training_cycles}"
        require_fits(pairs + self.bda.estimated_bytes(), f"{sizes} x grid {self.bda.grid}^2 (training pairs, float32)")
        problem = unstable_step(self.imperfect_model())
        require(problem is None, f"imperfect: {problem}")
        require(self.imperfect_model() != self.bda.model, "imperfect must change at least one parameter of the physics")

    def imperfect_model(self) -> WurschCraigConfig:
        """The imperfect physics model's settings."""
        return self.imperfect.apply(self.bda.model)

    def spec(self) -> GridSurrogateSpec:
        """The surrogate's architecture and setting (grid, cycle, triggering of ``bda.model``)."""
        return GridSurrogateSpec.for_model(
            self.bda.model,
            self.bda.cycle_seconds,
            base=self.imperfect_model() if self.net.base == "imperfect" else None,
            channels=self.net.channels,
            layers=self.net.layers,
            bound=self.net.bound,
        )

    def training_bda(self) -> BDAConfig:
        """The BDA run of the training period: own truth seed, ``training_cycles`` cycles, one forecast member."""
        return replace(
            self.bda,
            seed=self.training_seed,
            cycles=self.training_cycles,
            forecast_every=0,
            forecast_members=1,
            free_run_members=1,
            outage_cycles=(),
        )


def bda_surrogate_config_to_dict(config: BDASurrogateConfig) -> dict[str, Any]:
    """JSON/YAML form; `bda_surrogate_config_from_dict` reads it back."""
    out = dataclasses.asdict(config)
    out["bda"] = bda_config_to_dict(config.bda)
    out["experiments"] = list(config.experiments)
    out["train"]["variable_weights"] = list(config.train.variable_weights)
    out["imperfect"] = {k: v for k, v in out["imperfect"].items() if v is not None}
    return out


#: The presets (defined in `dacast.workflow.bda_surrogate.presets`), in listing order.
BDA_SURROGATE_PRESETS: Presets[BDASurrogateConfig] = Presets(bda_surrogate_presets(), noun="surrogate preset")


def _bda_section(value: Any, where: str) -> BDAConfig:
    try:
        return bda_config_from_dict(value)
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None


def bda_surrogate_config_from_dict(data: Any) -> BDASurrogateConfig:
    """A validated `BDASurrogateConfig` from the YAML schema of this module; `ConfigError` names the key path."""
    merged = with_preset(data, BDA_SURROGATE_PRESETS, bda_surrogate_config_to_dict)
    return parse(BDASurrogateConfig, merged, hooks={BDAConfig: _bda_section})


def is_bda_surrogate_target(target: str | Path) -> bool:
    """Whether ``target`` is one of these presets, or a readable YAML file of this schema (``bda`` or its preset).

    An unreadable file is not (the other application's loader reports it in one line).
    """
    if isinstance(target, str) and target in BDA_SURROGATE_PRESETS:
        return True
    if not is_yaml_path(target, BDA_SURROGATE_PRESETS):
        return False
    try:
        data = read_yaml(target)
    except ConfigError:
        return False
    preset = data.get("preset") if isinstance(data, dict) else None
    return isinstance(data, dict) and ("bda" in data or (isinstance(preset, str) and preset in BDA_SURROGATE_PRESETS))


def load_bda_surrogate_target(
    target: str | Path, *, device: str | None = None, iterations: int | None = None
) -> BDASurrogateConfig:
    """A preset name or YAML path, with the CLI overrides applied (validated again)."""
    config, _ = resolve(target, BDA_SURROGATE_PRESETS, bda_surrogate_config_from_dict)
    if iterations is not None:
        config = build(lambda **kw: replace(config, **kw), {"iterations": parse_value(int, iterations, "iterations")})
    if device is not None:
        dev = parse_value(Literal["cpu", "cuda", "auto"], device, "device")
        config = build(
            lambda **kw: replace(config, **kw),
            {"train": replace(config.train, device=dev), "bda": replace(config.bda, device=dev)},
        )
    return config


__all__ = [
    "BDA_SURROGATE_PRESETS",
    "BDASurrogateConfig",
    "Experiment",
    "NetSpec",
    "PhysicsError",
    "Source",
    "bda_surrogate_config_from_dict",
    "bda_surrogate_config_to_dict",
    "is_bda_surrogate_target",
    "load_bda_surrogate_target",
]
