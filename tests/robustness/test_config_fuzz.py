"""Malformed configurations never end in a traceback: exit 0, or exit 2 with one ``error:`` line on stderr.

For every application that reads a configuration file (``dacast run``, ``dacast bda run``,
``dacast surrogate run``, ``dacast nowcast train``, ``dacast realtime run``, ``dacast obsop run``,
``dacast diffusion run``, ``dacast diffusion radar run``),
Hypothesis starts from a valid configuration (a preset's settings or an example YAML file) and breaks it: a value of the
wrong type, a missing or unknown key at any depth, NaN and infinities, zero, negative and
huge numbers (10^12, 2^63, 2^70), strings where numbers go, deep nesting, repeated keys,
non-UTF-8 bytes, an empty file, a folder, binary garbage, hostile YAML tags, aliases that
multiply, and bad command-line options. Each case runs the command in-process with
``--check`` (validate, estimate the memory, print the resolved configuration, stop):

* the exit code is 0 (stdout is a YAML mapping) or 2 (stderr is exactly one line, starting
  ``error:``; an unknown key is named, and so is a missing one when the message is about it);
* never a traceback, never another exit code;
* nothing is created on disk.

The outcomes are counted per entry point and printed as a table at the end of the session.
"""

from __future__ import annotations

import copy
import json
import math
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from hypothesis import given, note
from hypothesis import strategies as st
from typer.testing import CliRunner

from dacast.cli import app
from dacast.workflow import PRESETS, config_to_dict
from dacast.workflow.bda.config import BDA_PRESETS, bda_config_to_dict
from dacast.workflow.bda_surrogate.config import BDA_SURROGATE_PRESETS, bda_surrogate_config_to_dict
from dacast.workflow.diffusion.config import DIFFUSION_PRESETS, diffusion_config_to_dict
from dacast.workflow.diffusion.radar_config import RADAR_PRESETS, radar_config_to_dict
from dacast.workflow.radiance.config import RADIANCE_PRESETS, radiance_config_to_dict
from dacast.workflow.realtime.config import REALTIME_PRESETS, realtime_config_to_dict
from dacast.workflow.surrogate.config import SURROGATE_PRESET_REGISTRY, surrogate_config_to_dict

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
runner = CliRunner()


def _json(data: Any) -> Any:
    """A deep copy made of plain JSON types (what a YAML file holds)."""
    return json.loads(json.dumps(data))


def _yaml_file(name: str) -> dict[str, Any]:
    return yaml.safe_load((EXAMPLES / name).read_text(encoding="utf-8"))


CUDA = torch.cuda.is_available()

#: Entry point -> (the command before the configuration file, the valid configurations to start from).
BASES: dict[str, tuple[list[str], list[dict[str, Any]]]] = {
    "dacast run": (
        ["run"],
        [_json(config_to_dict(p.config)) for p in PRESETS.values()]
        + [_yaml_file("lorenz96_letkf.yaml"), {"preset": "lorenz63-etkf", "members": 5}],
    ),
    "dacast bda run": (
        ["bda", "run"],
        # a preset for the GPU (bda-256-10240) is a valid base only where there is one
        [_json(bda_config_to_dict(p.config)) for p in BDA_PRESETS.values() if p.config.device != "cuda" or CUDA]
        + [{"preset": "bda-small", "cycles": 3}],
    ),
    "dacast surrogate run": (
        ["surrogate", "run"],
        [_json(surrogate_config_to_dict(p.config)) for p in SURROGATE_PRESET_REGISTRY.values()]
        + [_yaml_file("surrogate_lorenz63.yaml")]
        + [_json(bda_surrogate_config_to_dict(p.config)) for p in BDA_SURROGATE_PRESETS.values()]
        + [{"preset": "bda-surrogate-cycle", "bda": {"preset": "bda-small", "grid": 32}, "iterations": 1}]
        + [_yaml_file("bda_surrogate_256.yaml")],
    ),
    "dacast nowcast train": (["nowcast", "train"], [_yaml_file("nowcast_train.yaml")]),
    "dacast realtime run": (
        ["realtime", "run"],
        [_json(realtime_config_to_dict(p.config)) for p in REALTIME_PRESETS.values()]
        + [{"preset": "bda-tiny", "speed": 10, "bda": {"members": 12}}],
    ),
    "dacast obsop run": (
        ["obsop", "run"],
        [_json(radiance_config_to_dict(c)) for c in RADIANCE_PRESETS.values()]
        + [{"preset": "amsua-quick", "cycles": 80}],
    ),
    "dacast diffusion run": (
        ["diffusion", "run"],
        [_json(diffusion_config_to_dict(c)) for c in DIFFUSION_PRESETS.values()]
        + [{"preset": "diffusion-quick", "cycles": 80, "training": {"steps": 100}}],
    ),
    "dacast diffusion radar run": (
        ["diffusion", "radar", "run"],
        [_json(radar_config_to_dict(c)) for c in RADAR_PRESETS.values()]
        + [{"preset": "latent-radar-quick", "bda": {"cycles": 4}, "prior": {"steps": 20}}],
    ),
}
#: Entry point -> its command-line options that take a value (besides ``--out``).
OPTIONS: dict[str, tuple[str, ...]] = {
    "dacast run": ("--members", "-n", "--cycles", "--seed", "--device"),
    "dacast bda run": ("--members", "--grid", "--cycles", "--device", "--workers"),
    "dacast surrogate run": ("--iterations", "--device"),
    "dacast nowcast train": ("--device", "--max-steps"),
    "dacast realtime run": ("--speed", "--folder", "--max-issues"),
    "dacast obsop run": ("--cycles", "--seeds"),
    "dacast diffusion run": ("--cycles", "--seeds", "--prior-dir"),
    "dacast diffusion radar run": ("--cycles", "--seeds", "--filter"),
}

