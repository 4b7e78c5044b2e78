"""What every configuration is held to, whatever the application: the bottom of the configuration boundary.

`dacast.workflow.schema` builds configurations and re-exports `ConfigError` and `require`
from here; the applications' ``config.py`` files check their sizes with `require_fits`
(arrays that fit this machine's memory, with the estimate in the message) and
`require_steps` (at most `MAX_MODEL_STEPS` model steps, so that no run silently runs
for ever). The rest is shared by the schema: integers fit int64 (`INT64_MIN`,
`INT64_MAX`: torch, NumPy and netCDF attributes hold no more), floats are finite except
the fields of `INFINITE_FIELDS`, YAML files do not repeat a key (`UniqueKeyLoader`), and
values in messages are shown short (`show`).
"""

from __future__ import annotations

import functools
import os
import reprlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml

from dacast.da.localization import Localization

T = TypeVar("T")

#: The range of every integer field (and of every seed): int64.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
#: ``(class, field)`` of the float fields where ``.inf`` has a documented meaning (no localization);
#: a dataclass field with ``metadata={"infinite": True}`` is allowed ``.inf`` too. NaN never is.
INFINITE_FIELDS: frozenset[tuple[type, str]] = frozenset({(Localization, "length"), (Localization, "support")})
#: Most model steps one run may take (all cycles, spin-ups and forecasts together).
MAX_MODEL_STEPS = 10**8

_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 60
_REPR.maxlevel, _REPR.maxlist, _REPR.maxtuple, _REPR.maxdict, _REPR.maxset = 3, 8, 8, 6, 6


class ConfigError(ValueError):
    """A configuration (YAML, preset name, command-line value) is invalid; the message is one line."""


def require(condition: bool, message: str) -> None:
    """Raise `ConfigError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise ConfigError(message)


def show(value: Any) -> str:
    """A short repr of ``value`` for one-line messages (deep, long or self-containing values are cut)."""
    try:
        return _REPR.repr(value)
    except (ValueError, RecursionError):  # e.g. an int of more digits than Python prints
        return f"<{type(value).__name__}>"


@functools.cache
def machine_memory() -> int:
    """Total physical memory of this machine (bytes); 0 when the system does not say."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return 0


def _gigabytes(nbytes: float) -> str:
    gb = nbytes / 2**30
    return f"{gb:,.0f} GB" if 10 <= gb < 1e7 else f"{gb:.3g} GB"


def require_fits(nbytes: float, what: str, *, gpu: bool = False) -> None:
    """`ConfigError` when ``nbytes``, the estimated memory of a run, exceeds this machine's memory.

    Args:
        nbytes: estimate of the run's largest arrays together (bytes; a float, so that no product overflows).
        what: the sizes behind it, e.g. ``"members=50 x grid 64^2 x 20 cycles"``.
        gpu: the arrays live on the GPU: checked against its memory where there is one (a machine
            without CUDA refuses such a run when it resolves the device, not here).
    """
    if gpu:
        import torch

        total = torch.cuda.get_device_properties(0).total_memory if torch.cuda.is_available() else 0
        where = "this GPU has"
    else:
        total, where = machine_memory(), "this machine has"
    if total and not nbytes <= total:
        raise ConfigError(f"{what} needs about {nbytes:.2g} bytes ({_gigabytes(nbytes)}); {where} {_gigabytes(total)}")


def require_steps(steps: float, what: str) -> None:
    """`ConfigError` when a run would take more than `MAX_MODEL_STEPS` model steps (``what``: how they add up)."""
    if not steps <= MAX_MODEL_STEPS:
        raise ConfigError(
            f"{what} makes {steps:.3g} model steps, more than the {MAX_MODEL_STEPS:.0e} one run may take "
            "(it would run for days); shorten the run or lengthen the step"
        )


def require_seed(seed: int, where: str = "seed") -> None:
    """`ConfigError` unless ``seed`` lies in [0, 2^63 - 1] (what the random generators and netCDF files hold)."""
    require(0 <= seed <= INT64_MAX, f"{where} must be >= 0 and < 2^63, got {show(seed)}")


class UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key given twice in one mapping is an error (rather than the last winning)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:  # type: ignore[override]
        """The mapping of ``node``; a repeated key raises a `yaml.YAMLError` naming it and both lines."""
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, str | int | float | bool):
                continue  # unhashable keys are PyYAML's error; other non-strings are the schema's
            if key in seen:
                message = f"duplicate key {show(key)} (first given at line {seen[key] + 1})"
                raise yaml.constructor.ConstructorError(None, None, message, key_node.start_mark)
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: str | Path) -> Any:
    """A YAML file's content (`UniqueKeyLoader`); a bad file (missing, a folder, not UTF-8, malformed, a repeated
    key, too deeply nested) raises a one-line `ConfigError`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8") if path.is_file() else None
    except (OSError, ValueError) as err:  # ValueError: not UTF-8, a NUL in the name
        raise ConfigError(f"cannot read {path}: {' '.join(str(err).split())}") from None
    if text is None:
        raise ConfigError(f"{path} is a folder, not a YAML file" if path.is_dir() else f"file not found: {path}")
    try:
        return yaml.load(text, Loader=UniqueKeyLoader)  # a SafeLoader
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"malformed YAML in {path}{at}: {problem}") from None
    except (RecursionError, ValueError) as err:  # ValueError: an integer of more digits than Python reads
        problem = "nested too deeply to read" if isinstance(err, RecursionError) else " ".join(str(err).split())
        raise ConfigError(f"malformed YAML in {path}: {problem}") from None


def from_file(path: str | Path, data: Any, build_config: Callable[[Any], T]) -> T:
    """``build_config(data)`` of the content of the YAML file ``path``; errors are prefixed with the file name."""
    if data is None:
        raise ConfigError(f"{path} is empty")
    try:
        return build_config(data)
    except ConfigError as err:
        raise ConfigError(f"{Path(path).name}: {err}") from None


def load_yaml_with(path: str | Path, build_config: Callable[[Any], T]) -> T:
    """``build_config(data)`` of a YAML file; an empty file and every `ConfigError` name the file."""
    return from_file(path, read_yaml(path), build_config)


__all__ = [
    "INFINITE_FIELDS",
    "INT64_MAX",
    "INT64_MIN",
    "MAX_MODEL_STEPS",
    "ConfigError",
    "UniqueKeyLoader",
    "from_file",
    "load_yaml_with",
    "machine_memory",
    "read_yaml",
    "require",
    "require_fits",
    "require_seed",
    "require_steps",
    "show",
]
