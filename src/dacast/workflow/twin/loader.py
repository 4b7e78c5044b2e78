"""YAML files, plain dicts and preset names -> `TwinConfig`, through `dacast.workflow.schema`.

The twin's schema is the type hints of `TwinConfig` and its sections, plus two
hooks (`TWIN_HOOKS`): the ``model`` section, whose keys depend on the model's
``name`` (`dacast.models.get_model`), and the ``filter`` section, whose class is
chosen by its ``kind`` (`dacast.da.get_filter`). Every problem (unknown key,
wrong type, size <= 0, index out of range, mismatched dimensions, malformed
YAML, missing file) raises a one-line `ConfigError` that names the key path.

YAML schema (keys in ``[brackets]`` are optional; defaults in parentheses)::

    [preset]: lorenz96-letkf   # start from a named preset; the keys below override it
    model:
      name: lorenz96           # lorenz63 | lorenz96 | coupled_lorenz63
      [n_state]: 40            # lorenz96 only (>= 4)
      [forcing]: 8.0           # lorenz96 only, in (0, 1000]
      [variant]: constant      # coupled_lorenz63 only: constant | x1sq
      [omega]: 2.0             # coupled_lorenz63 only: ω, k, x3* of the extra oscillator
      [damping]: 2.0
      [x3_star]: 0.0
    dt: 0.05                   # model time step (> 0; below where RK4 blows up: 0.25 lorenz63, 2/F lorenz96)
    obs:
      [kind]: identity         # identity | subset | every_kth
      [error_std]: 1.0         # scalar or one value per observation (> 0)
      [indices]: [0, 2, 4]     # subset only, each in [0, n_state - 1]
      [k]: 2                   # every_kth only (> 0)
      [offset]: 0              # every_kth only (>= 0)
    obs_every: 1               # model steps between analyses (> 0)
    filter:
      kind: letkf              # etkf | letkf | enkf | free
      [inflation]: 1.0         # etkf, letkf, enkf: prior-anomaly inflation, in [0.01, 100]
      [rtpp]: 0.0              # etkf, letkf, enkf: in [0, 1]
      [rtps]: 0.0              # etkf, letkf, enkf: in [0, 1]
      [form]: auto             # etkf, letkf: auto | ensemble | gram
      [chunk_mb]: 16.0         # letkf: memory budget per batch of local analyses
      localization:            # letkf only (required there)
        length: 4.0            # length scale (grid units, > 0; .inf = none)
        [taper]: gaspari_cohn  # gaspari_cohn | gaussian
        [support]: 14.56       # cut-off distance (default 2 sqrt(10/3) length)
        [max_obs]: null        # cap on observations per grid point
        [min_weight]: 0.0      # drop observations whose taper weight is <= this
    members: 7                 # ensemble size (>= 2)
    cycles: 1000               # number of analysis times (> 0; cycles x obs_every <= 10^8 model steps)
    [burn_in]: 0.0             # model time units excluded from the time means
    [initial_std]: 1.0         # std of the Gaussian the truth and members start from
    [initial_mean]: null       # list of n_state values; null: the model's default state
    [seed]: 0                  # in [0, 2^63 - 1]
    [device]: cpu              # cpu | cuda | auto
    [dtype]: float64           # float64 | float32
    [divergence_threshold]: null  # RMSE that flags divergence; null: 10 x climatological std

Without ``preset``, the keys without brackets are required. Numbers must be finite (``.inf`` only where said),
integers int64, and the run's arrays must fit this machine's memory (`TwinConfig.estimated_bytes`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection
from pathlib import Path
from typing import Any

import torch

from dacast._device import resolve_device as _resolve_device
from dacast.da import FilterConfig, get_filter
from dacast.models import get_model
from dacast.workflow.schema import (
    ConfigError,
    Hooks,
    Preset,
    build,
    load_yaml_with,
    lookup,
    mapping,
    parse,
    parse_value,
    read_yaml,
    require,
    resolve,
    with_preset,
)
from dacast.workflow.schema import is_yaml_path as _is_yaml_path
from dacast.workflow.twin.config import (
    FILTER_NAMES,
    MODEL_NAMES,
    MODEL_PARAMETERS,
    ModelSpec,
    TwinConfig,
    config_to_dict,
)
from dacast.workflow.twin.presets import PRESETS


def model_spec_from_dict(data: Any, where: str = "model") -> ModelSpec:
    """A `ModelSpec` from a ``model:`` section: ``name`` (a registered model) and the keys that model takes."""
    data = mapping(data, where)
    if "name" not in data:
        raise ConfigError(f"{where} is missing the required key 'name' (one of {', '.join(MODEL_NAMES)})")
    name = data["name"]
    lookup(get_model, name, f"{where}.name")  # an unknown name: the error lists the registry's models
    require(name in MODEL_PARAMETERS, f"{where}.name must be one of {', '.join(MODEL_NAMES)}; got {name!r}")
    allowed = ("name", *MODEL_PARAMETERS[name])
    unknown = [k for k in data if k not in allowed]
    if unknown:
        raise ConfigError(
            f"key {unknown[0]!r} in {where} does not apply to model {name!r}; allowed: {', '.join(allowed)}"
        )
    return parse(ModelSpec, data, where)


def filter_from_dict(data: Any, where: str = "filter") -> FilterConfig:
    """A filter config from a ``filter:`` section: its ``kind`` (`dacast.da.get_filter`) and that class's fields."""
    data = mapping(data, where)
    if "kind" not in data:
        kinds = ", ".join(FILTER_NAMES.values())
        raise ConfigError(f"{where} is missing the required key 'kind' (one of {kinds})")
    cls = lookup(get_filter, data["kind"], f"{where}.kind")
    config = parse(cls, data, where, tags=("kind",))
    inflation = getattr(config, "inflation", 1.0)  # beyond these, inflation**2 overflows or underflows to 0
    require(0.01 <= inflation <= 100, f"{where}.inflation must lie in [0.01, 100], got {inflation}")
    return config