HUGE = (10**12, 2**63 - 1, 2**63, 2**70, -(2**70), 10**400)
NUMBERS = st.one_of(
    st.sampled_from([0, -1, 1, 2, 3, 7, -(10**6), *HUGE]),
    st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -0.0, 1e308, -1e308, 1e-308, 5e-324, 0.5, 1e12, -2.5]),
    st.integers(min_value=-(2**72), max_value=2**72),
    st.floats(allow_nan=True, allow_infinity=True),
)
STRINGS = st.one_of(
    st.sampled_from(["", "abc", "1e3", "nan", ".inf", "none", "true", "\x00", "ünïcødé", "a\nb: c", "[1,", "*"]),
    st.text(max_size=12),
)
KEY_NAMES = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_0123456789", min_size=1, max_size=12).map(lambda s: f"zz{s}")


def _deep(depth: int, kind: str) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value] if kind == "list" else {"a": value}
    return value


SCALARS = st.one_of(NUMBERS, STRINGS, st.booleans(), st.none())
VALUES = st.one_of(
    SCALARS,
    st.lists(SCALARS, max_size=4),
    st.dictionaries(st.sampled_from(["a", "kind", "name", "length", "x"]), SCALARS, max_size=3),
    st.builds(_deep, st.sampled_from([20, 120]), st.sampled_from(["list", "dict"])),
)


