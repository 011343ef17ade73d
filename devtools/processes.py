"""Real processes for `manage.py bad_day_benchmark`: the fake gateway, gunicorn, qcluster.

Each runs in its own process group (a kill reaches its workers), with the environment
production would give it (`child_env`), and logs to a file of its own.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from django.conf import settings
from django.db import DatabaseError, connection

ROOT = Path(settings.BASE_DIR)
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(check: Callable[[], Any], *, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except (requests.RequestException, DatabaseError):
            connection.close()
        time.sleep(0.1)
    raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")


def child_env(database_url: str, settle_seconds: float | None) -> dict[str, str]:
    """Production defaults: DEBUG off, no OUTBOX_* override, the settle unset unless named."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("OUTBOX_", "Q_"))
        and key not in ("SHEET_SETTLE_SECONDS", "TEST_DATABASE_NAME", "DATABASE_POOL_SIZE")
    }
    env.update(
        DEBUG="0",
        ENV_FILE="",
        SECRET_KEY=settings.SECRET_KEY,
        ALLOWED_HOSTS="127.0.0.1,localhost",
        # Plain HTTP on the loopback: in production a proxy in front terminates TLS.
        SECURE_SSL_REDIRECT="0",
        DATABASE_URL=database_url,
        LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
    )
    if settle_seconds is not None:
        env["SHEET_SETTLE_SECONDS"] = str(settle_seconds)
    return env


@dataclass
class Services:
    logs: Path
    env: dict[str, str]
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    gateway_url: str = ""
    web_url: str = ""

    def start(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        self.logs.mkdir(parents=True, exist_ok=True)
        with (self.logs / f"{name}.log").open("ab") as log:
            process = subprocess.Popen(
                args, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: a kill reaches its workers
            )  # fmt: skip
        self.processes.append(process)
        return process

    def gateway(self, flags: Sequence[str]) -> str:
        port = free_port()
        self.start("gateway", [sys.executable, "manage.py", "fake_gateway", "--port", str(port),
                               *flags])  # fmt: skip
        self.gateway_url = self.env["GATEWAY_ADDR"] = f"http://127.0.0.1:{port}"
        control = f"{self.gateway_url}/fake-gateway/control"
        wait_for(lambda: requests.get(control, timeout=1).ok, timeout=30, what="the gateway")
        return self.gateway_url

    def configure_gateway(self, **config: Any) -> None:
        url = f"{self.gateway_url}/fake-gateway/control"
        requests.post(url, json=config, timeout=10).raise_for_status()

    def web(self) -> str:
        port = free_port()
        self.start("web", [str(VENV_BIN / "gunicorn"), "project.wsgi", "--bind",
                           f"127.0.0.1:{port}", "--workers", "2", "--threads", "4"])  # fmt: skip
        self.web_url = f"http://127.0.0.1:{port}"
        health = f"{self.web_url}/health"
        wait_for(lambda: requests.get(health, timeout=1).ok, timeout=30, what="gunicorn")
        return self.web_url

    def cluster(self, name: str) -> subprocess.Popen[bytes]:
        return self.start(name, [sys.executable, "manage.py", "qcluster"])

    def kill(self, process: subprocess.Popen[bytes]) -> None:
        """SIGKILL the process and its workers, as a node that loses power."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill(process)


def restart_postgresql() -> None:
    """Restart the local PostgreSQL server (every database on it, not only this one)."""
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"],
        check=True,
        timeout=120,
        capture_output=True,
    )
