"""What the benchmark's figures share: their sizes, wiping the tables, enqueueing a backlog,
timing its drain, and the finished rows of the big-table figures."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection, transaction

from devtools.benchmark.handlers import NOOP
from devtools.bulk import fill_tasks
from outbox.models import Task, TaskState
from outbox.runtime.relay import Relay
from outbox.services import TaskSpec, enqueue_many

ROOT = Path(settings.BASE_DIR)


@dataclass
class Options:
    naive_tasks: int = 2000
    drain_tasks: int = 30000
    http_tasks: int = 5000
    enqueue_tasks: int = 20000
    latency_samples: int = 200
    webhook_requests: int = 200
    big_table_rows: int = 1_000_000
    console_failing: int = 5_000
    console_requests: int = 20
    threads: int = 16
    batch_size: int = 200
    start_rounds: int = 3
    work_tasks: int = 10_000
    load_seconds: int = 30


def wipe() -> None:
    tables = [
        "outbox_attempt",
        "outbox_task",
        "outbox_relaypass",
        "django_q_ormq",
        "django_q_task",
    ]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY")
        else:
            for table in tables:
                cursor.execute(f"DELETE FROM {table}")


def vacuum() -> None:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("VACUUM ANALYZE outbox_task")
            cursor.execute("VACUUM ANALYZE outbox_attempt")
        else:
            cursor.execute("ANALYZE")


def enqueue_noops(count: int, *, kind: str = NOOP, payload: dict[str, Any] | None = None) -> None:
    for start in range(0, count, 5000):
        with transaction.atomic():
            enqueue_many(
                [
                    TaskSpec(kind=kind, payload=payload or {})
                    for _ in range(min(5000, count - start))
                ]
            )


def unfinished() -> int:
    return Task.objects.filter(state__in=[TaskState.PENDING, TaskState.RUNNING]).count()


def drain_rate(
    remaining: Callable[[], int],
    total: int,
    *,
    timeout: float,
    any_done: Callable[[], bool] | None = None,
    any_left: Callable[[], bool] | None = None,
) -> float:
    """Tasks/s from the first finished task to the last.

    Polls every 20 ms: `any_done` until the first task is done, then `remaining` once, then
    `any_left` until none is. Given the outbox's cheap EXISTS checks, the poll costs the
    database almost nothing; a COUNT over the backlog every 20 ms was a few percent of a CPU
    taken from what it measured.
    """
    any_done = any_done or (lambda: remaining() < total)
    any_left = any_left or (lambda: remaining() > 0)
    deadline = time.monotonic() + timeout
    started_at: float | None = None
    left_at_start = total
    while time.monotonic() < deadline:
        if started_at is None:
            if any_done():
                # Counted from here: the tasks still left when the first ones were seen done.
                started_at, left_at_start = time.monotonic(), remaining()
        elif not any_left():
            if left_at_start == 0:
                raise RuntimeError("drained between two polls: use more tasks")
            return left_at_start / (time.monotonic() - started_at)
        time.sleep(0.02)
    raise RuntimeError(f"not drained within {timeout:.0f}s: {remaining()} of {total} left")


def any_task_done() -> bool:
    return Task.objects.filter(state=TaskState.SUCCEEDED).exists()


def any_task_left() -> bool:
    return Task.objects.filter(state__in=[TaskState.PENDING, TaskState.RUNNING]).exists()


def outbox_drain_rate(total: int) -> float:
    """`drain_rate` of the outbox's backlog of `total` tasks, polled with EXISTS checks."""
    return drain_rate(
        unfinished, total, timeout=600, any_done=any_task_done, any_left=any_task_left
    )


def wait_drained(*, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while any_task_left():
        if time.monotonic() > deadline:
            raise RuntimeError(f"not drained within {timeout:.0f}s: {unfinished()} left")
        time.sleep(0.05)


def timed_claims(relay: Relay) -> list[float]:
    """Wrap the relay's claim to time each call (ms)."""
    times: list[float] = []
    original = relay.claim

    def claim(limit: int) -> Any:
        started = time.perf_counter()
        result = original(limit)
        times.append((time.perf_counter() - started) * 1000)
        return result

    relay.claim = claim  # type: ignore[method-assign]
    return times


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def raw_loop() -> int:
    """Claim 100 due tasks per UPDATE..RETURNING until none is left; how many it claimed."""
    table = connection.ops.quote_name(Task._meta.db_table)
    lock = " FOR UPDATE SKIP LOCKED" if connection.vendor == "postgresql" else ""
    sql = (
        f"UPDATE {table} SET state = 'running', attempts = attempts + 1 WHERE id IN "
        f"(SELECT id FROM {table} WHERE state = 'pending' AND queue = 'default' "
        f"ORDER BY available_at LIMIT 100{lock}) RETURNING id"
    )
    claimed = 0
    try:
        with connection.cursor() as cursor:
            while True:
                cursor.execute(sql)
                rows = cursor.fetchall()
                if not rows:
                    return claimed
                claimed += len(rows)
    finally:
        connection.close()


# The finished rows' completion times span a week: a retention window, so the dashboard's
# last day holds a seventh of them, as it would in production.
FINISHED_SPREAD_SECONDS = 7 * 86_400
CONSOLE_KINDS = ["tickets.issue_receipt", "tickets.append_row", "tickets.void", "tickets.refund"]


def fill_finished(rows: int) -> None:
    fill_tasks(rows, kinds=[NOOP], spread_seconds=FINISHED_SPREAD_SECONDS)
