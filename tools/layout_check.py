"""Check the layout of the source tree: import cycles, module and function sizes, cycle loops, private imports.

Run from the repository root (exit status 1 when a measure fails)::

    python tools/layout_check.py                  # the table, then the offending items
    python tools/layout_check.py --json           # the same measures as JSON
    python tools/layout_check.py --root src/dacast

The measures, all read from the source with `ast` (nothing is imported):

1. ``package_cycles``: import cycles between the units ``dacast.<sub>`` (a
   subpackage or a top-level module; the package's own ``__init__`` is the unit
   ``dacast``). Every ``import``/``from ... import`` counts, inside functions and
   under ``if TYPE_CHECKING:`` too; relative imports are resolved. A cycle is a
   strongly connected component of more than one unit.
2. ``workflow_coupling``: inside ``dacast.workflow``, cycles between its units
   (the application folders ``twin``, ``bda``, ... and the shared modules
   ``cycle``, ``schema``, ...), and imports of one application folder from another
   that are not imports of public names. Public names one application reuses from
   another are listed as notes, not failures. Names imported from the
   ``dacast.workflow`` package itself are traced to the module it re-exports them from.
3. ``module_lines``: modules over 400 physical lines.
4. ``workflow_function_lines``: functions (methods and nested functions too) in
   ``workflow/`` over 80 lines, from the ``def`` line to the end of the body.
5. ``cycle_loops``: ``for``/``while`` loops in ``workflow/`` whose body advances a
   model (a call named `ADVANCE_CALLS`) and calls a filter (`FILTER_CALLS`). Only
   the innermost such loop counts: a loop around a cycle loop is not another one.
   The target is exactly one, the loop of ``workflow/cycle.py``.
6. ``private_imports``: ``from dacast.x import _name`` (one leading underscore)
   where ``_name`` is not a module.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80
#: Call names (function or attribute) that advance a model.
ADVANCE_CALLS = frozenset({"step", "advance", "forecast", "forecaster"})
#: Call names (function or attribute) that run a filter's analysis.
FILTER_CALLS = frozenset({"analyse", "etkf", "letkf", "enkf", "gridded_letkf", "gridded_letkf_dask"})
DEFAULT_ROOT = Path(__file__).resolve().parents[1] / "src" / "dacast"


@dataclass(frozen=True)
class Module:
    """One parsed source file.

    Attributes:
        name: dotted module name (``dacast.workflow.cycle``; a package's ``__init__`` is the package's name).
        path: the file.
        is_package: the file is an ``__init__.py``.
        text: the source.
        tree: its syntax tree.
    """

    name: str
    path: Path
    is_package: bool
    text: str
    tree: ast.Module


@dataclass(frozen=True)
class Import:
    """One imported module, with the names taken from it.

    Attributes:
        source: the importing module's name.
        target: the imported module's absolute dotted name.
        names: names of a ``from target import ...`` (empty for ``import target``).
        path: the importing file.
        line: line of the import statement (1-based).
    """

    source: str
    target: str
    names: tuple[str, ...]
    path: Path
    line: int


@dataclass
class Measure:
    """One measure of the table: passes when ``value == target``.

    Attributes:
        key: short identifier (JSON key).
        title: what is counted.
        value: the count.
        target: the count it must have.
        items: the offending items (``file:line what``).
        notes: items listed for information only (not failures).
    """

    key: str
    title: str
    value: int
    target: int
    items: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Whether the value meets the target."""
        return self.value == self.target


def load_package(root: Path) -> dict[str, Module]:
    """Parse every ``.py`` file under the package folder ``root``; keys are the dotted module names."""
    root = Path(root)
    modules: dict[str, Module] = {}
    for path in sorted(root.rglob("*.py")):
        parts = [root.name, *path.relative_to(root).with_suffix("").parts]
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        text = path.read_text(encoding="utf-8")
        name = ".".join(parts)
        modules[name] = Module(name, path, is_package, text, ast.parse(text, filename=str(path)))
    return modules


def _top(modules: dict[str, Module]) -> str:
    """The package's name (the first component of every module name)."""
    return next(iter(modules)).split(".")[0] if modules else ""


