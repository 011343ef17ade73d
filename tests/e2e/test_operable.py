"""Operator mistakes answered in one plain line: bad settings, an unmigrated database."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.e2e.conftest import ROOT, VENV_BIN, Database, Stack, free_port, wait_until

pytestmark = pytest.mark.e2e

MIGRATE_HINT = "Apply them with: python manage.py migrate"


def run(
    args: list[str], env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def unmigrated_env(e2e_database: Database) -> dict[str, str]:
    import os

    env = {**os.environ, "DEBUG": "1", "DATABASE_URL": e2e_database.url, "ENV_FILE": ""}
    env.pop("TEST_DATABASE_NAME", None)
    return env


@pytest.mark.parametrize(
    "command",
    [["qcluster"], ["outbox_status"], ["replay_tasks", "--dry-run"], ["prune_outbox"]],
)
def test_a_command_on_an_unmigrated_database_answers_a_traceback(
    unmigrated_env: dict[str, str], command: list[str]
):
    result = run([sys.executable, "manage.py", *command], unmigrated_env, timeout=60)

    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "unapplied migration" in lines[0]
    assert MIGRATE_HINT in lines[0]


def test_the_web_app_on_an_unmigrated_database_reports_healthy(
    unmigrated_env: dict[str, str], tmp_path: Path
):
    port = free_port()
    log = tmp_path / "web.log"
    with log.open("wb") as out:
        web = subprocess.Popen(
            [str(VENV_BIN / "gunicorn"), "project.wsgi", "--bind", f"127.0.0.1:{port}"],
            cwd=ROOT,
            env=unmigrated_env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        (response,) = wait_until(
            lambda: [requests.get(f"http://127.0.0.1:{port}/health", timeout=2)],
            timeout=30,
            what="gunicorn to answer",
        )
        assert response.status_code == 503
        assert MIGRATE_HINT in response.text
    finally:
        web.terminate()
        web.wait(timeout=30)
    text = log.read_text()
    assert text.count(MIGRATE_HINT) >= 1
    assert "Traceback" not in text


@pytest.mark.parametrize(
    ("variable", "value"),
    [("LOG_LEVEL", "verbose"), ("Q_LOG_LEVEL", "loud"), ("OUTBOX_THREADS", "many")],
)
def test_a_bad_setting_ends_in_a_traceback_that_does_not_name_it(variable: str, value: str):
    import os

    env = {**os.environ, "DEBUG": "1", "ENV_FILE": "", variable: value}
    result = run([sys.executable, "manage.py", "check"], env)

    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"{variable}={value!r}" in lines[0]
    assert "Traceback" not in result.stdout


def test_gunicorn_with_a_bad_setting_retries_workers_with_tracebacks(tmp_path: Path):
    import os

    env = {**os.environ, "DEBUG": "1", "ENV_FILE": "", "LOG_LEVEL": "verbose"}
    result = run(
        [str(VENV_BIN / "gunicorn"), "project.wsgi", "--bind", f"127.0.0.1:{free_port()}"],
        env,
        timeout=60,
    )
    assert result.returncode != 0
    assert "LOG_LEVEL='verbose' must be one of" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_command_piped_into_head_prints_a_broken_pipe_traceback(
    unmigrated_env: dict[str, str],
):
    run([sys.executable, "manage.py", "migrate", "-v0"], unmigrated_env, timeout=300)
    result = subprocess.run(
        f"{sys.executable} manage.py outbox_status --json | head -1",
        shell=True,
        cwd=ROOT,
        env=unmigrated_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.stdout.strip() == "{"
    assert result.stderr == ""


def test_a_wrong_gateway_addr_fails_no_task_and_says_where_it_looked(stack: Stack):
    from tests.e2e.test_cluster import confirmed, post_order

    right = stack.start_gateway("--seed", "11")
    wrong = f"{right}/v1"
    stack.env["GATEWAY_ADDR"] = wrong
    stack.start_web()
    cluster = stack.start_cluster()
    post_order(stack, "order-1", [confirmed(f"w-{n}") for n in range(5)])

    wait_until(
        lambda: (
            stack.db.value("SELECT COUNT(*) FROM outbox_circuit WHERE opened_until IS NOT NULL")
            >= 2
        ),
        timeout=60,
        what="the receipts and spreadsheets circuits to open",
    )
    time.sleep(3)  # time for wrong tasks to fail, were they to

    assert stack.db.task_states().get("failed", 0) == 0
    # A wrong address spends no try: the tasks and the circuits say why they wait.
    assert stack.db.value("SELECT COUNT(*) FROM outbox_attempt") == 0
    errors = [e for (e,) in stack.db.rows("SELECT last_error FROM outbox_task")]
    errors += [e for (e,) in stack.db.rows("SELECT last_error FROM outbox_circuit")]
    assert errors
    assert any(f"{wrong}/receipts-api/receipts" in e and "GATEWAY_ADDR" in e for e in errors)
    log = cluster.log_path.read_text()  # type: ignore[attr-defined]
    assert f"the receipts API is not at {wrong}/receipts-api/receipts" in log
    assert stack.gateway_state()["receipts"] == []
