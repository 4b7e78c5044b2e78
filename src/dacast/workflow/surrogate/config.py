"""Configuration and YAML loading of the surrogate <-> DA cycle (mission §S2); presets in ``presets.py``.

The cycle (`dacast.workflow.surrogate.run.run_surrogate`): iteration 0 runs
DA with the imperfect model; iteration ``n >= 1`` trains surrogate ``n - 1``
("LSTM-0", "LSTM-1", ... as in Goodliff & Miyoshi's talk) on the latest
analysis trajectory and runs DA again with it as the forecast model.

The modelled variables are the first ``imperfect.state_size`` entries of the
truth state (x0, x1, x2 of the 5-variable coupled Lorenz-63; all 40 points of
Lorenz-96). Observation indices refer to those variables.

YAML schema (keys in ``[brackets]`` are optional; defaults in parentheses)::

    [preset]: surrogate-lorenz63   # start from a preset; the keys below override it
    truth:
      name: coupled_lorenz63       # same schema as a twin experiment's model (lorenz63 | lorenz96 | coupled_lorenz63)
      [omega]: 2.0                 # coupled only
      [damping]: 2.0               # coupled only (k)
      [x3_star]: 0.0               # coupled only
      [variant]: constant          # coupled only: constant | x1sq
      [n_state]: 40                # lorenz96 only
      [forcing]: 8.0               # lorenz96 only
    imperfect: {name: lorenz63}    # same schema as a twin experiment's model
    dt: 0.01                       # model step (model time units)
    obs_every: 5                   # model steps per analysis (= the surrogate's step)
    obs: {kind: identity, error_std: 1.0}
    filter: {kind: etkf, inflation: 1.1}      # DA with the imperfect and the perfect model
    [surrogate_filter]: null       # DA with the surrogates (default: filter)
    [perfect_filter]: null         # DA with the perfect model, the reference line (default: filter)
    [adaptive_inflation]: null     # {weight: 0.05, minimum: 1.0, maximum: 25.0}: every DA run estimates its
                                   # inflation from its innovations, starting from its filter's (Li et al. 2009)
    [tuned_inflations]: []         # after the last iteration, rerun DA with the imperfect model and with the
                                   # final surrogate at each of these fixed (anomaly) inflations: the
                                   # best-tuned comparison, next to the cycle's own
    members: 20
    cycles: 4000                   # analyses per DA run
    [burn_in]: 2.0                 # model time units left out of RMSE and training
    [initial_std]: 1.0
    net: {kind: lstm, [window]: 8, [hidden]: 48, [layers]: 1, [kernel]: 5, [base]: none, [linear_skip]: false}
                                   # base: imperfect = residual on the imperfect model
                                   # linear_skip: add a linear map of the window to the LSTM's output
    [train]: {epochs: 40, batch_size: 64, lr: 0.003, val_fraction: 0.2, patience: 8}
    [train_target]: analysis       # analysis: next (smoothed) analysis; observation: next observation
    [weight_by_variance]: true     # weight training pairs by 1 / analysis variance (analysis target only)
    [smoother_lag]: 0              # train on lag-L fixed-lag smoothed analyses (delay-embedded DA state)
    [warm_start]: false            # start surrogate n from surrogate n - 1
    [iterations]: 30               # maximum surrogate iterations after iteration 0
    [tolerance]: 0.01              # relative analysis-RMSE improvement that counts
    [patience]: 3                  # iterations without it before stopping
    [test_cycles]: 2000            # independent truth segment for forecast scores
    [test_starts]: 200             # forecast start times drawn from it
    [free_leads]: 100              # steps of the free forecasts (valid time)
    [seed]: 0                      # in [0, 2^63 - 1]
    [device]: cpu                  # cpu | cuda | auto (training; DA runs on the CPU)
    [threads]: 1                   # torch CPU threads during the run, <= 1024 (null: torch's default)

The ``truth``, ``imperfect`` and filter sections are read like a twin experiment's
(`dacast.workflow.twin.loader.TWIN_HOOKS`); everything else follows the type hints
of `SurrogateConfig` (`dacast.workflow.schema.parse`). Numbers must be finite, ``dt`` below where RK4 blows up
on either model, all DA runs and forecasts together at most 10^8 model steps, and the arrays and networks must fit
this machine's memory (`SurrogateConfig.estimated_bytes`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from dacast.da import AdaptiveInflation, EnKFConfig, ETKFConfig, FilterConfig, LETKFConfig
from dacast.ml.surrogate import SurrogateKind, SurrogateSpec
from dacast.ml.surrogate_train import SurrogateTrainConfig
from dacast.models import Model
from dacast.workflow.limits import require_fits, require_seed, require_steps
from dacast.workflow.schema import (
    ConfigError,
    Presets,
    build,
    load_yaml_with,
    parse,
    parse_value,
    require,
    resolve,
    with_preset,
)
from dacast.workflow.surrogate.presets import surrogate_presets
from dacast.workflow.twin.config import (
    ModelSpec,
    ObsSpec,
    build_model,
    filter_to_dict,
    model_spec_to_dict,
    obs_spec_to_dict,
)
from dacast.workflow.twin.loader import TWIN_HOOKS, resolve_device

#: Lyapunov time of Lorenz-96 with F = 8 (model time units).
LYAPUNOV_TIME_L96 = 0.61


@dataclass(frozen=True, kw_only=True)
class NetSpec:
    """Surrogate architecture (see `dacast.ml.SurrogateSpec`); ``n_var`` and ``dt`` come from the experiment.

    ``base``: ``"imperfect"`` makes the network a residual correction of the
    imperfect model (next = imperfect forecast + network); ``"none"`` makes it a
    pure data-driven model (next = last state + network).
    """

    kind: SurrogateKind = "lstm"
    window: int = 8
    hidden: int = 48
    layers: int = 1
    kernel: int = 5
    base: Literal["imperfect", "none"] = "none"
    linear_skip: bool = False

    def spec(self, n_var: int, dt: float, imperfect: ModelSpec | None = None, base_steps: int = 1) -> SurrogateSpec:
        """The full `SurrogateSpec` (``imperfect`` and ``base_steps``: the base model with ``base="imperfect"``)."""
        require(self.base in ("imperfect", "none"), f"net.base must be imperfect or none, got {self.base!r}")
        base = "none"
        if self.base == "imperfect":
            require(imperfect is not None, "net.base 'imperfect' needs the imperfect model")
            assert imperfect is not None
            base = imperfect.name
        try:
            return SurrogateSpec(
                kind=self.kind,
                n_var=n_var,
                dt=dt,
                window=self.window,
                hidden=self.hidden,
                layers=self.layers,
                kernel=self.kernel,
                base=base,  # type: ignore[arg-type]
                base_forcing=imperfect.forcing if imperfect is not None else 8.0,
                base_steps=base_steps,
                linear_skip=self.linear_skip,
            )
        except ValueError as err:
            raise ConfigError(f"net: {err}") from None


@dataclass(frozen=True, kw_only=True)
class SurrogateConfig:
    """One surrogate <-> DA experiment (see the module docstring for every field)."""

    name: str = "custom"
    truth: ModelSpec
    imperfect: ModelSpec
    dt: float
    obs_every: int
    obs: ObsSpec
    filter: FilterConfig
    surrogate_filter: FilterConfig | None = None
    perfect_filter: FilterConfig | None = None
    adaptive_inflation: AdaptiveInflation | None = None
    tuned_inflations: tuple[float, ...] = ()
    members: int
    cycles: int
    burn_in: float = 2.0
    initial_std: float = 1.0
    net: NetSpec = field(default_factory=NetSpec)
    train: SurrogateTrainConfig = field(default_factory=SurrogateTrainConfig)
    train_target: Literal["analysis", "observation"] = "analysis"
    weight_by_variance: bool = True
    smoother_lag: int = 0
    warm_start: bool = False
    iterations: int = 30
    tolerance: float = 0.01
    patience: int = 3
    test_cycles: int = 2000
    test_starts: int = 200
    free_leads: int = 100
    seed: int = 0
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    threads: int | None = 1

    def __post_init__(self) -> None:
        require(math.isfinite(self.dt) and self.dt > 0, f"dt must be > 0, got {self.dt}")
        require(self.obs_every > 0, f"obs_every must be > 0, got {self.obs_every}")
        require(self.members >= 2, f"members must be >= 2, got {self.members}")
        require(self.cycles > 0, f"cycles must be > 0, got {self.cycles}")
        length = self.cycles * self.step
        require(math.isfinite(length), f"the run's model time dt x obs_every x cycles overflows, dt={self.dt}")
        require(0 <= self.burn_in < length, f"burn_in must be >= 0 and < the run ({length:g}), got {self.burn_in}")
        require(0 <= self.initial_std < math.inf, f"initial_std must be >= 0, got {self.initial_std}")
        require(self.iterations >= 0, f"iterations must be >= 0, got {self.iterations}")
        require(self.tolerance >= 0, f"tolerance must be >= 0, got {self.tolerance}")
        require(
            all(0.01 <= f <= 100 for f in self.tuned_inflations),
            f"tuned_inflations must be positive numbers in [0.01, 100], got {list(self.tuned_inflations)}",
        )
        adaptive = self.adaptive_inflation  # a covariance factor: the square of an anomaly inflation
        require(
            adaptive is None or 1e-4 <= adaptive.minimum and adaptive.maximum <= 1e4,
            "adaptive_inflation.minimum and .maximum must lie in [1e-4, 1e4] (anomaly inflation 0.01 to 100)",
        )
        require(
            self.train_target in ("analysis", "observation"),
            f"train_target must be analysis or observation, got {self.train_target!r}",
        )
        require(self.smoother_lag >= 0, f"smoother_lag must be >= 0, got {self.smoother_lag}")
        require(self.patience >= 1, f"patience must be >= 1, got {self.patience}")
        require(self.test_cycles > 8, f"test_cycles must be > 8, got {self.test_cycles}")
        require(self.test_starts >= 1, f"test_starts must be >= 1, got {self.test_starts}")
        require(self.free_leads >= 4, f"free_leads must be >= 4, got {self.free_leads}")
        require_seed(self.seed)
        require_seed(self.train.seed, "train.seed")
        require(self.train.epochs <= 10**5, f"train.epochs must be <= 100000, got {self.train.epochs}")
        threads_ok = self.threads is None or 1 <= self.threads <= 1024
        require(threads_ok, f"threads must be >= 1 and <= 1024 or null, got {self.threads}")
        require(self.device in ("cpu", "cuda", "auto"), f"device must be cpu, cuda or auto, got {self.device!r}")
        require(
            self.imperfect.name in ("lorenz63", "lorenz96"),
            f"imperfect.name must be lorenz63 or lorenz96, got {self.imperfect.name!r}",
        )
        require(
            self.n_var <= self.truth.state_size,
            f"the imperfect model has {self.n_var} variables but the truth only {self.truth.state_size}",
        )
        for f in (self.filter, self.surrogate_filter, self.perfect_filter):
            require(
                f is None or isinstance(f, (ETKFConfig, LETKFConfig, EnKFConfig)), "filter must be etkf, letkf or enkf"
            )
            if isinstance(f, LETKFConfig):
                require(self.imperfect.name == "lorenz96", "the LETKF needs the Lorenz-96 ring; use etkf or enkf")
        require(self.obs.count(self.n_var) > 0, "the observation network is empty")
        require(self.burn_cycles + self.net.window + 4 < self.cycles, "cycles is too short for burn_in and window")
        self.surrogate_spec()
        require(self.test_starts + self.net.window + 4 < self.test_cycles, "test_cycles is too short for test_starts")
        pad = self.net.kernel // 2
        require(self.net.kind != "cnn" or pad <= self.n_var, f"net.kernel must be <= {2 * self.n_var + 1} (2 n + 1)")
        runs = self.iterations + 2 + 2 * len(self.tuned_inflations)
        require_fits(
            self.estimated_bytes(), f"members={self.members} x cycles={self.cycles} x net.hidden={self.net.hidden}"
        )
        steps = runs * self.cycles + self.test_cycles + (self.iterations + 2) * self.test_starts * self.free_leads
        require_steps(
            steps * self.obs_every, f"{runs} DA runs of cycles={self.cycles} x obs_every={self.obs_every} and the tests"
        )

    def estimated_bytes(self) -> float:
        """Memory of the run's largest arrays (bytes, an estimate, float64): the truth and test segments; per DA run
        kept, the analysis means, spreads, smoothed states and observations; the ensemble with its smoother lag; the
        training windows; the network's parameters with gradients and Adam moments."""
        n, truth, c, net = float(self.n_var), float(self.truth.state_size), float(self.cycles), self.net
        kept = (self.iterations + 3 + 2 * len(self.tuned_inflations)) * c * n * 4.0
        ensemble = 6.0 * self.members * n * (self.smoother_lag + 1)
        windows = 2.0 * c * (net.window + 1) * n
        if net.kind == "lstm":
            h = float(net.hidden)
            params = 4.0 * h * (n + h + 1.0) + 4.0 * h * (2.0 * h + 1.0) * (net.layers - 1) + h * n + net.window * n * n
        else:
            params = net.hidden * net.kernel * (2.0 + net.hidden * net.layers + n)
        return 8.0 * ((c + self.test_cycles) * truth + kept + ensemble + windows + 4.0 * params)

    @property
    def n_var(self) -> int:
        """Number of modelled variables."""
        return self.imperfect.state_size

    @property
    def step(self) -> float:
        """Analysis interval = the surrogate's time step (model time units)."""
        return self.obs_every * self.dt

    @property
    def burn_cycles(self) -> int:
        """Analyses left out of RMSE and training."""
        return int(round(self.burn_in / self.step))

    @property
    def filter_for_surrogate(self) -> FilterConfig:
        """The filter used with the surrogates."""
        return self.surrogate_filter or self.filter

    def surrogate_spec(self) -> SurrogateSpec:
        """The surrogate architecture; a residual base steps like the imperfect model (``obs_every`` of ``dt``)."""
        return self.net.spec(self.n_var, self.step, self.imperfect, self.obs_every)

    def imperfect_model(self) -> Model:
        """The imperfect model object."""
        return build_model(self.imperfect)

    def device_obj(self) -> torch.device:
        """The training device (``auto``: CUDA when available); `ConfigError` for CUDA without CUDA."""
        return resolve_device(self.device)