def _paths(node: Any, prefix: tuple = ()) -> Iterator[tuple]:
    """Every key path into ``node`` (mapping keys and list indices), parents before children."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        yield (*prefix, key)
        yield from _paths(value, (*prefix, key))


def _at(node: Any, path: tuple) -> Any:
    for key in path:
        node = node[key]
    return node


@st.composite
def mutated(draw: st.DrawFn, bases: list[dict[str, Any]]) -> tuple[str, Any, str | None]:
    """``(kind, data, key)``: a valid base with one mutation; ``key`` is the key the mutation added or removed."""
    data = copy.deepcopy(draw(st.sampled_from(bases)))
    paths = list(_paths(data))
    kind = draw(st.sampled_from(["value", "value", "scale", "as string", "delete", "unknown key", "none", "none"]))
    if kind == "none" or not paths:
        return "valid", data, None
    if kind == "unknown key":
        mappings = [()] + [p for p in paths if isinstance(_at(data, p), dict)]
        where, key = draw(st.sampled_from(mappings)), draw(KEY_NAMES)
        _at(data, where)[key] = draw(VALUES)
        return kind, data, key
    path = draw(st.sampled_from(paths))
    parent, last = _at(data, path[:-1]), path[-1]
    old = parent[last]
    if kind == "delete":
        del parent[last]
        return kind, data, last if isinstance(last, str) and last != "preset" else None  # a preset brings many
    if kind == "scale" and isinstance(old, int | float) and not isinstance(old, bool):
        parent[last] = old * draw(st.sampled_from([-1, 0, 10**6, 10**12, 2**70, 1e300, 1e-300]))
    elif kind == "as string":
        parent[last] = str(old)
    else:
        parent[last] = draw(VALUES)
    return kind, data, None


def _dump(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def _duplicate_a_key(text: str, line: int) -> str:
    lines = text.splitlines()
    keyed = [i for i, s in enumerate(lines) if ":" in s and not s.lstrip().startswith("-")] or [0]
    i = keyed[line % len(keyed)]
    return "\n".join([*lines[: i + 1], lines[i], *lines[i + 1 :]]) + "\n"


BILLION_LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8)
)


@st.composite
def file_bytes(draw: st.DrawFn, bases: list[dict[str, Any]]) -> tuple[str, bytes | None, str | None]:
    """``(kind, content, key)``: the bytes of the configuration file (``None``: a folder in its place)."""
    kind = draw(
        st.sampled_from(
            ["mutated", "mutated", "mutated", "mutated", "duplicate key", "deep", "not utf-8", "empty", "folder"]
            + ["garbage", "text", "tag", "aliases"]
        )
    )
    if kind == "mutated":
        what, data, key = draw(mutated(bases))
        return what, _dump(data).encode(), key
    data = draw(st.sampled_from(bases))
    base = _dump(data)
    if kind == "duplicate key":
        return kind, _duplicate_a_key(base, draw(st.integers(0, 10**6))).encode(), None
    if kind == "deep":
        depth = draw(st.sampled_from([100, 1000, 1000, 10_000]))
        opener, closer = draw(st.sampled_from([("[", "]"), ("{a: ", "}")]))
        key = draw(st.sampled_from([k for k in data if k != "preset"]))  # a deep value in place of a valid one
        rest = _dump({k: v for k, v in data.items() if k != key}) if len(data) > 1 else ""
        return kind, (rest + f"{key}: {opener * depth}1{closer * depth}\n").encode(), None
    if kind == "not utf-8":
        cut = draw(st.integers(0, len(base)))
        return kind, base[:cut].encode() + draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x80"])), None
    if kind == "empty":
        return kind, draw(st.sampled_from([b"", b"\n", b"   \n", b"# nothing\n", b"---\n", b"null\n", b"~\n"])), None
    if kind == "folder":
        return kind, None, None
    if kind == "garbage":
        return kind, draw(st.binary(max_size=200)), None
    if kind == "text":
        return kind, draw(st.text(max_size=200)).encode("utf-8", "surrogatepass"), None
    if kind == "tag":
        tag = draw(st.sampled_from(["!!python/object/apply:os.system ['true']", "!!binary aGVsbG8=", "!!set {a, b}"]))
        return kind, f"{base}members: {tag}\n".encode(), None
    return kind, (BILLION_LAUGHS + base.replace("members:", "members: *i\nold_members:", 1)).encode(), None


@st.composite
def options(draw: st.DrawFn, entry: str) -> list[str]:
    """Command-line options after the configuration: none mostly, else a bad or a huge value, or a bad option."""
    count = draw(st.sampled_from([0, 0, 0, 0, 1, 2]))
    out: list[str] = []
    for _ in range(count):
        choice = draw(st.sampled_from(["value", "value", "out", "unknown", "flag value"]))
        if choice == "value":
            words = st.sampled_from(["abc", "", "-1", "0", "1", "1e3", "cuda", "tpu"])
            value = draw(st.one_of(words, NUMBERS.map(str)))
            out += [draw(st.sampled_from(OPTIONS[entry])), value]
        elif choice == "out":
            out += ["--out", draw(st.sampled_from(["/dev/null/x", "sub/dir", "", "a" * 300, "/proc/1/x"]))]
        elif choice == "unknown":
            out.append(draw(st.sampled_from(["--nope", "-z", "--members=", "--check=1", "extra"])))
        else:
            out += ["--no-progress", "maybe"]
    return out


def _listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def _check_outcome(result: Any, key: str | None, kind: str) -> str:
    """The outcome (``"exit 0"`` or ``"exit 2"``); asserts the property."""
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"traceback: {type(result.exception).__name__}: {result.exception}"
    )
    assert result.exit_code in (0, 2), f"exit code {result.exit_code}: {result.output}"
    assert "Traceback" not in result.output
    if result.exit_code == 0:
        assert isinstance(yaml.safe_load(result.stdout), dict), result.stdout
        assert result.stderr.strip() == "", result.stderr
        return "exit 0"
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    message = lines[0]
    if kind == "unknown key" and key is not None:
        assert key in message, f"the unknown key {key!r} is not named: {message}"
    if kind == "delete" and key is not None and "missing the required key" in message:
        assert repr(key) in message, f"the missing key {key!r} is not named: {message}"
    return "exit 2"


@pytest.mark.parametrize("entry", list(BASES))
@given(data=st.data())
def test_malformed_configurations_exit_0_or_one_error_line(
    entry: str, data: st.DataObject, fuzz_counts: dict[str, Counter], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    command, bases = BASES[entry]
    kind, content, key = data.draw(file_bytes(bases), label="file")
    extra = data.draw(options(entry), label="options")
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    monkeypatch.chdir(work)
    path = work / "config.yaml"
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    before = _listing(work)
    note(f"{kind}: {content[:300] if content else content!r} {extra}")
    counts = fuzz_counts.setdefault(entry, Counter())
    counts["cases"] += 1
    try:
        result = runner.invoke(app, [*command, str(path), "--check", *extra])
        outcome = _check_outcome(result, None if extra else key, kind)  # a bad option is reported first
    except AssertionError:
        counts["other"] += 1
        raise
    finally:
        after = _listing(work)
        if content is None:
            path.rmdir()
        else:
            path.unlink()
    counts[outcome] += 1
    assert after == before, f"--check created {set(after) - set(before)}"


@pytest.mark.parametrize("entry", list(BASES))
def test_every_base_configuration_is_valid(entry: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The starting points pass ``--check``, and what ``--check`` prints reads back to the same configuration."""
    monkeypatch.chdir(tmp_path)
    command, bases = BASES[entry]
    for base in bases:
        path = tmp_path / "base.yaml"
        path.write_text(_dump(base))
        first = runner.invoke(app, [*command, str(path), "--check"])
        assert first.exit_code == 0, first.output
        path.write_text(first.stdout)
        again = runner.invoke(app, [*command, str(path), "--check"])
        assert again.exit_code == 0 and again.stdout == first.stdout, again.output
    assert sorted(os.listdir(tmp_path)) == ["base.yaml"]