def _show(path: Path) -> str:
    """``path`` relative to the working directory when it lies under it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _resolve_relative(module: Module, level: int, target: str | None) -> str:
    """The absolute name of ``from <level dots><target> import ...`` in ``module``."""
    package = module.name.split(".") if module.is_package else module.name.split(".")[:-1]
    base = package[: len(package) - (level - 1)]
    return ".".join([*base, target] if target else base)


def imports_of(module: Module, modules: dict[str, Module]) -> Iterator[Import]:
    """Every import of the package's own modules in ``module`` (any depth, relative ones resolved).

    ``from pkg import sub`` where ``pkg.sub`` is a module is an import of ``pkg.sub``.
    """
    top = _top(modules)
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == top:
                    yield Import(module.name, alias.name, (), module.path, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            target = node.module or ""
            if node.level:
                target = _resolve_relative(module, node.level, node.module)
            if target.split(".")[0] != top:
                continue
            names = tuple(alias.name for alias in node.names)
            plain = tuple(n for n in names if f"{target}.{n}" not in modules)
            if plain:
                yield Import(module.name, target, plain, module.path, node.lineno)
            for n in names:
                if f"{target}.{n}" in modules:
                    yield Import(module.name, f"{target}.{n}", (), module.path, node.lineno)


def _unit(name: str, depth: int) -> str:
    """The first ``depth`` components of a dotted name."""
    return ".".join(name.split(".")[:depth])


def _in_folder(modules: dict[str, Module], folder: str) -> list[Module]:
    """The modules of ``<package>.<folder>`` (its ``__init__`` included)."""
    prefix = f"{_top(modules)}.{folder}"
    return [m for m in modules.values() if m.name == prefix or m.name.startswith(prefix + ".")]


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components of more than one node, each sorted, in sorted order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def _cycle_items(edges: Iterable[tuple[str, str, Import]]) -> list[str]:
    """One item per cycle: its units, then every import between them."""
    edges = list(edges)
    graph: dict[str, set[str]] = {}
    for a, b, _ in edges:
        graph.setdefault(a, set()).add(b)
        graph.setdefault(b, set())
    items = []
    for component in strongly_connected(graph):
        members = set(component)
        lines = [f"cycle: {' <-> '.join(component)}"]
        for a, b, imp in edges:
            if a in members and b in members:
                what = f" ({', '.join(imp.names)})" if imp.names else ""
                lines.append(f"    {_show(imp.path)}:{imp.line} {a} -> {imp.target}{what}")
        items.append("\n".join(lines))
    return items


def check_package_cycles(modules: dict[str, Module]) -> Measure:
    """Measure 1: import cycles between the units ``<package>.<sub>``."""
    edges = []
    for module in modules.values():
        for imp in imports_of(module, modules):
            a, b = _unit(imp.source, 2), _unit(imp.target, 2)
            if a != b:
                edges.append((a, b, imp))
    items = _cycle_items(edges)
    return Measure("package_cycles", "import cycles between packages", len(items), 0, items)


def _reexport_source(imp: Import, modules: dict[str, Module]) -> list[Import]:
    """``from pkg import name`` traced to the module ``pkg/__init__`` takes each name from (one level)."""
    package = modules.get(imp.target)
    if package is None or not package.is_package or not imp.names:
        return [imp]
    origin: dict[str, str] = {}
    for inner in imports_of(package, modules):
        for n in inner.names:
            origin[n] = inner.target
    traced: dict[str, list[str]] = {}
    for n in imp.names:
        traced.setdefault(origin.get(n, imp.target), []).append(n)
    return [Import(imp.source, t, tuple(ns), imp.path, imp.line) for t, ns in traced.items()]


def check_workflow_coupling(modules: dict[str, Module], folder: str = "workflow") -> Measure:
    """Measure 2: cycles between the units of ``<package>.workflow`` and cross-application imports."""
    prefix = f"{_top(modules)}.{folder}"
    apps = {m.name for m in modules.values() if m.is_package and m.name.rpartition(".")[0] == prefix}
    edges, items, notes = [], [], []
    for module in _in_folder(modules, folder):
        for raw in imports_of(module, modules):
            for imp in _reexport_source(raw, modules):
                if not imp.target.startswith(prefix + "."):
                    continue
                a, b = _unit(imp.source, 3), _unit(imp.target, 3)
                if a == b:
                    continue
                edges.append((a, b, imp))
                if a in apps and b in apps:
                    where = f"{_show(imp.path)}:{imp.line} {imp.source} <- {imp.target}"
                    public = [n for n in imp.names if not n.startswith("_")]
                    private = [n for n in imp.names if n.startswith("_")]
                    if public:
                        notes.append(f"{where}: reuses {', '.join(public)}")
                    if private or not imp.names:
                        what = ", ".join(private) if private else "the whole module"
                        items.append(f"{where}: imports {what} from another application")
    items = _cycle_items(edges) + items
    return Measure("workflow_coupling", f"{folder}/: cycles + cross-application imports", len(items), 0, items, notes)


def check_module_lines(modules: dict[str, Module], limit: int = MAX_MODULE_LINES) -> Measure:
    """Measure 3: modules over ``limit`` physical lines, longest first."""
    sizes = [(len(m.text.splitlines()), m.path) for m in modules.values()]
    over = sorted(((n, p) for n, p in sizes if n > limit), key=lambda s: (-s[0], str(s[1])))
    items = [f"{_show(p)}: {n} lines" for n, p in over]
    return Measure("module_lines", f"modules over {limit} lines", len(items), 0, items)


def _functions(tree: ast.AST, scope: str = "") -> Iterator[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    """Every function in ``tree`` with its qualified name (``Class.method``, ``outer.inner``)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield f"{scope}{node.name}", node
            yield from _functions(node, f"{scope}{node.name}.")
        elif isinstance(node, ast.ClassDef):
            yield from _functions(node, f"{scope}{node.name}.")
        else:
            yield from _functions(node, scope)


