"""The security page's claims point at real tests, and the docs' links at real files."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from project.settings import BASE_DIR

_TEST_REFERENCE = re.compile(r"(tests/[\w/]+\.py)::(\w+)")
_LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def test_every_test_named_in_the_threat_table_exists():
    text = (BASE_DIR / "docs" / "SECURITY.md").read_text()
    references = _TEST_REFERENCE.findall(text)

    assert len(references) >= 9  # one or more per surface
    missing = [
        f"{path}::{name}"
        for path, name in references
        if not re.search(
            rf"^(?:async )?def {name}\(", (BASE_DIR / path).read_text(), flags=re.MULTILINE
        )
    ]
    assert missing == []


@pytest.mark.parametrize(
    "doc",
    [
        "README.md",
        "docs/SECURITY.md",
        "docs/API.md",
        "docs/GATEWAY_API.md",
        "docs/ARCHITECTURE.md",
        "docs/FAKE_GATEWAY.md",
    ],
    ids=lambda d: Path(d).name,
)
def test_relative_links_of_the_docs_name_files_in_the_repository(doc):
    page = BASE_DIR / doc
    targets = [t for t in _LINK.findall(page.read_text()) if "://" not in t]

    outside = [t for t in targets if BASE_DIR not in (page.parent / t).resolve().parents]
    missing = [t for t in targets if not (page.parent / t).resolve().exists()]
    assert (outside, missing) == ([], [])