FOUND = {
    "inflation .inf": ("dacast run", {"filter": {"kind": "etkf", "inflation": math.inf}}, "must be a finite number"),
    "min_weight .inf": (
        "dacast run",
        {"filter": {"kind": "letkf", "localization": {"length": 4.0, "min_weight": math.inf}}},
        "min_weight",
    ),
    "dt 1e308": ("dacast run", {"dt": 1e308}, "dt x obs_every x cycles overflows"),
    "dt 1e300": ("dacast run", {"dt": 1e300}, "dt must be < 0.25 for lorenz96 with forcing 8: RK4 blows up"),
    "forcing 1e308": ("dacast run", {"model": {"name": "lorenz96", "forcing": 1e308}}, "model.forcing must lie in"),
    "seed 2^70": ("dacast run", {"seed": 2**70}, "seed must lie in [-2^63, 2^63 - 1]"),
    "members 10^12": ("dacast run", {"members": 10**12}, "needs about"),
    "cycles 10^12": ("dacast run", {"cycles": 10**12}, "model steps"),
    "n_state 10^12": ("dacast run", {"model": {"name": "lorenz96", "n_state": 10**12}}, "needs about"),
    "bda members 10^12": ("dacast bda run", {"members": 10**12}, "members=1000000000000 x grid 64^2"),
    "bda grid 10^12": ("dacast bda run", {"grid": 10**12}, "needs about"),
    "net.hidden 10^12": ("dacast surrogate run", {"net": {"hidden": 10**12}}, "needs about"),
    "net.hidden 2^70": ("dacast surrogate run", {"net": {"hidden": 2**70}}, "net.hidden must lie in"),
    "batch_size 10^12": ("dacast nowcast train", {"training": {"batch_size": 10**12}}, "needs about"),
    "motion []": ("dacast nowcast train", {"extrapolation": {"motion": []}}, "unknown motion method []"),
}


@pytest.mark.parametrize("case", list(FOUND))
def test_the_cases_found_before_are_one_line_errors(case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Mutations that ended in a traceback (on the previous layout, or found by the long profile), now one line."""
    entry, change, fragment = FOUND[case]
    command, bases = BASES[entry]
    base = bases[-1] if entry == "dacast run" else bases[0]
    data = yaml.safe_load(_dump(base)) if entry != "dacast run" else {"preset": "lorenz96-letkf"}
    for key, value in change.items():
        data[key] = {**data[key], **value} if isinstance(value, dict) and isinstance(data.get(key), dict) else value
    monkeypatch.chdir(tmp_path)
    (tmp_path / "case.yaml").write_text(_dump(data))
    result = runner.invoke(app, [*command, "case.yaml", "--check"])
    assert _check_outcome(result, None, case) == "exit 2"
    assert fragment in result.stderr, result.stderr