def check_function_lines(
    modules: dict[str, Module], limit: int = MAX_FUNCTION_LINES, folder: str = "workflow"
) -> Measure:
    """Measure 4: functions in ``folder/`` longer than ``limit`` lines (``def`` line to end of body), longest first."""
    long = []
    for module in _in_folder(modules, folder):
        for name, node in _functions(module.tree):
            n = (node.end_lineno or node.lineno) - node.lineno + 1
            if n > limit:
                long.append((n, f"{_show(module.path)}:{node.lineno} {name}: {n} lines"))
    items = [text for _, text in sorted(long, key=lambda s: (-s[0], s[1]))]
    return Measure("workflow_function_lines", f"{folder}/ functions over {limit} lines", len(items), 0, items)


def _call_name(node: ast.Call) -> str:
    if isinstance(node.func, ast.Name):
        return node.func.id
    if isinstance(node.func, ast.Attribute):
        return node.func.attr
    return ""


def _cycle_loops(node: ast.AST) -> Iterator[tuple[ast.For | ast.AsyncFor | ast.While, set[str]]]:
    """The innermost loops under ``node`` whose body advances a model and runs a filter, with the calls seen."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.For | ast.AsyncFor | ast.While):
            inner = list(_cycle_loops(child))
            if inner:
                yield from inner
                continue
            body = [*child.body, *child.orelse]
            calls = {_call_name(c) for stmt in body for c in ast.walk(stmt) if isinstance(c, ast.Call)}
            if calls & ADVANCE_CALLS and calls & FILTER_CALLS:
                yield child, calls & (ADVANCE_CALLS | FILTER_CALLS)
        else:
            yield from _cycle_loops(child)


def check_cycle_loops(modules: dict[str, Module], folder: str = "workflow") -> Measure:
    """Measure 5: loops in ``folder/`` that both advance a model and call a filter (target: exactly one)."""
    items = []
    for module in _in_folder(modules, folder):
        for loop, calls in _cycle_loops(module.tree):
            items.append(f"{_show(module.path)}:{loop.lineno} calls {', '.join(sorted(calls))}")
    return Measure("cycle_loops", f"cycle loops in {folder}/", len(items), 1, items)


def check_private_imports(modules: dict[str, Module]) -> Measure:
    """Measure 6: ``from pkg.x import _name`` of a non-module name with one leading underscore."""
    items = []
    for module in modules.values():
        for imp in imports_of(module, modules):
            private = [n for n in imp.names if n.startswith("_") and not n.startswith("__")]
            if private:
                items.append(f"{_show(imp.path)}:{imp.line} {imp.source} <- {imp.target}: {', '.join(private)}")
    return Measure("private_imports", "private names imported across modules", len(items), 0, items)


def run_checks(root: Path) -> list[Measure]:
    """Every measure on the package folder ``root``."""
    modules = load_package(root)
    return [
        check_package_cycles(modules),
        check_workflow_coupling(modules),
        check_module_lines(modules),
        check_function_lines(modules),
        check_cycle_loops(modules),
        check_private_imports(modules),
    ]


def format_table(measures: list[Measure]) -> str:
    """The table (one line per measure: value, target, PASS/FAIL), then each measure's items and notes."""
    width = max(len(m.title) for m in measures)
    lines = [f"{'measure':<{width}}  {'value':>5}  {'target':>6}  result"]
    for m in measures:
        lines.append(f"{m.title:<{width}}  {m.value:>5}  {m.target:>6}  {'PASS' if m.passed else 'FAIL'}")
    for m in measures:
        if m.items and (not m.passed or m.key == "cycle_loops"):
            lines += ["", f"{m.title}:", *(f"  {item}" for item in m.items)]
        if m.notes:
            lines += ["", f"{m.title}: reused public names (not failures):", *(f"  {n}" for n in m.notes)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Print the measures (table or ``--json``); 0 when all pass, 1 otherwise."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="the package folder (default: src/dacast)")
    parser.add_argument("--json", action="store_true", help="print the measures as JSON")
    args = parser.parse_args(argv)
    if not (args.root / "__init__.py").is_file():
        parser.error(f"{args.root} is not a package folder (no __init__.py)")
    measures = run_checks(args.root)
    ok = all(m.passed for m in measures)
    if args.json:
        out = {
            "root": _show(args.root),
            "passed": ok,
            "measures": [asdict(m) | {"passed": m.passed} for m in measures],
        }
        print(json.dumps(out, indent=2))
    else:
        print(format_table(measures))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
