"""The one configuration boundary: YAML mappings and preset names become frozen dataclasses here.

Every error is a `ConfigError` whose one-line message names the key path, e.g.
``filter.localization.length must be a number, got 'x'``. `parse` builds a frozen
dataclass from a mapping, driven by its type hints (nested dataclasses, ``Literal``,
``X | None`` and other unions, tuples, `Path`, ``bool``/``int``/``float``/``str``, no
bool as a number); `hooks` parse what the hints cannot say (a filter chosen by its
``kind``). `merge`/`with_preset` give ``preset: NAME`` plus overrides; `read_yaml`,
`load_yaml_with` read files; `Presets` is an application's registry of `Preset`s and
`resolve` turns "PRESET or FILE.yaml" into ``(config, preset | None)``. `dacast.workflow.limits`: int64, finite floats.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import types
import typing
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar, Union

from dacast.workflow.limits import (
    INFINITE_FIELDS,
    INT64_MAX,
    INT64_MIN,
    ConfigError,
    from_file,
    load_yaml_with,
    read_yaml,
    require,
    show,
)

T = TypeVar("T")
#: Parsers for the types that need more than their hints: ``hooks[tp](value, key_path) -> object``.
Hooks = Mapping[Any, Callable[[Any, str], Any]]

_ROOT = "the configuration"
_KIND_WORDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string", Path: "a string"}


def key_path(where: str, key: str | int) -> str:
    """``"a.b"`` + ``"c"`` -> ``"a.b.c"``; an int key is an index: ``"a[0]"``; ``""`` is the top level."""
    return f"{where}[{key}]" if isinstance(key, int) else f"{where}.{key}" if where else key


def mapping(value: Any, where: str = "") -> Mapping[str, Any]:
    """``value`` when it is a mapping with string keys; else `ConfigError`."""
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where or _ROOT} must be a mapping of keys to values, got {show(value)}")
    for key in value:
        if not isinstance(key, str):
            raise ConfigError(f"{where or _ROOT} has a non-string key {show(key)}")
    return value


def check_keys(data: Mapping[str, Any], allowed: Collection[str], where: str = "") -> None:
    """Reject the first key of ``data`` not in ``allowed``, listing the allowed ones."""
    if unknown := [k for k in data if k not in allowed]:
        raise ConfigError(f"unknown key {show(unknown[0])} in {where or _ROOT}; allowed: {', '.join(allowed)}")


def require_keys(data: Mapping[str, Any], required: Iterable[str], where: str = "") -> None:
    """Name the first key of ``required`` missing from ``data``."""
    if missing := [k for k in required if k not in data]:
        raise ConfigError(f"{where or _ROOT} is missing the required key {missing[0]!r}")


def lookup(get: Callable[[str], T], name: Any, where: str) -> T:
    """``get(name)`` from a registry; a non-string or unknown name raises `ConfigError` naming ``where``."""
    if not isinstance(name, str):
        raise ConfigError(f"{where} must be a string, got {show(name)}")
    try:
        return get(name)
    except KeyError as err:
        given = err.args[0] if err.args else name
        message = given if isinstance(given, str) and given != name else f"unknown value {show(name)}"  # a bare key
        raise ConfigError(f"{where}: {message}") from None


def build(factory: Callable[..., T], kwargs: Mapping[str, Any], where: str = "") -> T:
    """``factory(**kwargs)`` with its errors as `ConfigError` prefixed by ``where`` (unless they name it already)."""
    try:
        return factory(**kwargs)
    except ConfigError as err:
        message = str(err)
        if where and not message.startswith(where):
            raise ConfigError(f"{where}: {message}") from None
        raise
    except (ValueError, TypeError, ArithmeticError) as err:  # ArithmeticError: e.g. an overflow in a check
        raise ConfigError(f"{where}: {err}" if where else str(err)) from None


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (Union, types.UnionType)


def _hook(tp: Any, hooks: Hooks | None) -> Callable[[Any, str], Any] | None:
    for key, parser in (hooks or {}).items():
        if key is tp or (_is_union(key) and _is_union(tp) and set(typing.get_args(key)) == set(typing.get_args(tp))):
            return parser
    return None


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(map(str, typing.get_args(tp)))
    if origin is tuple or dataclasses.is_dataclass(tp):
        return "a list" if origin is tuple else "a mapping"
    return _KIND_WORDS.get(tp, getattr(tp, "__name__", str(tp)))


def _fits(tp: Any, value: Any) -> bool:
    """Whether ``value`` has the shape of ``tp`` (list for tuples, mapping for dataclasses, else a scalar)."""
    if typing.get_origin(tp) is tuple:
        return isinstance(value, list | tuple)
    if dataclasses.is_dataclass(tp) or _is_union(tp):
        return isinstance(value, Mapping)
    return not isinstance(value, list | tuple | Mapping)


def _union(args: tuple[Any, ...], value: Any, where: str, hooks: Hooks | None, infinite: bool) -> Any:
    if value is None and type(None) in args:
        return None
    rest = tuple(a for a in args if a is not type(None))
    if len(rest) == 1:
        return parse_value(rest[0], value, where, hooks=hooks, infinite=infinite)
    hook = _hook(Union[rest], hooks)  # noqa: UP007 - a union built at run time
    if hook is not None:
        return hook(value, where)
    fitting = [a for a in rest if _fits(a, value)] or list(rest)
    errors = []
    for alternative in fitting:
        try:
            return parse_value(alternative, value, where, hooks=hooks, infinite=infinite)
        except ConfigError as err:
            errors.append(err)
    if len(fitting) == 1:
        raise errors[0]
    raise ConfigError(f"{where} must be {' or '.join(_describe(a) for a in rest)}, got {show(value)}")


def _scalar(tp: Any, value: Any, where: str, infinite: bool = False) -> Any:
    if tp is bool and not isinstance(value, bool):
        raise ConfigError(f"{where} must be true or false, got {show(value)}")
    if tp in (int, float) and (isinstance(value, bool) or not isinstance(value, int | float if tp is float else int)):
        raise ConfigError(f"{where} must be {_KIND_WORDS[tp]}, got {show(value)}")
    if tp is int and not INT64_MIN <= value <= INT64_MAX:
        raise ConfigError(f"{where} must lie in [-2^63, 2^63 - 1] (int64), got {show(value)}")
    if tp is float:
        number = float(value) if isinstance(value, float) or abs(value) < 2**1023 else math.inf
        if math.isnan(number) or (math.isinf(number) and not infinite):
            raise ConfigError(f"{where} must be a finite number, got {show(value)}")
        return number
    if tp is str and isinstance(value, datetime | date):
        return value.isoformat()  # YAML reads an unquoted time (2026-07-01T12:00:00Z) as a timestamp
    if tp in (str, Path) and not isinstance(value, str | Path):
        raise ConfigError(f"{where} must be a string, got {show(value)}")
    if tp is Path:
        return Path(value)
    if tp is not Any and isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"{where} must be {_describe(tp)}, got {show(value)}")
    return value


def parse_value(tp: Any, value: Any, where: str, *, hooks: Hooks | None = None, infinite: bool = False) -> Any:
    """``value`` checked against (and converted to) the type hint ``tp``; ``where`` is its key path.

    Integers must fit int64 and floats must be finite (``infinite=True``: ``±inf`` allowed, never NaN).
    """
    hook = _hook(tp, hooks)
    if hook is not None:
        return hook(value, where)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (Union, types.UnionType):
        return _union(args, value, where, hooks, infinite)
    if origin is Literal:
        if not any(value == a and type(value) is type(a) for a in args):
            raise ConfigError(f"{where} must be one of {', '.join(map(str, args))}; got {show(value)}")
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where} must be a list, got {show(value)}")
        items = list(enumerate(zip(args, value, strict=False)))
        if len(args) == 2 and args[1] is Ellipsis:
            items = [(i, (args[0], v)) for i, v in enumerate(value)]
        elif len(value) != len(args):
            raise ConfigError(f"{where} must have {len(args)} entries, got {show(value)}")
        return tuple(parse_value(a, v, key_path(where, i), hooks=hooks, infinite=infinite) for i, (a, v) in items)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return value if isinstance(value, tp) else parse(tp, value, where, hooks=hooks)
    return _scalar(tp, value, where, infinite)


def parse(
    cls: type[T],
    data: Any,
    where: str = "",
    *,
    hooks: Hooks | None = None,
    skip: Collection[str] = (),
    fixed: Mapping[str, Any] | None = None,
    tags: Collection[str] = (),
) -> T:
    """The frozen dataclass ``cls`` from the mapping ``data``, every field checked against its type hint.

    Args:
        cls: the dataclass.
        data: its keys and values (YAML-like: lists for tuples, strings for paths).
        where: key path of ``data`` in the whole configuration (``""``: the top level).
        hooks: parsers for types the hints do not describe (see `Hooks`), used at every depth.
        skip: fields that cannot be set here (rejected as unknown keys).
        fixed: field values set by the caller (rejected as keys, passed to ``cls``).
        tags: keys allowed in ``data`` but not passed on (e.g. the ``kind`` that chose ``cls``).

    Raises:
        ConfigError: not a mapping, an unknown or missing key, a wrong value (NaN, ``inf`` outside `INFINITE_FIELDS`,
            beyond int64), an error of ``cls`` itself, or too deep a nesting; the message names the key path.
    """
    try:
        data, fixed = mapping(data, where), dict(fixed or {})
        hints = typing.get_type_hints(cls)
        settable = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
        check_keys(data, (*tags, *(k for k in settable if k not in skip and k not in fixed)), where)
        infinite = {k: (cls, k) in INFINITE_FIELDS or bool(f.metadata.get("infinite")) for k, f in settable.items()}
        kwargs = {
            k: parse_value(hints[k], v, key_path(where, k), hooks=hooks, infinite=infinite[k])
            for k, v in data.items()
            if k not in tags
        }
    except RecursionError:
        raise ConfigError(f"{where or _ROOT} is nested too deeply to check") from None
    missing = dataclasses.MISSING
    required = [k for k, f in settable.items() if f.default is missing and f.default_factory is missing]
    require_keys({**kwargs, **fixed}, required, where)
    return build(cls, {**kwargs, **fixed}, where)


#: Keys whose value follows from another key's: ``length`` sets the Gaspari-Cohn ``support``.
DERIVED: Mapping[str, tuple[str, ...]] = {"length": ("support",)}


def merge(base: Mapping[str, Any], override: Mapping[str, Any], *, tags: Collection[str] = ("kind", "name")) -> dict:
    """Deep-merge ``override`` into ``base``; a section whose ``kind``/``name`` tag changes is replaced whole.

    A key that `DERIVED` says determines others drops them from ``base`` when ``override`` sets it alone:
    a YAML that sets ``localization.length`` gets the ``support`` of that length, not its preset's.
    """
    out = dict(base)
    for key, value in override.items():
        old = out.get(key)
        if isinstance(old, Mapping) and isinstance(value, Mapping):
            same = all(value.get(tag, old.get(tag)) == old.get(tag) for tag in tags)
            out[key] = merge(old, value, tags=tags) if same else dict(value)
        else:
            out[key] = value
        for derived in DERIVED.get(key, ()):
            if derived not in override:
                out.pop(derived, None)
    return out


@dataclass(frozen=True, kw_only=True)
class Preset(Generic[T]):
    """A named, documented configuration.

    Attributes:
        name: registry name, e.g. ``"lorenz96-letkf"``.
        description: one line for listings.
        config: the configuration.
        expected_rmse_analysis: time-mean analysis RMSE the source reports (state units), if any.
        source: where the set-up and the expected value come from.
    """

    name: str
    description: str
    config: T
    expected_rmse_analysis: float | None = None
    source: str = ""


class Presets(Mapping[str, Preset[T]]):
    """The presets of one application, in listing order: a read-only mapping name -> `Preset`.

    Unlike ``dict.get``, `get` raises `ConfigError` (listing the valid names) for an unknown name.
    """

    def __init__(self, presets: Iterable[Preset[T]], *, noun: str = "preset") -> None:
        self._presets: dict[str, Preset[T]] = {}
        for preset in presets:
            if preset.name in self._presets:
                raise ValueError(f"two presets are called {preset.name!r}")
            self._presets[preset.name] = preset
        self.noun = noun

    def __getitem__(self, name: str) -> Preset[T]:
        return self._presets[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._presets)

    def __len__(self) -> int:
        return len(self._presets)

    def get(self, name: str) -> Preset[T]:  # type: ignore[override]
        """The preset called ``name``; an unknown name raises `ConfigError` listing the valid ones."""
        if not isinstance(name, str) or name not in self._presets:
            raise ConfigError(f"unknown {self.noun} {show(name)}; choose one of: {', '.join(self._presets)}")
        return self._presets[name]


def with_preset(data: Any, presets: Presets[T], to_dict: Callable[[T], Mapping[str, Any]]) -> Mapping[str, Any]:
    """``data`` with a ``preset: NAME`` key replaced by that preset's settings (``to_dict``), ``data`` on top."""
    data = mapping(data)
    if "preset" not in data:
        return data
    name = data["preset"]
    if not isinstance(name, str):
        raise ConfigError(f"preset must be a name, got {show(name)}")
    return merge(to_dict(presets.get(name).config), {k: v for k, v in data.items() if k != "preset"})


