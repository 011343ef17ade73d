"""Every `python manage.py <command>` line in the README and docs works as written.

As an operator pastes them: in a shell where `source .venv/bin/activate` ran, beside the
development `.env` that scripts/serve.sh writes, with no DEBUG or SECRET_KEY of their own.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
COMMAND = re.compile(r"python3? manage\.py ([a-z_]+)")


def documented_commands() -> list[str]:
    found = {name for doc in DOCS for name in COMMAND.findall(doc.read_text())}
    return sorted(found)


def test_the_docs_document_no_command():
    # The parse below must find the commands, or the test beneath proves nothing.
    assert {"outbox_status", "replay_tasks", "prune_outbox", "qcluster"} <= set(
        documented_commands()
    )


@pytest.fixture(scope="module")
def serve_sh_shell(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    env_file = tmp_path_factory.mktemp("dotenv") / ".env"
    env_file.write_text(
        "# as scripts/serve.sh writes it\nDEBUG=1\nSECRET_KEY=test-key-from-dotenv\n"
        "GATEWAY_ADDR=http://127.0.0.1:8081\n"
    )
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in {"DEBUG", "SECRET_KEY", "DJANGO_SETTINGS_MODULE"}
    }
    env["ENV_FILE"] = str(env_file)
    return env


@pytest.mark.parametrize("command", documented_commands())
def test_a_documented_command_fails_when_pasted(command: str, serve_sh_shell: dict[str, str]):
    result = subprocess.run(
        [sys.executable, "manage.py", command, "--help"],
        cwd=ROOT,
        env=serve_sh_shell,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stderr
    assert f"manage.py {command}" in result.stdout


def test_without_the_dotenv_file_a_command_says_what_is_missing_in_a_traceback(
    serve_sh_shell: dict[str, str],
):
    result = subprocess.run(
        [sys.executable, "manage.py", "outbox_status", "--help"],
        cwd=ROOT,
        env={**serve_sh_shell, "ENV_FILE": ""},
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 2
    assert result.stderr == "Configuration error: SECRET_KEY must be set when DEBUG is off.\n"


def test_a_dotenv_file_turns_debug_on_where_the_environment_turned_it_off(
    serve_sh_shell: dict[str, str],
):
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env={**serve_sh_shell, "DEBUG": "0"},
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 2
    assert "SECRET_KEY must be set when DEBUG is off" in result.stderr


def test_the_dotenv_file_overrides_the_real_environment(serve_sh_shell: dict[str, str]):
    result = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "shell",
            "-c",
            "from django.conf import settings; print(settings.GATEWAY_ADDR, settings.DEBUG)",
        ],
        cwd=ROOT,
        env={**serve_sh_shell, "GATEWAY_ADDR": "http://gateway.example.com"},
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1].split() == ["http://gateway.example.com", "True"]
