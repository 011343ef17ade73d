"""The house rule, checked: imports point one way, no module imports itself back, rooms stay small.

devtools -> project (the site) -> tickets -> project's start-up checks -> outbox.console ->
outbox.runtime -> outbox (the engine's core). A module may import its own layer and the ones
below it, never one above. Every import counts: at the top, inside a function, or only for the
type checker, because each is a dependency a reader must follow.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
APPS = ("devtools", "project", "tickets", "outbox")
MAX_LINES = 450

# Highest first. A module belongs to the layer of the longest prefix that names it.
LAYERS: dict[str, int] = {
    "devtools": 6,
    "project": 5,
    "tickets": 4,
    # The start-up checks and the environment's parsing: the web's and qcluster's start, and
    # the domain's health view, share them.
    "project.startup": 3,
    "project.env": 3,
    # How a process traces (the OTEL_* variables): the web's and qcluster's start install it.
    "project.telemetry": 3,
    "outbox.console": 2,
    "outbox.runtime": 1,
    # The engine's wiring into Django and qcluster starts the runtime: it is the runtime's.
    "outbox.apps": 1,
    "outbox.checks": 1,
    "outbox.management": 1,
    # Aliases of dotted paths django-q2 rows stored before the runtime became a package.
    "outbox.relay": 1,
    "outbox.passes": 1,
    "outbox": 0,
}


def modules() -> dict[str, Path]:
    found = {}
    for app in APPS:
        for path in (ROOT / app).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


MODULES = modules()


def imports_of(name: str, path: Path) -> Iterator[str]:
    """The project's modules `name` imports; `from pkg import sub` names pkg.sub."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            submodules = [f"{module}.{alias.name}" for alias in node.names]
            targets = [m for m in submodules if m in MODULES] or [module]
        else:
            continue
        yield from (target for target in targets if target in MODULES and target != name)


GRAPH = {name: sorted(set(imports_of(name, path))) for name, path in MODULES.items()}


def layer(name: str) -> int:
    prefixes = [p for p in LAYERS if name == p or name.startswith(f"{p}.")]
    return LAYERS[max(prefixes, key=len)]


@pytest.mark.parametrize("name", sorted(MODULES))
def test_a_module_imports_nothing_above_its_layer(name):
    upward = [target for target in GRAPH[name] if layer(target) > layer(name)]

    assert upward == [], f"{name} (layer {layer(name)}) imports {upward}"


def test_nothing_imports_the_stored_path_aliases():
    users = [
        name for name, targets in GRAPH.items() if {"outbox.relay", "outbox.passes"} & set(targets)
    ]

    assert users == []


def cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in GRAPH[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
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

    for node in sorted(GRAPH):
        if node not in index:
            visit(node)
    return found


def test_no_import_circles():
    assert cycles() == []


def test_the_cycle_finder_finds_a_circle():
    # The check above can fail: two modules importing each other are one component.
    saved = dict(GRAPH)
    try:
        GRAPH["outbox.models"] = [*GRAPH["outbox.models"], "outbox.conf"]
        GRAPH["outbox.conf"] = [*GRAPH["outbox.conf"], "outbox.models"]
        assert ["outbox.conf", "outbox.models"] in cycles()
    finally:
        GRAPH.clear()
        GRAPH.update(saved)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_is_over_450_lines(name):
    lines = len(MODULES[name].read_text().splitlines())

    assert lines <= MAX_LINES, f"{MODULES[name].relative_to(ROOT)} has {lines} lines"
