"""A fresh clone installs what CI tested: every dependency pinned, and the pins honoured."""

from __future__ import annotations

import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from project.settings import BASE_DIR


def _constraints() -> dict[str, Version]:
    pinned: dict[str, Version] = {}
    for line in (BASE_DIR / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pinned[canonicalize_name(name)] = Version(version)
    return pinned


def _requirements() -> list[Requirement]:
    project = tomllib.loads((BASE_DIR / "pyproject.toml").read_text())["project"]
    listed = project["dependencies"] + [
        spec for specs in project["optional-dependencies"].values() for spec in specs
    ]
    return [Requirement(spec) for spec in listed]


def test_every_dependency_is_pinned_in_constraints_within_what_pyproject_accepts():
    pinned = _constraints()
    unpinned = []
    outside = []
    for requirement in _requirements():
        version = pinned.get(canonicalize_name(requirement.name))
        if version is None:
            unpinned.append(requirement.name)
        elif not requirement.specifier.contains(version, prereleases=True):
            outside.append(f"{requirement.name}=={version} is not {requirement.specifier}")

    assert (unpinned, outside) == ([], [])


def test_the_constraints_hold_exact_versions_only():
    lines = [
        line.strip()
        for line in (BASE_DIR / "constraints.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    assert [line for line in lines if line.count("==") != 1 or " @ " in line] == []


def test_setup_installs_with_the_constraints_and_reinstalls_when_they_change():
    setup = (BASE_DIR / "scripts" / "setup.sh").read_text()

    assert "-c constraints.txt -e '.[dev]'" in setup
    assert "cat pyproject.toml constraints.txt | sha1sum" in setup