def is_yaml_path(target: str | Path, presets: Collection[str]) -> bool:
    """Whether ``target`` names a YAML file: not one of ``presets``, and a ``.yaml``/``.yml`` suffix or a file."""
    if isinstance(target, str) and target in presets:
        return False
    with contextlib.suppress(OSError, ValueError):  # a name too long for a path: read_yaml says so
        return Path(target).suffix.lower() in (".yaml", ".yml") or Path(target).is_file()
    return True


def resolve(
    target: str | Path, presets: Presets[T], from_dict: Callable[[Any], T], *, file_preset: bool = True
) -> tuple[T, Preset[T] | None]:
    """A preset name or a YAML file (which may start with ``preset: NAME``) -> ``(config, preset)``.

    Args:
        target: a name in ``presets`` (names win over files) or a path.
        presets: the application's presets.
        from_dict: builds the configuration from the file's mapping (handling ``preset:``).
        file_preset: return the preset a file starts from (else ``None`` for every file).

    Returns:
        ``(config, preset)``: ``preset`` is the named preset, the file's ``preset:`` or ``None``.

    Raises:
        ConfigError: an unknown preset (listing the valid names), a missing, unreadable, empty or
            malformed file, or any invalid value (prefixed with the file name).
    """
    if not is_yaml_path(target, presets):
        preset = presets.get(str(target))
        return preset.config, preset
    data = read_yaml(target)
    config = from_file(target, data, from_dict)
    name = data.get("preset") if isinstance(data, Mapping) else None
    return config, presets.get(name) if file_preset and isinstance(name, str) else None


__all__ = [
    "ConfigError",
    "Hooks",
    "Preset",
    "Presets",
    "build",
    "check_keys",
    "is_yaml_path",
    "key_path",
    "load_yaml_with",
    "lookup",
    "mapping",
    "merge",
    "parse",
    "parse_value",
    "read_yaml",
    "require",
    "require_keys",
    "resolve",
    "show",
    "with_preset",
]