#: How `parse` reads the sections a type hint cannot describe; shared by every application with these sections.
TWIN_HOOKS: Hooks = {ModelSpec: model_spec_from_dict, FilterConfig: filter_from_dict}


def config_from_dict(data: Any) -> TwinConfig:
    """Build a validated `TwinConfig` from the YAML schema above (a plain mapping).

    Raises:
        ConfigError: on any invalid key or value, or a ``dt`` at which RK4 blows up on the model
            (`ModelSpec.check_dt`); the message is one line and names the key path.
    """
    config = parse(TwinConfig, with_preset(data, PRESETS, config_to_dict), hooks=TWIN_HOOKS)
    config.model.check_dt(config.dt)  # in Python a blow-up is a result (flagged); in a file it is a mistake
    return config


def load_yaml(path: str | Path) -> TwinConfig:
    """A validated `TwinConfig` from a YAML file following the schema in this module's docstring."""
    return load_yaml_with(path, config_from_dict)


def with_overrides(
    config: TwinConfig,
    *,
    members: int | None = None,
    cycles: int | None = None,
    seed: int | None = None,
    device: str | None = None,
) -> TwinConfig:
    """``config`` with the given sizes, seed or device replaced (validated again)."""
    changes: dict[str, Any] = {
        key: parse_value(int, value, key)
        for key, value in {"members": members, "cycles": cycles, "seed": seed}.items()
        if value is not None
    }
    if device is not None:
        changes["device"] = device
    return build(lambda **kw: dataclasses.replace(config, **kw), changes)


def is_yaml_path(target: str | Path, presets: Collection[str] = PRESETS) -> bool:
    """Whether ``target`` names a YAML file rather than one of ``presets`` (default: the twin's)."""
    return _is_yaml_path(target, presets)


def load_target(
    target: str | Path,
    *,
    members: int | None = None,
    cycles: int | None = None,
    seed: int | None = None,
    device: str | None = None,
) -> tuple[TwinConfig, Preset[TwinConfig] | None]:
    """Resolve a preset name or a YAML path, then apply overrides.

    Returns:
        ``(config, preset)``; ``preset`` is the named preset, or the one a YAML
        file starts from with ``preset:``, else ``None``.

    Raises:
        ConfigError: unknown preset (the message lists the valid names), missing
            or malformed file, or any invalid value.
    """
    config, preset = resolve(target, PRESETS, config_from_dict)
    return with_overrides(config, members=members, cycles=cycles, seed=seed, device=device), preset


def resolve_device(device: str) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; ``"cuda"`` without CUDA raises `ConfigError`."""
    try:
        return _resolve_device(device)
    except ValueError as err:
        raise ConfigError(str(err)) from None


__all__ = [
    "TWIN_HOOKS",
    "config_from_dict",
    "filter_from_dict",
    "is_yaml_path",
    "load_target",
    "load_yaml",
    "model_spec_from_dict",
    "read_yaml",
    "resolve_device",
    "with_overrides",
]
