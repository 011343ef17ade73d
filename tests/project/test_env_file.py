"""A development `.env` never switches production off (docs/SECURITY.md, production settings)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from project.env import is_loopback_host
from project.settings import BASE_DIR

DEVELOPMENT_FILE = "# as scripts/serve.sh writes it\nDEBUG=1\nSECRET_KEY=key-from-the-dotenv\n"
PRINT_SECURITY = (
    "import project.settings as s; "
    "print(s.DEBUG, s.SECURE_SSL_REDIRECT, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE)"
)


def test_a_dotenv_in_the_base_directory_is_not_read_without_env_file(tmp_path: Path):
    # A copy of the settings' packages, so the `.env` sits in their BASE_DIR (as in an image
    # that baked the development file in) without touching this checkout's own.
    for package in ("project", "outbox"):
        shutil.copytree(
            BASE_DIR / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    (tmp_path / ".env").write_text(DEVELOPMENT_FILE)

    result = subprocess.run(
        [sys.executable, "-c", PRINT_SECURITY],
        cwd=tmp_path,
        env={
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": str(tmp_path),
            "SECRET_KEY": "x" * 60,
            "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "True", "True", "True"]


def settings_with(env_file: Path, **environ: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=BASE_DIR,
        env={"PATH": "/usr/bin:/bin", "ENV_FILE": str(env_file), **environ},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("hosts", ["example.com", "localhost,tickets.example.com", "*"])
def test_debug_from_the_file_for_a_public_host_stops_start_up_in_one_line(
    tmp_path: Path, hosts: str
):
    env_file = tmp_path / ".env"
    env_file.write_text(DEVELOPMENT_FILE)

    result = settings_with(env_file, ALLOWED_HOSTS=hosts)

    assert result.returncode == 2
    assert result.stderr.startswith(f"Configuration error: DEBUG=1 came from ENV_FILE='{env_file}'")
    assert "ALLOWED_HOSTS" in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr


def test_debug_from_the_file_serves_this_machine(tmp_path: Path):
    env_file = tmp_path / ".env"
    env_file.write_text(DEVELOPMENT_FILE)

    for hosts in (None, "localhost,127.0.0.1,[::1],.localhost"):
        result = settings_with(env_file, **({"ALLOWED_HOSTS": hosts} if hosts else {}))

        assert result.returncode == 0, result.stderr


def test_debug_from_the_real_environment_is_the_operators_choice(tmp_path: Path):
    env_file = tmp_path / ".env"
    env_file.write_text("SECRET_KEY=key-from-the-dotenv\n")

    result = settings_with(env_file, DEBUG="1", ALLOWED_HOSTS="example.com")

    assert result.returncode == 0, result.stderr


def test_an_env_file_that_does_not_exist_stops_start_up(tmp_path: Path):
    missing = tmp_path / "missing.env"

    result = settings_with(missing, DEBUG="1")

    assert result.returncode == 2
    assert result.stderr == (
        f"Configuration error: ENV_FILE='{missing}' is not a file; unset ENV_FILE to read none.\n"
    )


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        (".localhost", True),
        ("api.localhost", True),
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("[::1]", True),
        ("::1", True),
        ("example.com", False),
        ("localhost.example.com", False),
        ("10.0.0.5", False),
        ("0.0.0.0", False),
        ("*", False),
        ("", False),
    ],
)
def test_only_this_machines_names_are_loopback(host: str, loopback: bool):
    assert is_loopback_host(host) is loopback
