"""The processes the benchmark starts: a real `qcluster`, the local HTTP server the HTTP
figure calls, and the /proc readers that size a process tree."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings

from devtools.benchmark.base import ROOT
from devtools.benchmark_env import BENCHMARK_ENV
from devtools.http_server import HttpServer, Reply, Request

# The devtools' HTTP server in its own process, so it never shares a GIL with what it measures.

_EMPTY_OBJECT = Reply(200, b"{}")


async def _answer_empty_object(request: Request) -> Reply:
    return _EMPTY_OBJECT


def _run_server(port: int, ready: Any) -> None:
    server = HttpServer(_answer_empty_object, port=port)
    ready.set()
    server.serve_forever(stop_on_signals=True)


class LocalServer:
    def __init__(self) -> None:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        context = multiprocessing.get_context("fork")
        ready = context.Event()
        self.process = context.Process(target=_run_server, args=(self.port, ready), daemon=True)
        self.process.start()
        if not ready.wait(10):
            raise RuntimeError("the benchmark's HTTP server did not start")
        self.url = f"http://127.0.0.1:{self.port}/ping"

    def stop(self) -> None:
        self.process.terminate()
        self.process.join(5)


@dataclass
class Cluster:
    """A real `manage.py qcluster` process for the benchmark."""

    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    log: Path = field(default_factory=lambda: ROOT / "var" / "benchmark-qcluster.log")

    def __enter__(self) -> Cluster:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.started_at = time.time()
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"],
            cwd=ROOT,
            env={
                **os.environ,
                "LOG_LEVEL": "WARNING",
                "Q_LOG_LEVEL": "WARNING",
                # As in production: DEBUG on would keep every query in memory.
                "DEBUG": "0",
                "SECRET_KEY": settings.SECRET_KEY,
                BENCHMARK_ENV: "1",
                **self.env,
            },
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.process is not None
        self.process.terminate()
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


def process_tree(root: int) -> list[int]:
    """`root` and every process descended from it, from /proc (Linux)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    tree, stack = [], [root]
    while stack:
        pid = stack.pop()
        tree.append(pid)
        stack.extend(children.get(pid, []))
    return tree


def pss_kib(pid: int) -> int:
    """Proportional set size of one process: its private pages plus its share of shared ones."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0
