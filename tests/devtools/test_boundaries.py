"""The workshop stays out of the runtime: devtools imports tickets and outbox, never the reverse."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def test_no_runtime_module_imports_devtools():
    offenders = [
        f"{path.relative_to(ROOT)} imports {name}"
        for package in ("project", "outbox", "tickets")
        for path in sorted((ROOT / package).rglob("*.py"))
        for name in imported_modules(path)
        if name == "devtools" or name.startswith("devtools.")
    ]

    assert offenders == []
