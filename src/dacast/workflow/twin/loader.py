"""YAML files, plain dicts and preset names -> `TwinConfig`, with one-line errors.

This is the only place where untyped input becomes configuration. Every
problem (unknown key, wrong type, size <= 0, index out of range, mismatched
dimensions, malformed YAML, missing file) raises `ConfigError`.

YAML schema (keys in ``[brackets]`` are optional; defaults in parentheses)::

    [preset]: lorenz96-letkf   # start from a named preset; the keys below override it
    model:
      name: lorenz96           # lorenz63 | lorenz96 | coupled_lorenz63
      [n_state]: 40            # lorenz96 only (>= 4)
      [forcing]: 8.0           # lorenz96 only
      [variant]: constant      # coupled_lorenz63 only: constant | x1sq
      [omega]: 2.0             # coupled_lorenz63 only: ω, k, x3* of the extra oscillator
      [damping]: 2.0
      [x3_star]: 0.0
    dt: 0.05                   # model time step (model time units, > 0)
    obs:
      [kind]: identity         # identity | subset | every_kth
      [error_std]: 1.0         # scalar or one value per observation (> 0)
      [indices]: [0, 2, 4]     # subset only, each in [0, n_state - 1]
      [k]: 2                   # every_kth only (> 0)
      [offset]: 0              # every_kth only (>= 0)
    obs_every: 1               # model steps between analyses (> 0)
    filter:
      kind: letkf              # etkf | letkf | enkf | free
      [inflation]: 1.0         # etkf, letkf, enkf: prior-anomaly inflation (> 0)
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
    cycles: 1000               # number of analysis times (> 0)
    [burn_in]: 0.0             # model time units excluded from the time means
    [initial_std]: 1.0         # std of the Gaussian the truth and members start from
    [initial_mean]: null       # list of n_state values; null: the model's default state
    [seed]: 0                  # >= 0
    [device]: cpu              # cpu | cuda | auto
    [dtype]: float64           # float64 | float32
    [divergence_threshold]: null  # RMSE that flags divergence; null: 10 x climatological std

Without ``preset``, the keys without brackets are required.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from dacast.da import EnKFConfig, ETKFConfig, FreeRunConfig, LETKFConfig, Localization
from dacast.workflow.twin.config import ConfigError, ModelSpec, ObsSpec, TwinConfig, config_to_dict
from dacast.workflow.twin.presets import PRESETS, Preset, get_preset

T = TypeVar("T")

_FILTER_CLASSES: dict[str, type] = {
    "etkf": ETKFConfig,
    "letkf": LETKFConfig,
    "enkf": EnKFConfig,
    "free": FreeRunConfig,
}
_TOP_REQUIRED = ("model", "dt", "obs", "obs_every", "filter", "members", "cycles")
_TOP_OPTIONAL = ("burn_in", "initial_std", "initial_mean", "seed", "device", "dtype", "divergence_threshold")
_MODEL_KEYS = {
    "lorenz63": ("name",),
    "lorenz96": ("name", "n_state", "forcing"),
    "coupled_lorenz63": ("name", "variant", "omega", "damping", "x3_star"),
}
_OBS_KEYS = ("kind", "error_std", "indices", "k", "offset")


# ----------------------------------------------------------------------------- value parsers


def _int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{where} must be an integer, got {value!r}")
    return value


def _float(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where} must be a number, got {value!r}")
    return float(value)


def _str(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{where} must be a string, got {value!r}")
    return value


def _optional(parse: Callable[[Any, str], Any]) -> Callable[[Any, str], Any]:
    def inner(value: Any, where: str) -> Any:
        return None if value is None else parse(value, where)

    return inner


def _list(parse: Callable[[Any, str], Any]) -> Callable[[Any, str], tuple[Any, ...]]:
    def inner(value: Any, where: str) -> tuple[Any, ...]:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        return tuple(parse(v, f"{where}[{i}]") for i, v in enumerate(value))

    return inner


def _float_or_list(value: Any, where: str) -> float | tuple[float, ...]:
    if isinstance(value, list | tuple):
        return _list(_float)(value, where)
    return _float(value, where)


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where} must be a mapping of keys to values, got {value!r}")
    for key in value:
        if not isinstance(key, str):
            raise ConfigError(f"{where} has a non-string key {key!r}")
    return value


def _check_keys(data: Mapping[str, Any], allowed: tuple[str, ...], where: str) -> None:
    unknown = [k for k in data if k not in allowed]
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]!r} in {where}; allowed: {', '.join(allowed)}")


def _parser_for(annotation: str) -> Callable[[Any, str], Any]:
    """A parser from a dataclass field's (string) annotation; literals are strings."""
    base = annotation.replace(" ", "")
    optional = base.endswith("|None")
    base = base.removesuffix("|None")
    parse: Callable[[Any, str], Any] = {"float": _float, "int": _int, "bool": _bool}.get(base, _str)
    return _optional(parse) if optional else parse


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{where} must be true or false, got {value!r}")
    return value


