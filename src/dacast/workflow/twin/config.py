"""Frozen configuration of a twin experiment (`TwinConfig`: model, initial states, observations, filter, sizes,
seed, device), and the objects built from it. Everything is validated when the object is made, sizes against this
machine's memory too; bad values raise a one-line `ConfigError` naming the field. YAML files and preset names become
a `TwinConfig` in `dacast.workflow.twin.loader` and `dacast.workflow.twin.presets`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, is_dataclass
from typing import Any, Literal, get_args

import torch

from dacast.da import EnKFConfig, ETKFConfig, FilterConfig, FreeRunConfig, LETKFConfig, Localization, get_filter
from dacast.models import Model, get_model
from dacast.obs import Grid, IndexObs, every_kth, identity, subset
from dacast.workflow.limits import require_fits, require_seed, require_steps
from dacast.workflow.schema import ConfigError, lookup, require

ModelName = Literal["lorenz63", "lorenz96", "coupled_lorenz63"]
FilterKind = Literal["etkf", "letkf", "enkf", "free"]
ObsKind = Literal["identity", "subset", "every_kth"]
Device = Literal["cpu", "cuda", "auto"]
DType = Literal["float64", "float32"]

MODEL_NAMES: tuple[str, ...] = get_args(ModelName)
#: The `ModelSpec` fields each model's constructor takes (the keys its YAML ``model:`` section may have).
MODEL_PARAMETERS: dict[str, tuple[str, ...]] = {
    "lorenz63": (),
    "lorenz96": ("n_state", "forcing"),
    "coupled_lorenz63": ("variant", "omega", "damping", "x3_star"),
}
OBS_KINDS: tuple[str, ...] = get_args(ObsKind)
DEVICES: tuple[str, ...] = get_args(Device)
DTYPES: tuple[str, ...] = get_args(DType)
#: Filter config class -> its registry name in `dacast.da.get_filter`.
FILTER_NAMES: dict[type, str] = {get_filter(kind): kind for kind in get_args(FilterKind)}

#: ``sqrt(mean over state of the climatological variance)`` measured from a
#: 16-member, 4000-step run of each model with default parameters (dacast 0.1.0).
CLIMATOLOGICAL_STD: dict[str, float] = {
    "lorenz63": 8.55,
    "coupled_lorenz63/constant": 6.76,
    "coupled_lorenz63/x1sq": 6.09,
    "lorenz96/F=8": 3.64,
}

#: The default divergence threshold is this many climatological standard deviations.
DIVERGENCE_FACTOR = 10.0
#: Time steps from which RK4 leaves a model's attractor for infinity within 2000 steps (measured from the attractor;
#: Lorenz-96 at F = 4 to 32: from 1.6/F to 2/F, so ``2 / max(F, 1)``): every run with such a step blows up.
UNSTABLE_DT: dict[str, float] = {"lorenz63": 0.25, "coupled_lorenz63": 0.2, "lorenz96": 2.0}
#: Largest Lorenz-96 forcing accepted (studies use 4 to 32; a larger F only needs a step below 2/F).
MAX_FORCING = 1000.0


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """Which dynamical model to run, and its parameters.

    Attributes:
        name: ``"lorenz63"``, ``"lorenz96"`` or ``"coupled_lorenz63"``.
        n_state: Lorenz-96 only: number of grid points (>= 4).
        forcing: Lorenz-96 only: forcing F (non-dimensional).
        variant: coupled Lorenz-63 only: ``"constant"`` or ``"x1sq"`` set point.
        omega, damping, x3_star: coupled Lorenz-63 only: ω, k and x3* of the extra oscillator.
    """

    name: ModelName
    n_state: int = 40
    forcing: float = 8.0
    variant: Literal["constant", "x1sq"] = "constant"
    omega: float = 2.0
    damping: float = 2.0
    x3_star: float = 0.0

    def __post_init__(self) -> None:
        require(self.name in MODEL_NAMES, f"model.name must be one of {', '.join(MODEL_NAMES)}; got {self.name!r}")
        require(self.n_state >= 4, f"model.n_state must be >= 4, got {self.n_state}")
        for name in ("forcing", "omega", "damping", "x3_star"):
            require(math.isfinite(getattr(self, name)), f"model.{name} must be finite, got {getattr(self, name)}")
        forcing_ok = self.name != "lorenz96" or 0 < self.forcing <= MAX_FORCING
        require(forcing_ok, f"model.forcing must lie in (0, {MAX_FORCING:g}] for lorenz96, got {self.forcing}")
        require(self.variant in ("constant", "x1sq"), f"model.variant must be constant or x1sq, got {self.variant!r}")
        require(self.damping > 0, f"model.damping must be > 0, got {self.damping}")

    @property
    def state_size(self) -> int:
        """Length of the state vector of this model."""
        return {"lorenz63": 3, "coupled_lorenz63": 5}.get(self.name, self.n_state)

    @property
    def gridded(self) -> bool:
        """Whether the model has grid coordinates (needed by the LETKF)."""
        return self.name == "lorenz96"

    @property
    def unstable_dt(self) -> float:
        """The time step from which RK4 blows up on this model (`UNSTABLE_DT`; Lorenz-96: over ``max(F, 1)``)."""
        return UNSTABLE_DT[self.name] / (max(self.forcing, 1.0) if self.name == "lorenz96" else 1.0)

    def check_dt(self, dt: float, where: str = "dt") -> None:
        """`ConfigError` unless ``dt`` is a positive step below `unstable_dt` (named ``where``)."""
        require(math.isfinite(dt) and dt > 0, f"{where} must be > 0, got {dt}")
        model, limit = self.name + (f" with forcing {self.forcing:g}" if self.gridded else ""), self.unstable_dt
        require(dt < limit, f"{where} must be < {limit:.3g} for {model}: RK4 blows up from there, got {dt}")


@dataclass(frozen=True, kw_only=True)
class ObsSpec:
    """The observation network (direct observations of state entries, diagonal R).

    Attributes:
        kind: ``"identity"`` (all entries), ``"subset"`` (``indices``) or ``"every_kth"`` (``offset, offset + k, ...``).
        error_std: observation-error standard deviation (state units), a scalar or one value per observation.
        indices: ``"subset"`` only: observed state indices.
        k: ``"every_kth"`` only: stride (> 0).
        offset: ``"every_kth"`` only: first observed index (>= 0).
    """

    kind: ObsKind = "identity"
    error_std: float | tuple[float, ...] = 1.0
    indices: tuple[int, ...] | None = None
    k: int | None = None
    offset: int = 0

    def __post_init__(self) -> None:
        require(self.kind in OBS_KINDS, f"obs.kind must be one of {', '.join(OBS_KINDS)}; got {self.kind!r}")
        stds = self.error_std if isinstance(self.error_std, tuple) else (self.error_std,)
        require(len(stds) > 0, "obs.error_std must not be empty")
        require(all(math.isfinite(s) and s > 0 for s in stds), f"obs.error_std must be positive, got {self.error_std}")
        if self.kind == "subset":
            require(self.indices is not None, "obs.kind 'subset' needs obs.indices")
            require(len(self.indices or ()) > 0, "obs.indices must not be empty")
            require(len(set(self.indices or ())) == len(self.indices or ()), "obs.indices must not repeat")
        else:
            require(self.indices is None, f"obs.indices only applies to obs.kind 'subset', not {self.kind!r}")
        if self.kind == "every_kth":
            require(self.k is not None, "obs.kind 'every_kth' needs obs.k")
            require(self.k is not None and self.k > 0, f"obs.k must be > 0, got {self.k}")
            require(self.offset >= 0, f"obs.offset must be >= 0, got {self.offset}")
        else:
            require(self.k is None, f"obs.k only applies to obs.kind 'every_kth', not {self.kind!r}")
            require(self.offset == 0, f"obs.offset only applies to obs.kind 'every_kth', not {self.kind!r}")

    def count(self, n_state: int) -> int:
        """Number of observations for a state of length ``n_state``, checked as `state_indices` (without listing)."""
        if self.kind == "identity":
            return n_state
        if self.kind == "every_kth":
            require(self.offset < n_state, f"obs.offset must be < n_state = {n_state}, got {self.offset}")
            return len(range(self.offset, n_state, self.k or 1))
        return len(self.state_indices(n_state))

    def state_indices(self, n_state: int) -> list[int]:
        """Observed state indices for a state of length ``n_state`` (checked to lie in range)."""
        if self.kind == "identity":
            idx = list(range(n_state))
        elif self.kind == "every_kth":
            assert self.k is not None
            require(self.offset < n_state, f"obs.offset must be < n_state = {n_state}, got {self.offset}")
            idx = list(range(self.offset, n_state, self.k))
        else:
            idx = list(self.indices or ())
            bad = [i for i in idx if not 0 <= i < n_state]
            require(not bad, f"obs.indices must lie in [0, {n_state - 1}], got {bad[0] if bad else ''}")
        return idx


@dataclass(frozen=True, kw_only=True)
class TwinConfig:
    """A complete twin experiment (DAPPER's ``HMM`` + method + run length).

    Attributes:
        model: the dynamical model (truth and forecast model are the same).
        dt: model time step (model time units).
        obs: observation network and errors.
        obs_every: model steps between two analyses (DAPPER's ``dko``), > 0.
        filter: one of `ETKFConfig`, `LETKFConfig`, `EnKFConfig`, `FreeRunConfig`.
        members: ensemble size (>= 2).
        cycles: number of analysis times (DAPPER's ``Ko + 1``), > 0.
        burn_in: model time units; analyses at times <= burn_in are excluded from the time means (DAPPER's
            ``BurnIn``). Reduced to half the run length when the run is shorter, as DAPPER does.
        initial_std: standard deviation (state units) of the Gaussian from which the truth's initial state *and*
            every initial member are drawn (DAPPER's ``X0 = GaussRV(mu=x0, C=initial_std**2)``), >= 0.
        initial_mean: mean of that Gaussian, shape ``(n_state,)``; ``None`` means ``model.default_initial_state()``.
        seed: in [0, 2^63 - 1]; seeds every random draw (initial states, observation noise, EnKF perturbations)
            through explicit `torch.Generator`s.
        device: ``"cpu"``, ``"cuda"`` or ``"auto"`` (CUDA when available).
        dtype: floating-point type of the ensemble, ``"float64"`` or ``"float32"``.
        divergence_threshold: an analysis or forecast RMSE above this (state units) flags the run as diverged;
            ``None`` means 10 climatological standard deviations of the model (`default_divergence_threshold`).
    """

    model: ModelSpec
    dt: float
    obs: ObsSpec
    obs_every: int
    filter: FilterConfig
    members: int
    cycles: int
    burn_in: float = 0.0
    initial_std: float = 1.0
    initial_mean: tuple[float, ...] | None = None
    seed: int = 0
    device: Device = "cpu"
    dtype: DType = "float64"
    divergence_threshold: float | None = None

    def __post_init__(self) -> None:
        require(isinstance(self.model, ModelSpec), "model must be a ModelSpec")
        require(isinstance(self.obs, ObsSpec), "obs must be an ObsSpec")
        require(
            isinstance(self.filter, tuple(FILTER_NAMES)),
            f"filter must be one of {', '.join(t.__name__ for t in FILTER_NAMES)}, got {type(self.filter).__name__}",
        )
        require(math.isfinite(self.dt) and self.dt > 0, f"dt must be > 0, got {self.dt}")
        require(self.obs_every > 0, f"obs_every must be > 0, got {self.obs_every}")
        require(self.members >= 2, f"members must be >= 2, got {self.members}")
        require(self.cycles > 0, f"cycles must be > 0, got {self.cycles}")
        require_steps(self.cycles * self.obs_every, f"cycles={self.cycles} x obs_every={self.obs_every}")
        require(math.isfinite(self.duration), f"the run's model time dt x obs_every x cycles overflows, dt={self.dt}")
        require(math.isfinite(self.burn_in) and self.burn_in >= 0, f"burn_in must be >= 0, got {self.burn_in}")
        std = self.initial_std
        require(math.isfinite(std) and std >= 0, f"initial_std must be >= 0, got {std}")
        require_seed(self.seed)
        require(self.device in DEVICES, f"device must be one of {', '.join(DEVICES)}; got {self.device!r}")
        require(self.dtype in DTYPES, f"dtype must be one of {', '.join(DTYPES)}; got {self.dtype!r}")
        limit = self.divergence_threshold
        require(limit is None or math.isfinite(limit) and limit > 0, f"divergence_threshold must be > 0, got {limit}")
        n = self.model.state_size
        if self.initial_mean is not None:
            require(
                len(self.initial_mean) == n,
                f"initial_mean has {len(self.initial_mean)} entries "
                f"but model {self.model.name!r} has {n} state variables",
            )
        n_obs = self.obs.count(n)
        require(n_obs > 0, "the observation network is empty")
        if isinstance(self.obs.error_std, tuple) and len(self.obs.error_std) != 1:
            require(
                len(self.obs.error_std) == n_obs,
                f"obs.error_std has {len(self.obs.error_std)} entries but there are {n_obs} observations",
            )
        if isinstance(self.filter, LETKFConfig):
            require(
                self.model.gridded,
                f"the LETKF needs a gridded model (lorenz96), not {self.model.name!r}; use etkf or enkf",
            )
        what = f"members={self.members} x n_state={n} x cycles={self.cycles}"
        require_fits(self.estimated_bytes(), what)

    def estimated_bytes(self) -> float:
        """Memory of the run's largest arrays (bytes, an estimate): the per-cycle outputs (truth and observations
        in float64; means, spreads and innovations in ``dtype``; twice, for the dataset written) and the
        ensemble's working set (prior, posterior, anomalies, H(x), ``members``² transforms)."""
        n, p, k, c = float(self.n_state), float(self.n_obs), float(self.members), float(self.cycles)
        size = 4.0 if self.dtype == "float32" else 8.0
        outputs = 2.0 * c * (8.0 * (n + p) + size * (4.0 * n + p))
        return outputs + size * k * (8.0 * n + 3.0 * p + 4.0 * k)

    @property
    def n_state(self) -> int:
        """State length."""
        return self.model.state_size

    @property
    def n_obs(self) -> int:
        """Number of observations per analysis."""
        return self.obs.count(self.n_state)

    @property
    def filter_name(self) -> str:
        """Registry name of the filter (``"etkf"``, ``"letkf"``, ``"enkf"``, ``"free"``)."""
        return FILTER_NAMES[type(self.filter)]

    @property
    def duration(self) -> float:
        """Model time of the last analysis (model time units)."""
        return self.cycles * self.obs_every * self.dt

    @property
    def effective_burn_in(self) -> float:
        """``burn_in``, or half the run when the run is not longer than it (DAPPER's rule)."""
        return self.burn_in if self.duration > self.burn_in else self.duration / 2.0


def build_model(spec: ModelSpec) -> Model:
    """The model object a `ModelSpec` describes (its constructor from `dacast.models.get_model`)."""
    constructor = lookup(get_model, spec.name, "model.name")
    return constructor(**{key: getattr(spec, key) for key in MODEL_PARAMETERS[spec.name]})


def model_grid(spec: ModelSpec) -> Grid | None:
    """Grid-point coordinates for localization (Lorenz-96's periodic ring), else ``None``."""
    if spec.gridded:
        return build_model(spec).grid()  # type: ignore[attr-defined]
    return None


def build_operator(config: TwinConfig) -> IndexObs:
    """The observation operator of ``config``; locations are state indices (grid units)."""
    n = config.n_state
    std: float | torch.Tensor
    if isinstance(config.obs.error_std, tuple):
        std = torch.tensor(config.obs.error_std, dtype=torch.float64)
        if std.numel() == 1:
            std = float(std[0])
    else:
        std = float(config.obs.error_std)
    if config.obs.kind == "identity":
        return identity(n, std)
    if config.obs.kind == "every_kth":
        assert config.obs.k is not None
        return every_kth(n, config.obs.k, std, offset=config.obs.offset)
    return subset(n, list(config.obs.indices or ()), std)


def climatological_std(spec: ModelSpec) -> float:
    """Approximate climatological standard deviation (state units) of a model.

    Lorenz-96 values for F != 8 scale the F = 8 value with F (measured:
    F = 4 gives 1.9, F = 16 gives 6.3), floored at 1.
    """
    if spec.name == "lorenz63":
        return CLIMATOLOGICAL_STD["lorenz63"]
    if spec.name == "coupled_lorenz63":
        return CLIMATOLOGICAL_STD[f"coupled_lorenz63/{spec.variant}"]
    return max(1.0, CLIMATOLOGICAL_STD["lorenz96/F=8"] * abs(spec.forcing) / 8.0)


def default_divergence_threshold(spec: ModelSpec) -> float:
    """10 climatological standard deviations (state units)."""
    return DIVERGENCE_FACTOR * climatological_std(spec)


def _plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def filter_to_dict(config: FilterConfig) -> dict[str, Any]:
    """``{"kind": name, **fields}`` with the localization as a nested dict."""
    return {"kind": FILTER_NAMES[type(config)], **_plain(config)}


def model_spec_to_dict(spec: ModelSpec) -> dict[str, Any]:
    """The keys of ``spec`` that apply to its model (the YAML ``model:`` section)."""
    return {"name": spec.name, **{key: getattr(spec, key) for key in MODEL_PARAMETERS[spec.name]}}


def obs_spec_to_dict(spec: ObsSpec) -> dict[str, Any]:
    """The keys of ``spec`` that apply to its kind (the YAML ``obs:`` section)."""
    out: dict[str, Any] = {"kind": spec.kind, "error_std": _plain(spec.error_std)}
    if spec.kind == "subset":
        out["indices"] = _plain(spec.indices)
    if spec.kind == "every_kth":
        out |= {"k": spec.k, "offset": spec.offset}
    return out


def config_to_dict(config: TwinConfig) -> dict[str, Any]:
    """JSON/YAML-serialisable form of ``config``; `dacast.workflow.twin.loader.config_from_dict` inverts it."""
    out = _plain(config)
    out["filter"] = filter_to_dict(config.filter)
    out["model"] = model_spec_to_dict(config.model)
    out["obs"] = obs_spec_to_dict(config.obs)
    return out


__all__ = [
    "FILTER_NAMES",
    "MODEL_NAMES",
    "MODEL_PARAMETERS",
    "ConfigError",
    "EnKFConfig",
    "ETKFConfig",
    "FreeRunConfig",
    "LETKFConfig",
    "Localization",
    "ModelSpec",
    "ObsSpec",
    "TwinConfig",
    "build_model",
    "build_operator",
    "climatological_std",
    "config_to_dict",
    "default_divergence_threshold",
    "filter_to_dict",
    "model_grid",
    "model_spec_to_dict",
    "obs_spec_to_dict",
]
