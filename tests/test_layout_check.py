"""The layout check (tools/layout_check.py): its measures on small synthetic packages, then on the real source."""

from __future__ import annotations

import importlib.util
import json
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]


def _load_tool() -> ModuleType:
    """Import tools/layout_check.py from its path (tools/ is not a package)."""
    name = "layout_check"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO / "tools" / "layout_check.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


lc = _load_tool()


def write_package(root: Path, files: dict[str, str]) -> Path:
    """Write ``files`` (path in the package ``pkg`` -> source) under ``root``; every folder gets an __init__."""
    pkg = root / "pkg"
    for rel, text in {"__init__.py": "", **files}.items():
        path = pkg / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        for parent in path.relative_to(pkg).parents:
            init = pkg / parent / "__init__.py"
            if not init.exists():
                init.write_text("")
        path.write_text(textwrap.dedent(text))
    return pkg


def _modules(tmp_path: Path, files: dict[str, str]) -> dict:
    return lc.load_package(write_package(tmp_path, files))


def test_cycle_between_packages_is_found(tmp_path: Path) -> None:
    modules = _modules(
        tmp_path,
        {
            "a/__init__.py": "from pkg.a.core import x\n",
            "a/core.py": "from pkg.b import y\nx = 1\n",
            "b.py": "def f():\n    import pkg.a\n    return pkg.a\ny = 2\n",
            "c.py": "from pkg.b import y\n",
        },
    )
    measure = lc.check_package_cycles(modules)
    assert measure.value == 1 and not measure.passed
    assert "pkg.a <-> pkg.b" in measure.items[0]
    assert "pkg.c" not in measure.items[0]


def test_type_checking_and_relative_imports_count(tmp_path: Path) -> None:
    modules = _modules(
        tmp_path,
        {
            "a/core.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.b import y\n",
            "b/__init__.py": "from ..a import core\n",
        },
    )
    assert lc.check_package_cycles(modules).value == 1


def test_no_cycle_passes(tmp_path: Path) -> None:
    modules = _modules(tmp_path, {"a.py": "from pkg.b import y\n", "b.py": "import os\ny = 1\n"})
    measure = lc.check_package_cycles(modules)
    assert measure.value == 0 and measure.passed


def test_workflow_coupling(tmp_path: Path) -> None:
    modules = _modules(
        tmp_path,
        {
            "workflow/cycle.py": "from pkg.workflow.schema import Error\n",
            "workflow/schema.py": "Error = ValueError\n",
            "workflow/twin/config.py": "from pkg.workflow.cycle import run\nPublic = 1\n_private = 2\n",
            "workflow/bda/config.py": "from pkg.workflow.twin.config import Public\nfrom pkg.workflow import cycle\n",
            "workflow/bda/run.py": "from pkg.workflow.twin.config import _private\n",
        },
    )
    measure = lc.check_workflow_coupling(modules)
    assert measure.value == 1 and "bda/run.py:1" in measure.items[0]
    assert len(measure.notes) == 1 and "reuses Public" in measure.notes[0]


def test_workflow_cycle_through_the_package_facade(tmp_path: Path) -> None:
    modules = _modules(
        tmp_path,
        {
            "workflow/__init__.py": "from pkg.workflow.twin.run import run_twin\n",
            "workflow/cycle.py": "from pkg.workflow import run_twin\n",
            "workflow/twin/run.py": "from pkg.workflow.cycle import cycle\n",
        },
    )
    measure = lc.check_workflow_coupling(modules)
    assert measure.value == 1
    assert "pkg.workflow.cycle <-> pkg.workflow.twin" in measure.items[0]


def test_long_module_is_flagged(tmp_path: Path) -> None:
    modules = _modules(tmp_path, {"long.py": "x = 1\n" * 401, "ok.py": "x = 1\n" * 400})
    measure = lc.check_module_lines(modules)
    assert measure.value == 1 and "long.py: 401 lines" in measure.items[0]


def test_long_workflow_function_is_flagged(tmp_path: Path) -> None:
    body80 = "    x = 1\n" * 79  # def line + 79 = 80 lines
    body81 = "    x = 1\n" * 80
    decorated = "@staticmethod\n" * 5
    modules = _modules(
        tmp_path,
        {
            "workflow/run.py": f"def ok():\n{body80}\n{decorated}def long():\n{body81}\n"
            + "class C:\n    def method(self):\n"
            + "        x = 1\n" * 80,
            "models/run.py": f"def elsewhere():\n{body81}",
        },
    )
    measure = lc.check_function_lines(modules)
    assert measure.value == 2
    assert any("long: 81 lines" in item for item in measure.items)
    assert any("C.method: 81 lines" in item for item in measure.items)


def test_cycle_loop_is_counted(tmp_path: Path) -> None:
    loop = """\
    def run(model, ens, n):
        for c in range(n):
            for i in range(5):
                ens = model.step(ens, 0.0, 0.1)
            if c % 2:
                ens = analyse(config, ens).ensemble
        return ens
    """
    nested = """\
    def many(model, ens):
        for run in range(3):
            while True:
                ens = advance(model, ens)
                ens = letkf(ens)
    """
    forecast_only = "def free(model, ens):\n    for c in range(3):\n        ens = model.step(ens, 0.0, 0.1)\n"
    modules = _modules(
        tmp_path,
        {
            "workflow/cycle.py": loop,
            "workflow/app/run.py": textwrap.dedent(nested) + forecast_only,
            "models/run.py": loop,
        },
    )
    measure = lc.check_cycle_loops(modules)
    assert measure.value == 2 and not measure.passed
    assert any("cycle.py:2" in item for item in measure.items)
    assert any("run.py:3" in item for item in measure.items)  # the inner `while`, not the outer `for`


def test_private_import_is_flagged(tmp_path: Path) -> None:
    modules = _modules(
        tmp_path,
        {
            "_device.py": "def resolve():\n    pass\n",
            "a.py": "_x = 1\n__version__ = '1'\n",
            "b.py": "from pkg import _device\nfrom pkg._device import resolve\nfrom pkg.a import __version__\n",
            "c.py": "def f():\n    from pkg.a import _x\n",
        },
    )
    measure = lc.check_private_imports(modules)
    assert measure.value == 1 and "c.py:2" in measure.items[0] and "_x" in measure.items[0]


def test_main_table_json_and_exit_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pkg = write_package(
        tmp_path,
        {
            "workflow/cycle.py": "def cycle(ens, forecast, analyse):\n    for c in range(3):\n"
            "        ens = analyse(forecast(ens, c))\n",
        },
    )
    assert lc.main(["--root", str(pkg)]) == 0
    table = capsys.readouterr().out
    assert table.count("PASS") == 6 and "FAIL" not in table
    (pkg / "big.py").write_text("x = 1\n" * 500)
    assert lc.main(["--root", str(pkg), "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    by_key = {m["key"]: m for m in out["measures"]}
    assert not out["passed"] and by_key["module_lines"]["value"] == 1 and by_key["cycle_loops"]["passed"]


def test_real_source_meets_every_measure() -> None:
    measures = lc.run_checks(REPO / "src" / "dacast")
    assert all(m.passed for m in measures), "\n" + lc.format_table(measures)