def _build(cls: type, kwargs: dict[str, Any], where: str) -> Any:
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (ValueError, TypeError) as err:
        raise ConfigError(f"{where}: {err}") from None


# ----------------------------------------------------------------------------- sections


def _dataclass_section(cls: type, data: Mapping[str, Any], where: str, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """Parse ``data`` into keyword arguments of dataclass ``cls`` (nested `Localization` handled)."""
    names = {f.name: f for f in dataclasses.fields(cls)}
    _check_keys(data, (*skip, *names), where)
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key in skip:
            continue
        field = names[key]
        if field.type == "Localization":
            sub_where = f"{where}.{key}"
            sub = _mapping(value, sub_where)
            kwargs[key] = _build(Localization, _dataclass_section(Localization, sub, sub_where), sub_where)
        else:
            kwargs[key] = _parser_for(str(field.type))(value, f"{where}.{key}")
    missing = [
        f.name
        for f in names.values()
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and f.name not in kwargs
    ]
    if missing:
        raise ConfigError(f"{where} is missing the required key {missing[0]!r}")
    return kwargs


def _model(data: Any, where: str = "model") -> ModelSpec:
    data = _mapping(data, where)
    if "name" not in data:
        raise ConfigError(f"{where} is missing the required key 'name' (one of {', '.join(_MODEL_KEYS)})")
    name = _str(data["name"], f"{where}.name")
    if name not in _MODEL_KEYS:
        raise ConfigError(f"unknown model {name!r}; choose one of: {', '.join(_MODEL_KEYS)}")
    allowed = _MODEL_KEYS[name]
    unknown = [k for k in data if k not in allowed]
    if unknown:
        raise ConfigError(f"key {unknown[0]!r} does not apply to model {name!r}; allowed: {', '.join(allowed)}")
    kwargs: dict[str, Any] = {"name": name}
    if "n_state" in data:
        kwargs["n_state"] = _int(data["n_state"], f"{where}.n_state")
    if "variant" in data:
        kwargs["variant"] = _str(data["variant"], f"{where}.variant")
    for key in ("forcing", "omega", "damping", "x3_star"):
        if key in data:
            kwargs[key] = _float(data[key], f"{where}.{key}")
    return _build(ModelSpec, kwargs, where)


def _obs(data: Any) -> ObsSpec:
    data = _mapping(data, "obs")
    _check_keys(data, _OBS_KEYS, "obs")
    parsers: dict[str, Callable[[Any, str], Any]] = {
        "kind": _str,
        "error_std": _float_or_list,
        "indices": _optional(_list(_int)),
        "k": _optional(_int),
        "offset": _int,
    }
    kwargs = {key: parsers[key](value, f"obs.{key}") for key, value in data.items()}
    return _build(ObsSpec, kwargs, "obs")


def _filter(data: Any) -> Any:
    data = _mapping(data, "filter")
    if "kind" not in data:
        raise ConfigError(f"filter is missing the required key 'kind' (one of {', '.join(_FILTER_CLASSES)})")
    kind = _str(data["kind"], "filter.kind").lower()
    if kind not in _FILTER_CLASSES:
        raise ConfigError(f"unknown filter {kind!r}; choose one of: {', '.join(_FILTER_CLASSES)}")
    cls = _FILTER_CLASSES[kind]
    where = f"filter ({kind})"
    return _build(cls, _dataclass_section(cls, data, where, skip=("kind",)), where)


# ----------------------------------------------------------------------------- public API


def _merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge ``override`` into ``base``; a section whose kind/name changes is replaced whole."""
    out = dict(base)
    for key, value in override.items():
        old = out.get(key)
        if isinstance(old, Mapping) and isinstance(value, Mapping):
            same = all(value.get(tag, old.get(tag)) == old.get(tag) for tag in ("kind", "name"))
            out[key] = _merge(old, value) if same else dict(value)
        else:
            out[key] = value
    return out


def config_from_dict(data: Any) -> TwinConfig:
    """Build a validated `TwinConfig` from the YAML schema above (a plain mapping).

    Raises:
        ConfigError: on any invalid key or value; the message is one line.
    """
    data = _mapping(data, "the configuration")
    if "preset" in data:
        preset = get_preset(_str(data["preset"], "preset"))
        data = _merge(config_to_dict(preset.config), {k: v for k, v in data.items() if k != "preset"})
    _check_keys(data, (*_TOP_REQUIRED, *_TOP_OPTIONAL), "the configuration")
    missing = [k for k in _TOP_REQUIRED if k not in data]
    if missing:
        raise ConfigError(f"the configuration is missing the required key {missing[0]!r}")
    kwargs: dict[str, Any] = {
        "model": _model(data["model"]),
        "dt": _float(data["dt"], "dt"),
        "obs": _obs(data["obs"]),
        "obs_every": _int(data["obs_every"], "obs_every"),
        "filter": _filter(data["filter"]),
        "members": _int(data["members"], "members"),
        "cycles": _int(data["cycles"], "cycles"),
    }
    scalars: dict[str, Callable[[Any, str], Any]] = {
        "burn_in": _float,
        "initial_std": _float,
        "initial_mean": _optional(_list(_float)),
        "seed": _int,
        "device": _str,
        "dtype": _str,
        "divergence_threshold": _optional(_float),
    }
    for key, parse in scalars.items():
        if key in data:
            kwargs[key] = parse(data[key], key)
    return _build(TwinConfig, kwargs, "configuration")


def read_yaml(path: str | Path) -> Any:
    """The parsed content of a YAML file; missing files and bad syntax raise `ConfigError`."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read {path}: {err}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"malformed YAML in {path}{where}: {problem}") from None


def load_yaml_with(path: str | Path, build: Callable[[Any], T]) -> T:
    """``build(data)`` of a YAML file; its `ConfigError`s are prefixed with the file name."""
    data = read_yaml(path)
    if data is None:
        raise ConfigError(f"{path} is empty")
    try:
        return build(data)
    except ConfigError as err:
        raise ConfigError(f"{Path(path).name}: {err}") from None


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
    sizes = {k: v for k, v in {"members": members, "cycles": cycles, "seed": seed}.items() if v is not None}
    for key, value in sizes.items():
        _int(value, key)
    changes: dict[str, Any] = dict(sizes)
    if device is not None:
        changes["device"] = device
    return _build(lambda **kw: dataclasses.replace(config, **kw), changes, "override")


def is_yaml_path(target: str | Path) -> bool:
    """Whether ``target`` names a YAML file: not a preset name, and a ``.yaml``/``.yml`` suffix or an existing file."""
    if isinstance(target, str) and target in PRESETS:
        return False
    path = Path(target)
    return path.suffix.lower() in (".yaml", ".yml") or path.is_file()


def load_target(
    target: str | Path,
    *,
    members: int | None = None,
    cycles: int | None = None,
    seed: int | None = None,
    device: str | None = None,
) -> tuple[TwinConfig, Preset | None]:
    """Resolve a preset name or a YAML path, then apply overrides.

    Returns:
        ``(config, preset)``; ``preset`` is the named preset, or the one a YAML
        file starts from with ``preset:``, else ``None``.

    Raises:
        ConfigError: unknown preset (the message lists the valid names), missing
            or malformed file, or any invalid value.
    """
    preset: Preset | None = None
    if is_yaml_path(target):
        config = load_yaml(target)
        data = read_yaml(target)
        if isinstance(data, Mapping) and isinstance(data.get("preset"), str):
            preset = get_preset(data["preset"])
    else:
        preset = get_preset(str(target))
        config = preset.config
    return with_overrides(config, members=members, cycles=cycles, seed=seed, device=device), preset


__all__ = [
    "config_from_dict",
    "is_yaml_path",
    "load_target",
    "load_yaml",
    "read_yaml",
    "with_overrides",
]
