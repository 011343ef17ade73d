"""The benchmark's handlers: registered on import, so the clusters it starts know them.

`devtools/apps.py` imports this module in `ready()` when BENCHMARK_ENV is set. The kinds are
names, not import paths; `naive_noop` is reached by django-q2 as `devtools.benchmark.naive_noop`
(re-exported by the package).
"""

from __future__ import annotations

import time

import requests

import outbox
from devtools.sessions import thread_session
from outbox.errors import TransientError

NOOP = "devtools.benchmark.noop"
FAIL_ONCE = "devtools.benchmark.fail_once"
HTTP = "devtools.benchmark.http"


@outbox.handler(NOOP, queue="default", max_attempts=3)
def noop(task: outbox.TaskContext) -> dict[str, float] | None:
    """Does nothing; stamps the time it was called when asked (for the latency figure)."""
    return {"called_at": time.time()} if task.payload.get("stamp") else None


@outbox.handler(FAIL_ONCE, queue="default", max_attempts=3)
def fail_once(task: outbox.TaskContext) -> None:
    """A first try that fails as a gateway's 503 would; the second succeeds."""
    if task.attempt == 1:
        raise TransientError("answered 503", http_status=503)


@outbox.handler(HTTP, queue="default", max_attempts=3)
def http_get(task: outbox.TaskContext) -> None:
    """One GET to the benchmark's local server, on a keep-alive session per thread."""
    try:
        response = thread_session().get(task.payload["url"], timeout=(3, 10))
    except requests.RequestException as exc:
        raise TransientError(str(exc)) from exc
    if response.status_code != 200:
        raise TransientError(f"answered {response.status_code}", http_status=response.status_code)


def naive_noop() -> None:
    """The naive baseline's task: one django-q2 task per outbox effect, doing nothing."""
