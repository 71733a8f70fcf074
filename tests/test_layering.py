"""The house rules, checked from the code's own imports (``ast``; nothing is imported or run).

Rooms, bottom to top (an arrow may only point down or sideways)::

    sned.supernet.base   the floor: errors, files, settings, provenance, artifact names, the command runner
    sned.supernet        space, network, training, sampling (torch)
    sned.predictors      latency tables, FVD, accuracy predictors
    sned.search          NSGA-II, reports, the service, the `sned` dispatcher

Every import counts, top-level or inside a function (a lazy import is still an arrow), and so do
imports under ``if TYPE_CHECKING:``. Also checked: no import cycles, the floor imports only the
standard library and itself, library modules neither import a command module (``*_cli``,
``sned.search.cli``) nor print, and no project file is over :data:`MAX_LINES` lines.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"supernet": "sned.supernet", "predictors": "sned.predictors", "search": "sned.search",
            "experiments": "sned.experiments"}
ROOMS = {"sned.supernet.base": 0, "sned.experiments": 0, "sned.supernet": 1, "sned.predictors": 2, "sned.search": 3}
FLOOR = "sned.supernet.base"
MAX_LINES = 600
# Files allowed over MAX_LINES, each with the reason it cannot be split. Keep it empty.
LONG_FILES: dict[str, str] = {}
FOLDERS = ("supernet", "predictors", "search", "experiments", "benchmarks", "tests")


def _modules() -> dict[str, Path]:
    """Every project module's dotted name -> its file."""
    modules = {}
    for folder, package in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join([package, *parts])] = path
    return modules


MODULES = _modules()


def _target(name: str) -> str | None:
    """The project module an import of ``name`` loads (the longest known prefix)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(path: Path, module: str) -> list[tuple[int, str]]:
    """``(line, imported name)`` of every import statement in the file, anywhere in it."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the package
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            # "from pkg import sub" loads pkg.sub; "from pkg import name" loads pkg
            found += [(node.lineno, f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
                      for alias in node.names]
    return found


def _graph() -> dict[str, dict[str, int]]:
    """module -> {project module it imports: first line}."""
    graph = {}
    for module, path in MODULES.items():
        edges: dict[str, int] = {}
        for line, name in _imports(path, module):
            target = _target(name) if name.startswith("sned.") else None
            if target and target != module:
                edges.setdefault(target, line)
        graph[module] = edges
    return graph


GRAPH = _graph()


def _room(module: str) -> int:
    return max(rank for prefix, rank in ROOMS.items() if module == prefix or module.startswith(prefix + "."))


COMMANDS = {"sned.search.cli", "sned.supernet.base.command"}  # the dispatcher, and the runner every command uses


def _is_command(module: str) -> bool:
    return module.endswith("_cli") or module in COMMANDS


def _where(module: str, line: int) -> str:
    return f"{MODULES[module].relative_to(ROOT)}:{line}"


def test_no_import_points_to_a_higher_room():
    upward = [f"{_where(m, line)}: {m} -> {t}" for m, edges in GRAPH.items() for t, line in edges.items()
              if _room(t) > _room(m)]
    assert not upward, "imports against the layering (base <- supernet <- predictors <- search):\n" + "\n".join(upward)


def _cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found = []
    for start in GRAPH:
        if start in index:
            continue
        work = [(start, iter(GRAPH[start]))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(GRAPH[child])))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_cycles():
    cycles = _cycles()
    message = []
    for cycle in cycles:
        message.append(" <-> ".join(cycle))
        message += [f"    {_where(m, line)}: {m} -> {t}" for m in cycle for t, line in GRAPH[m].items() if t in cycle]
    assert not cycles, "import cycles (lazy imports included):\n" + "\n".join(message)


def test_the_floor_is_stdlib_only():
    floor = [m for m in MODULES if m == FLOOR or m.startswith(FLOOR + ".")]
    assert len(floor) >= 6, floor
    bad = []
    for module in floor:
        for line, name in _imports(MODULES[module], module):
            top = name.split(".")[0]
            if name.startswith("sned."):
                if not (name == FLOOR or name.startswith(FLOOR + ".")):
                    bad.append(f"{_where(module, line)}: {name}")
            elif top and top != "__future__" and top not in sys.stdlib_module_names:
                bad.append(f"{_where(module, line)}: {name} (not the standard library)")
    assert not bad, "the floor (sned.supernet.base) imports only the standard library and itself:\n" + "\n".join(bad)


def test_library_modules_do_not_import_commands_or_print():
    bad = []
    for module, path in MODULES.items():
        if _is_command(module):
            continue
        bad += [f"{_where(module, line)}: imports the command module {t}" for t, line in GRAPH[module].items()
                if _is_command(t)]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
                bad.append(f"{_where(module, node.lineno)}: print() in a library module")
    assert not bad, "commands live in *_cli modules; library code returns, logs or raises:\n" + "\n".join(bad)


def test_no_file_is_over_the_line_limit():
    long = []
    for folder in FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = str(path.relative_to(ROOT))
            n = len(path.read_text().splitlines())
            if n > MAX_LINES and rel not in LONG_FILES:
                long.append(f"{rel}: {n} lines")
    assert not long, f"files over {MAX_LINES} lines (split them by concept):\n" + "\n".join(long)


@pytest.mark.parametrize("source, expected", [
    ("from sned.predictors import latency", "sned.predictors.latency"),
    ("import sned.search.engine as e", "sned.search.engine"),
    ("def f():\n    from sned.search.cli import main", "sned.search.cli"),
])
def test_the_checker_sees_every_form_of_import(tmp_path, source, expected):
    path = tmp_path / "probe.py"
    path.write_text(source)
    targets = {_target(name) for _, name in _imports(path, "sned.supernet.probe") if name.startswith("sned.")}
    assert expected in targets
