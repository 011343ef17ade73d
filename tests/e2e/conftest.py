"""Real processes for end-to-end tests: the fake gateway, gunicorn and qcluster.

Each test gets its own database: a SQLite file, or a fresh PostgreSQL database when the suite
runs with DATABASE_URL=postgres://... These tests never use pytest-django's test database.
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(check: Callable[[], Any], *, timeout: float, what: str, every: float = 0.2) -> Any:
    """Poll `check` until it returns something truthy; fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as exc:  # the service may still be starting
            last_error = exc
        time.sleep(every)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what} (last error: {last_error})")


@dataclass
class Database:
    url: str
    vendor: str
    path: Path | None = None

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        if self.vendor == "sqlite":
            assert self.path is not None
            with sqlite3.connect(self.path, timeout=30) as conn:
                return conn.execute(sql.replace("%s", "?"), params).fetchall()
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            return conn.execute(sql, params).fetchall()

    def tries_per_task(self) -> list[tuple[int, int]]:
        """(task id, tries) of every task: its Attempt rows, and the success its row keeps."""
        return self.rows(
            "SELECT t.id, (SELECT COUNT(*) FROM outbox_attempt a WHERE a.task_id = t.id) "
            "+ CASE WHEN t.succeeded_started_at IS NULL THEN 0 ELSE 1 END FROM outbox_task t"
        )

    def value(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        return self.rows(sql, params)[0][0]

    def task_states(self) -> dict[str, int]:
        return dict(self.rows("SELECT state, COUNT(*) FROM outbox_task GROUP BY state"))


@dataclass
class Stack:
    db: Database
    tmp: Path
    env: dict[str, str]
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    gateway_url: str = ""
    web_url: str = ""

    def start(self, name: str, args: list[str], **env: str) -> subprocess.Popen[bytes]:
        log = open(self.tmp / f"{name}.log", "ab")  # noqa: SIM115  (closed with the process)
        process = subprocess.Popen(
            args,
            cwd=ROOT,
            env={**self.env, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so signals reach its workers
        )
        process.log_path = self.tmp / f"{name}.log"  # type: ignore[attr-defined]
        self.processes.append(process)
        return process

    def manage(
        self, *args: str, check: bool = True, **env: str
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=600,
        )
        if check and result.returncode != 0:
            pytest.fail(f"manage.py {' '.join(args)} failed:\n{result.stderr[-3000:]}")
        return result

    def start_gateway(self, *flags: str) -> str:
        port = free_port()
        self.start(
            "gateway",
            [sys.executable, "manage.py", "fake_gateway", "--port", str(port), *flags],
        )
        self.gateway_url = f"http://127.0.0.1:{port}"
        self.env["GATEWAY_ADDR"] = self.gateway_url
        wait_until(
            lambda: requests.get(f"{self.gateway_url}/fake-gateway/control", timeout=1).ok,
            timeout=30,
            what="the fake gateway to answer",
        )
        return self.gateway_url

    def start_web(self) -> str:
        port = free_port()
        self.start(
            "web",
            [
                str(VENV_BIN / "gunicorn"),
                "project.wsgi",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                "2",
                "--threads",
                "4",
            ],
        )
        self.web_url = f"http://127.0.0.1:{port}"
        wait_until(
            lambda: requests.get(f"{self.web_url}/health", timeout=1).ok,
            timeout=30,
            what="gunicorn to answer /health",
        )
        return self.web_url

    def start_cluster(self, name: str = "cluster", **env: str) -> subprocess.Popen[bytes]:
        return self.start(name, [sys.executable, "manage.py", "qcluster"], **env)

    def gateway_state(self) -> dict[str, Any]:
        response = requests.get(f"{self.gateway_url}/fake-gateway/state", timeout=10)
        response.raise_for_status()
        return response.json()

    def configure_gateway(self, **config: Any) -> None:
        response = requests.post(
            f"{self.gateway_url}/fake-gateway/control", json=config, timeout=10
        )
        response.raise_for_status()

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()  # the main process only, as a service manager would
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)

    def logs(self) -> str:
        out = []
        for process in self.processes:
            path = process.log_path  # type: ignore[attr-defined]
            out.append(f"----- {path.name} -----\n{path.read_text(errors='replace')[-4000:]}")
        return "\n".join(out)


def _postgres_url() -> str | None:
    url = os.environ.get("DATABASE_URL", "")
    return url if url.startswith(("postgres://", "postgresql://")) else None


@pytest.fixture
def e2e_database(tmp_path: Path) -> Iterator[Database]:
    base = _postgres_url()
    if base is None:
        path = tmp_path / "e2e.sqlite3"
        yield Database(url=f"sqlite:///{path}", vendor="sqlite", path=path)
        return
    import psycopg

    name = f"e2e_{uuid.uuid4().hex[:10]}"
    admin_url = base.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield Database(url=base.rsplit("/", 1)[0] + f"/{name}", vendor="postgresql")
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# Short passes and leases, so a killed cluster's tasks come back within seconds.
FAST_RELAY = {
    "OUTBOX_PASS_SECONDS": "2",
    "OUTBOX_MAX_TASK_SECONDS": "3",
    "OUTBOX_LEASE_SECONDS": "6",
    "OUTBOX_RENEW_SECONDS": "1",
    "OUTBOX_CALL_SECONDS": "3",
    # A sheet append whose outcome was unclear waits this long before reading the sheet.
    "SHEET_SETTLE_SECONDS": "1.5",
    "OUTBOX_BACKOFF_BASE_SECONDS": "0.05",
    "OUTBOX_BACKOFF_CAP_SECONDS": "0.5",
    "Q_TIMEOUT": "10",
    "Q_RETRY": "20",
    # Two clusters, gunicorn and the test share one PostgreSQL of 100 connections: each process
    # pools at most four (a pass and its handler threads need no more at this scale).
    "DATABASE_POOL_SIZE": "4",
}


@pytest.fixture
def stack(
    e2e_database: Database, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Stack]:
    env = {
        **os.environ,
        "DEBUG": "1",
        "DATABASE_URL": e2e_database.url,
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
        **FAST_RELAY,
    }
    env.pop("TEST_DATABASE_NAME", None)
    built = Stack(db=e2e_database, tmp=tmp_path, env=env)
    built.manage("migrate", "--noinput")
    try:
        yield built
    finally:
        built.stop_all()
        failed = getattr(request.node, "rep_call", None)
        if failed is not None and failed.failed:
            print(built.logs())


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"rep_{report.when}", report)
