"""Imports point one way: tickets -> outbox's public surface, never outbox -> tickets."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# What a domain app may import from the engine: the package's public surface
# (outbox/__init__.py) and these named modules.
TICKETS_MAY_IMPORT = {
    "outbox",
    "outbox.console.links",
    # The admin history the console's commands write, for the domain's own fixes (reconcile).
    "outbox.console.audit",
    "outbox.models",
    "outbox.console.admin_mixins",
    "outbox.console.api",
    "outbox.runtime.circuit",
    "outbox.correlation",
    "outbox.history",
    "outbox.plaintext",
    "outbox.tracing",
}


def python_files(app: str) -> list[Path]:
    return sorted(p for p in (ROOT / app).rglob("*.py") if "migrations" not in p.parts)


def imported_modules(path: Path) -> Iterator[str]:
    """Every module `path` imports, at any depth; `from pkg import sub` names pkg.sub."""
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            package_dir = ROOT / node.module.replace(".", "/")
            for alias in node.names:
                if (package_dir / f"{alias.name}.py").exists() or (
                    package_dir / alias.name
                ).is_dir():
                    yield f"{node.module}.{alias.name}"


def is_within(module: str, package: str) -> bool:
    return module == package or module.startswith(f"{package}.")


@pytest.mark.parametrize("path", python_files("tickets"), ids=lambda p: p.name)
def test_tickets_uses_only_the_public_surface_of_outbox(path):
    used = {m for m in imported_modules(path) if is_within(m, "outbox")}

    assert used <= TICKETS_MAY_IMPORT, f"{path.name} imports {sorted(used - TICKETS_MAY_IMPORT)}"


@pytest.mark.parametrize("path", python_files("outbox"), ids=lambda p: p.name)
def test_the_engine_imports_neither_the_domain_nor_the_workshop(path):
    wrong = [
        m for m in imported_modules(path) if is_within(m, "tickets") or is_within(m, "devtools")
    ]

    assert wrong == [], f"{path.name} imports {wrong}"


# A domain's word in the engine's own text: the console once told an operator about "the
# sheet" for any kind of task. (`stylesheet` and an example kind's `append_sheet_row` are not.)
DOMAIN_WORDS = re.compile(r"\b(?:spread)?sheets?\b", re.IGNORECASE)


def engine_texts() -> list[Path]:
    return sorted(
        p for p in (ROOT / "outbox").rglob("*") if p.suffix in {".py", ".html", ".txt", ".js"}
    )


@pytest.mark.parametrize("path", engine_texts(), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_engine_says_nothing_of_a_sheet(path):
    said = [
        f"line {number}: {line.strip()}"
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if DOMAIN_WORDS.search(line)
    ]

    assert said == [], f"{path.relative_to(ROOT)} names a domain concept: {said}"


@pytest.mark.parametrize("path", python_files("tickets"), ids=lambda p: p.name)
def test_the_domain_does_not_import_the_workshop(path):
    wrong = [m for m in imported_modules(path) if is_within(m, "devtools")]

    assert wrong == [], f"{path.name} imports {wrong}"


def test_the_public_surface_names_what_it_exports():
    import outbox

    missing = [name for name in outbox.__all__ if not hasattr(outbox, name)]

    assert missing == []


def test_importing_the_package_does_not_load_the_models():
    # The package is imported by settings and by app loading, before the app registry is
    # ready: it must not touch the models until a lazy name is used.
    import subprocess
    import sys

    code = (
        "import sys, outbox; "
        "assert 'outbox.models' not in sys.modules, sorted(m for m in sys.modules if 'outbox' in m)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
