"""`dacast.workflow.schema`: hint-driven parsing, key paths in every message, merging, files, presets, resolving."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest

from dacast.da import Localization
from dacast.workflow.bda.config import BDA_PRESETS
from dacast.workflow.limits import INFINITE_FIELDS
from dacast.workflow.schema import (
    ConfigError,
    Preset,
    Presets,
    is_yaml_path,
    load_yaml_with,
    lookup,
    merge,
    parse,
    parse_value,
    read_yaml,
    resolve,
    show,
    with_preset,
)
from dacast.workflow.twin.presets import PRESETS


@dataclass(frozen=True, kw_only=True)
class Inner:
    length: float
    taper: Literal["gaspari_cohn", "gaussian"] = "gaspari_cohn"
    cap: int | None = None

    def __post_init__(self) -> None:
        if self.length <= 0:
            raise ValueError(f"length must be positive, got {self.length}")


@dataclass(frozen=True, kw_only=True)
class Outer:
    name: str
    inner: Inner
    members: int = 2
    scale: float = 1.0
    flag: bool = False
    sizes: tuple[int, ...] = ()
    pair: tuple[float, float] | None = None
    std: float | tuple[float, ...] = 1.0
    path: Path | None = None
    extra: Inner = field(default_factory=lambda: Inner(length=1.0))


def _outer(**changes: Any) -> dict[str, Any]:
    return {"name": "x", "inner": {"length": 2.0}, **changes}


def test_parse_builds_nested_frozen_dataclasses() -> None:
    data = _outer(members=3, scale=2, flag=True, sizes=[1, 2], pair=[0, 1.5], std=[1, 2], path="a/b")
    config = parse(Outer, data)
    assert config.inner == Inner(length=2.0) and config.extra == Inner(length=1.0)
    assert (config.members, config.scale, config.flag) == (3, 2.0, True) and isinstance(config.scale, float)
    assert config.sizes == (1, 2) and config.pair == (0.0, 1.5) and config.std == (1.0, 2.0)
    assert config.path == Path("a/b")
    assert parse(Outer, _outer(std=0.5, pair=None)).std == 0.5


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (_outer(inner={"length": "x"}), "inner.length must be a number, got 'x'"),
        (_outer(inner={"length": True}), "inner.length must be a number, got True"),
        (_outer(members=True), "members must be an integer, got True"),
        (_outer(members=2.5), "members must be an integer, got 2.5"),
        (_outer(flag=1), "flag must be true or false, got 1"),
        (_outer(name=3), "name must be a string, got 3"),
        (_outer(inner={"length": 1.0, "taper": "box"}), "inner.taper must be one of gaspari_cohn, gaussian; got 'box'"),
        (_outer(inner={"length": 1.0, "cap": "x"}), "inner.cap must be an integer, got 'x'"),
        (_outer(sizes=[1, "a"]), "sizes[1] must be an integer, got 'a'"),
        (_outer(sizes=3), "sizes must be a list, got 3"),
        (_outer(pair=[1.0]), "pair must have 2 entries, got [1.0]"),
        (_outer(std="big"), "std must be a number, got 'big'"),
        (_outer(std=[1, "a"]), "std[1] must be a number, got 'a'"),
        (_outer(inner=[1]), "inner must be a mapping of keys to values, got [1]"),
        (_outer(inner={"length": -1.0}), "inner: length must be positive, got -1.0"),
        (_outer(inner={"length": 1.0, "radius": 4}), "unknown key 'radius' in inner; allowed: length, taper, cap"),
        (_outer(colour="red"), "unknown key 'colour' in the configuration; allowed: name, inner, members"),
        ({"name": "x"}, "the configuration is missing the required key 'inner'"),
        (_outer(inner={}), "inner is missing the required key 'length'"),
        ([1, 2], "the configuration must be a mapping"),
    ],
)
def test_every_error_names_its_key_path(data: Any, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse(Outer, data)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_where_prefixes_every_path() -> None:
    with pytest.raises(ConfigError, match=r"^letkf\.inner\.length must be a number, got 'x'$"):
        parse(Outer, _outer(inner={"length": "x"}), "letkf")
    with pytest.raises(ConfigError, match="unknown key 'colour' in letkf;"):
        parse(Outer, _outer(colour=1), "letkf")


def test_skip_fixed_tags_and_hooks() -> None:
    with pytest.raises(ConfigError, match="unknown key 'members'"):
        parse(Outer, _outer(members=3), skip=("members",))
    config = parse(Outer, {"name": "x"}, fixed={"inner": Inner(length=5.0)})
    assert config.inner.length == 5.0
    with pytest.raises(ConfigError, match="unknown key 'inner'"):
        parse(Outer, _outer(), fixed={"inner": Inner(length=5.0)})
    assert parse(Inner, {"kind": "mine", "length": 1.0}, tags=("kind",)) == Inner(length=1.0)

    def doubled(value: Any, where: str) -> Inner:
        return Inner(length=2 * parse_value(float, value, where))

    config = parse(Outer, {"name": "x", "inner": 3.0}, hooks={Inner: doubled})
    assert config.inner.length == 6.0
    with pytest.raises(ConfigError, match="^inner must be a number"):
        parse(Outer, {"name": "x", "inner": "x"}, hooks={Inner: doubled})


@dataclass(frozen=True, kw_only=True)
class A:
    a: int = 0


@dataclass(frozen=True, kw_only=True)
class B:
    b: int = 0


@dataclass(frozen=True, kw_only=True)
class Holder:
    filter: A | B | None = None


def test_optional_union_uses_the_hook_of_its_members() -> None:
    kinds = {"a": A, "b": B}

    def tagged(value: Any, where: str) -> A | B:
        cls = lookup(kinds.__getitem__, value.get("kind"), f"{where}.kind")
        return parse(cls, value, where, tags=("kind",))

    hooks = {A | B: tagged}
    assert parse(Holder, {"filter": {"kind": "b", "b": 2}}, hooks=hooks).filter == B(b=2)
    assert parse(Holder, {"filter": None}, hooks=hooks).filter is None
    with pytest.raises(ConfigError, match="^filter.kind: unknown value 'c'$"):
        parse(Holder, {"filter": {"kind": "c"}}, hooks=hooks)


def test_lookup_turns_a_registry_key_error_into_a_config_error() -> None:
    def get(name: str) -> int:
        raise KeyError(f"unknown thing {name!r}; choose one of: a, b")

    with pytest.raises(ConfigError, match=r"^model\.name: unknown thing 'z'; choose one of: a, b$"):
        lookup(get, "z", "model.name")
    with pytest.raises(ConfigError, match="model.name must be a string, got 3"):
        lookup(get, 3, "model.name")


def test_merge_is_deep_and_replaces_a_section_whose_kind_changes() -> None:
    base = {"a": 1, "filter": {"kind": "letkf", "inflation": 1.0, "loc": {"length": 4.0, "taper": "gc"}}}
    merged = merge(base, {"filter": {"loc": {"length": 2.0}}, "b": [1]})
    assert merged == {
        "a": 1,
        "b": [1],
        "filter": {"kind": "letkf", "inflation": 1.0, "loc": {"length": 2.0, "taper": "gc"}},
    }
    assert merge(base, {"filter": {"kind": "etkf"}})["filter"] == {"kind": "etkf"}
    assert base["filter"]["loc"]["length"] == 4.0  # the inputs are left alone


def _presets() -> Presets[Outer]:
    return Presets(
        [
            Preset(name="small", description="a small one", config=parse(Outer, _outer(members=4))),
            Preset(name="big", description="a big one", config=parse(Outer, _outer(members=40)), source="here"),
        ],
        noun="toy preset",
    )


def _to_dict(config: Outer) -> dict[str, Any]:
    return {"name": config.name, "inner": {"length": config.inner.length}, "members": config.members}


def test_presets_registry() -> None:
    presets = _presets()
    assert list(presets) == ["small", "big"] and len(presets) == 2 and "big" in presets
    assert presets["big"].source == "here" and presets["small"].expected_rmse_analysis is None
    assert presets.get("big").config.members == 40
    with pytest.raises(ConfigError, match=r"^unknown toy preset 'huge'; choose one of: small, big$"):
        presets.get("huge")
    with pytest.raises(ValueError, match="two presets are called 'small'"):
        Presets([presets["small"], presets["small"]])
    merged = with_preset({"preset": "big", "members": 5}, presets, _to_dict)
    assert parse(Outer, merged).members == 5
    with pytest.raises(ConfigError, match="preset must be a name, got 3"):
        with_preset({"preset": 3}, presets, _to_dict)


def _from_dict(data: Any) -> Outer:
    return parse(Outer, with_preset(data, _presets(), _to_dict))


def test_resolve_a_name_or_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    presets = _presets()
    config, preset = resolve("small", presets, _from_dict)
    assert preset is presets["small"] and config is preset.config
    path = tmp_path / "run.yaml"
    path.write_text("preset: big\nmembers: 7\n")
    config, preset = resolve(path, presets, _from_dict)
    assert config.members == 7 and preset is presets["big"]
    assert resolve(path, presets, _from_dict, file_preset=False)[1] is None
    path.write_text("name: y\ninner: {length: 3}\n")
    assert resolve(str(path), presets, _from_dict) == (parse(Outer, {"name": "y", "inner": {"length": 3}}), None)
    monkeypatch.chdir(tmp_path)
    Path("small").write_text("not: [yaml")  # a preset name wins over a file of that name
    assert resolve("small", presets, _from_dict)[1] is presets["small"]
    with pytest.raises(ConfigError, match="unknown toy preset 'tiny'"):
        resolve("tiny", presets, _from_dict)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: [x\n", "malformed YAML in"),
        ("", "is empty"),
        ("- 1\n", "bad.yaml: the configuration must be a mapping"),
        ("name: x\ninner: {length: x}\n", "bad.yaml: inner.length must be a number, got 'x'"),
        ("preset: nope\n", "bad.yaml: unknown toy preset 'nope'"),
    ],
)
def test_yaml_file_errors_name_the_file(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        resolve(path, _presets(), _from_dict)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_read_yaml_and_load_yaml_with(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        read_yaml(tmp_path / "none.yaml")
    with pytest.raises(ConfigError, match="cannot read"):
        (tmp_path / "bin.yaml").write_bytes(b"\xff\xfe\x00")
        read_yaml(tmp_path / "bin.yaml")
    path = tmp_path / "ok.yaml"
    path.write_text("name: x\ninner: {length: 2}\n")
    assert read_yaml(path) == {"name": "x", "inner": {"length": 2}}
    assert load_yaml_with(path, lambda data: parse(Outer, data)).inner.length == 2.0


def test_is_yaml_path_with_another_applications_presets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert not is_yaml_path("bda-small", BDA_PRESETS) and not is_yaml_path("lorenz96-letkf", PRESETS)
    assert is_yaml_path("run.yaml", BDA_PRESETS) and is_yaml_path(Path("run.YML"), PRESETS)
    assert not is_yaml_path("bda-small", PRESETS)  # no suffix, no such file
    monkeypatch.chdir(tmp_path)
    Path("bda-small").write_text("members: 4\n")
    assert not is_yaml_path("bda-small", BDA_PRESETS)  # the BDA preset wins over the file
    assert is_yaml_path("bda-small", PRESETS)  # for the twin it is just a file


# --------------------------------------------------------------------------- limits every value is held to


@dataclass(frozen=True, kw_only=True)
class Limits:
    rate: float = 1.0
    count: int = 0
    sizes: tuple[float, ...] = ()
    horizon: float = field(default=1.0, metadata={"infinite": True})


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"rate": math.nan}, "rate must be a finite number, got nan"),
        ({"rate": math.inf}, "rate must be a finite number, got inf"),
        ({"rate": -math.inf}, "rate must be a finite number, got -inf"),
        ({"rate": 10**400}, "rate must be a finite number"),
        ({"sizes": [1.0, math.nan]}, "sizes[1] must be a finite number, got nan"),
        ({"horizon": math.nan}, "horizon must be a finite number, got nan"),
        ({"count": 2**63}, "count must lie in [-2^63, 2^63 - 1] (int64), got 9223372036854775808"),
        ({"count": -(2**63) - 1}, "count must lie in [-2^63, 2^63 - 1] (int64)"),
        ({"count": 2**70}, "count must lie in [-2^63, 2^63 - 1] (int64), got 1180591620717411303424"),
    ],
)
def test_nan_infinity_and_integers_beyond_int64_are_refused(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse(Limits, data)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_infinity_where_it_means_something() -> None:
    assert parse(Limits, {"horizon": math.inf, "count": 2**63 - 1}) == Limits(horizon=math.inf, count=2**63 - 1)
    assert parse(Limits, {"count": -(2**63)}).count == -(2**63)
    assert (Localization, "length") in INFINITE_FIELDS and (Localization, "support") in INFINITE_FIELDS
    loc = parse(Localization, {"length": math.inf, "support": math.inf})  # no localization
    assert loc.length == math.inf and loc.cutoff == math.inf
    with pytest.raises(ConfigError, match="min_weight must be a finite number, got inf"):
        parse(Localization, {"length": 4.0, "min_weight": math.inf})
    with pytest.raises(ConfigError, match="length must be a finite number, got nan"):
        parse(Localization, {"length": math.nan})


def test_deep_or_long_values_give_short_one_line_messages() -> None:
    deep: Any = 1
    for _ in range(5000):
        deep = [deep]
    with pytest.raises(ConfigError) as err:
        parse(Outer, _outer(members=deep))
    assert str(err.value).startswith("members must be an integer, got [[[") and len(str(err.value)) < 200
    with pytest.raises(ConfigError) as err:
        parse(Outer, _outer(name="x" * 10_000, members="y" * 10_000))
    assert len(str(err.value)) < 200
    assert show("z" * 1000).count("z") < 100 and show(10**5000) == "<int>"
    looped: list[Any] = []
    looped.append(looped)
    assert len(show(looped)) < 100


def test_duplicate_keys_are_named_with_their_lines(tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text("name: x\ninner:\n  length: 1\n  taper: gaussian\n  length: 2\n")
    with pytest.raises(ConfigError) as err:
        read_yaml(path)
    message = str(err.value)
    assert "duplicate key 'length' (first given at line 3)" in message and "line 5" in message
    path.write_text("name: x\nname: y\n")
    with pytest.raises(ConfigError, match=r"at line 2, column 1: duplicate key 'name' \(first given at line 1\)"):
        read_yaml(path)
    path.write_text("base: &b {length: 1}\ninner:\n  <<: *b\n  taper: gaussian\n")  # a merge key is no duplicate
    assert read_yaml(path)["inner"] == {"length": 1, "taper": "gaussian"}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"name: x\nsizes: " + b"[" * 10_000 + b"]" * 10_000 + b"\n", "nested too deeply to read"),
        (b"name: x\ninner: " + b"{a: " * 10_000 + b"1" + b"}" * 10_000 + b"\n", "nested too deeply to read"),
        (b"name: \xff\xfe x\n", "cannot read"),
        (b"\x00\x01\x02\x89PNG\r\n", "cannot read"),
        (b"name: \x00\x07\n", "malformed YAML"),
        (b"members: " + b"9" * 5000 + b"\n", "malformed YAML"),
        (b"name: !!python/object/apply:os.system ['true']\n", "malformed YAML"),
        (b"name: [x\n", "malformed YAML"),
    ],
)
def test_unreadable_files_are_one_line_errors(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as err:
        resolve(path, _presets(), _from_dict)
    assert message in str(err.value) and "\n" not in str(err.value) and len(str(err.value)) < 400


def test_empty_files_folders_and_impossible_names(tmp_path: Path) -> None:
    for text in ("", "\n", "# nothing\n", "---\n", "~\n"):
        (tmp_path / "empty.yaml").write_text(text)
        with pytest.raises(ConfigError, match="empty.yaml is empty"):
            resolve(tmp_path / "empty.yaml", _presets(), _from_dict)
    (tmp_path / "folder.yaml").mkdir()
    with pytest.raises(ConfigError, match="folder.yaml is a folder, not a YAML file"):
        resolve(tmp_path / "folder.yaml", _presets(), _from_dict)
    long_name = "a" * 300
    assert is_yaml_path(long_name, _presets())
    with pytest.raises(ConfigError, match="cannot read a{10}.*File name too long"):
        resolve(long_name, _presets(), _from_dict)