def surrogate_config_to_dict(config: SurrogateConfig) -> dict[str, Any]:
    """JSON/YAML-serialisable form; `surrogate_config_from_dict` inverts it."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if f.name in ("filter", "surrogate_filter", "perfect_filter"):
            out[f.name] = None if value is None else filter_to_dict(value)
        elif f.name in ("truth", "imperfect"):
            out[f.name] = model_spec_to_dict(value)
        elif f.name == "obs":
            out[f.name] = obs_spec_to_dict(value)
        elif dataclasses.is_dataclass(value):
            out[f.name] = dataclasses.asdict(value)
        else:
            out[f.name] = value
    return out


#: The surrogate presets (defined in `dacast.workflow.surrogate.presets`), in listing order.
SURROGATE_PRESET_REGISTRY: Presets[SurrogateConfig] = Presets(surrogate_presets(), noun="surrogate preset")
#: Name -> configuration of every preset.
SURROGATE_PRESETS: dict[str, SurrogateConfig] = {name: p.config for name, p in SURROGATE_PRESET_REGISTRY.items()}
SURROGATE_LORENZ63 = SURROGATE_PRESETS["surrogate-lorenz63"]
SURROGATE_LORENZ96 = SURROGATE_PRESETS["surrogate-lorenz96"]


def get_surrogate_preset(name: str) -> SurrogateConfig:
    """The preset ``name``; the error lists valid names."""
    return SURROGATE_PRESET_REGISTRY.get(name).config


def surrogate_config_from_dict(data: Any) -> SurrogateConfig:
    """A validated `SurrogateConfig` from the YAML schema of this module (a plain mapping).

    Raises:
        ConfigError: on any invalid key or value; the message is one line and names the key path.
    """
    data = with_preset(data, SURROGATE_PRESET_REGISTRY, surrogate_config_to_dict)
    config = parse(SurrogateConfig, data, hooks=TWIN_HOOKS)
    for model in (config.truth, config.imperfect):
        model.check_dt(config.dt)  # a step at which RK4 blows up on either model
    return config


def load_surrogate_yaml(path: str | Path) -> SurrogateConfig:
    """A validated `SurrogateConfig` from a YAML file."""
    return load_yaml_with(path, surrogate_config_from_dict)


def load_surrogate_target(
    target: str | Path, *, iterations: int | None = None, device: str | None = None
) -> SurrogateConfig:
    """A preset name or a YAML path, with the CLI overrides applied (validated again)."""
    config, _ = resolve(target, SURROGATE_PRESET_REGISTRY, surrogate_config_from_dict)
    changes: dict[str, Any] = {}
    if iterations is not None:
        changes["iterations"] = parse_value(int, iterations, "iterations")
    if device is not None:
        changes["device"] = device
    return build(lambda **kw: dataclasses.replace(config, **kw), changes)


__all__ = [
    "LYAPUNOV_TIME_L96",
    "SURROGATE_LORENZ63",
    "SURROGATE_LORENZ96",
    "SURROGATE_PRESETS",
    "SURROGATE_PRESET_REGISTRY",
    "NetSpec",
    "SurrogateConfig",
    "get_surrogate_preset",
    "load_surrogate_target",
    "load_surrogate_yaml",
    "surrogate_config_from_dict",
    "surrogate_config_to_dict",
]
