"""The repository stands alone: its docs, comments and tests cite only files it holds."""

from __future__ import annotations

import re
import shutil
import subprocess

from project.settings import BASE_DIR

# A design brief or a shared folder beside the clone: neither travels with the repository.
_OUTSIDE = re.compile(r"DESIGN\.md|\.\./shared")


_NOT_OURS = {".git", ".venv", "var", "__pycache__", "build", "dist", ".mypy_cache", ".ruff_cache"}


def _tracked_files() -> list[str]:
    """The repository's files: git's list in a checkout, else every file but the generated."""
    if shutil.which("git") is not None and (BASE_DIR / ".git").exists():
        listed = subprocess.run(
            ["git", "ls-files", "-z"], cwd=BASE_DIR, capture_output=True, check=True
        ).stdout.decode()
        return [path for path in listed.split("\0") if path]
    return [
        str(path.relative_to(BASE_DIR))
        for path in BASE_DIR.rglob("*")
        if path.is_file()
        and not _NOT_OURS.intersection(path.relative_to(BASE_DIR).parts)
        and not any(part.endswith(".egg-info") for part in path.parts)
    ]


def test_no_tracked_file_cites_a_document_outside_the_repository():
    this_file = "tests/project/test_self_contained.py"
    citing = []
    for path in _tracked_files():
        file = BASE_DIR / path
        if path == this_file or not file.is_file():
            continue
        try:
            text = file.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        citing += [
            f"{path}:{number}"
            for number, line in enumerate(text.splitlines(), 1)
            if _OUTSIDE.search(line)
        ]

    assert citing == []


def test_the_wire_contracts_are_written_in_the_repository():
    seller = (BASE_DIR / "docs" / "API.md").read_text()
    gateway = (BASE_DIR / "docs" / "GATEWAY_API.md").read_text()

    for endpoint in ("POST /tickets-status", "PUT /ticket-refund/", "GET /tickets", "GET /health"):
        assert endpoint in seller
    for endpoint in (
        "PUT {GATEWAY_ADDR}/receipts-api/receipts",
        "PUT {GATEWAY_ADDR}/receipts-api/void-receipt",
        "PUT {GATEWAY_ADDR}/payments-api/refunds",
        "POST {GATEWAY_ADDR}/spreadsheets-api/sheets/{sheet}/rows",
        "GET {GATEWAY_ADDR}/spreadsheets-api/sheets/{sheet}/rows",
    ):
        assert endpoint in gateway
