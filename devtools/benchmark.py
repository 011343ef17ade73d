"""The outbox's benchmark: our relay against naive django-q2, measured in one run.

Every number is measured on the database the process is configured with (DATABASE_URL). The
benchmark wipes the outbox and django-q2 tables of that database: point it at a scratch one.
"""

from __future__ import annotations

import io
import multiprocessing
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import requests
from django.conf import settings
from django.core.management import call_command
from django.db import connection, transaction
from django.db.models import Count, Max

import outbox
from devtools import dbwork
from devtools.apps import BENCHMARK_ENV
from devtools.bulk import fill_tasks
from devtools.http_server import HttpServer, Reply, Request
from devtools.sessions import thread_session
from outbox.conf import outbox_settings
from outbox.errors import TransientError
from outbox.models import Attempt, Task, TaskState
from outbox.runtime.relay import Relay
from outbox.services import TaskSpec, enqueue, enqueue_many

NOOP = "devtools.benchmark.noop"
FAIL_ONCE = "devtools.benchmark.fail_once"
HTTP = "devtools.benchmark.http"
ROOT = Path(settings.BASE_DIR)


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


# Helpers -----------------------------------------------------------------------------------


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


# The measurements --------------------------------------------------------------------------


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


@dataclass
class Report:
    vendor: str
    lines: list[tuple[str, str, str]] = field(default_factory=list)
    log: Callable[[str], None] = print

    def add(self, figure: str, value: str, note: str = "") -> None:
        self.lines.append((figure, value, note))
        self.log(f"{figure}: {value} {note}".rstrip())


def naive_baseline(options: Options, report: Report) -> float:
    from django_q.models import OrmQ
    from django_q.tasks import async_task

    wipe()
    started = time.perf_counter()
    for _ in range(options.naive_tasks):
        async_task("devtools.benchmark.naive_noop")
    enqueue_seconds = time.perf_counter() - started
    with Cluster({"OUTBOX_AUTOSTART": "0"}):
        rate = drain_rate(OrmQ.objects.count, options.naive_tasks, timeout=600)
    report.add(
        "(a) naive django-q2: one async_task per task, no-op",
        f"{rate:,.0f} tasks/s",
        f"(ORM broker, {settings.Q_CLUSTER['workers']} workers, WARNING logs; "
        f"enqueue {options.naive_tasks / enqueue_seconds:,.0f}/s)",
    )
    return rate


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


def raw_ceiling(options: Options, report: Report) -> float:
    """The database's ceiling: a bare loop claiming 100 due tasks per UPDATE..RETURNING.

    No handler, no lease token, no attempt row, no finishing write: what one statement per
    100 tasks costs on this database, so the relay's drain can be read as a share of it.
    """
    wipe()
    enqueue_noops(options.drain_tasks)
    vacuum()
    started = time.perf_counter()
    claimed = raw_loop()
    rate = claimed / (time.perf_counter() - started)
    report.add(
        "(h) raw SKIP LOCKED loop: claim 100 per UPDATE..RETURNING, no handler",
        f"{rate:,.0f} tasks/s",
        f"(the ceiling the figures read against; one connection, {claimed:,} tasks)",
    )
    wipe()
    return rate


def cluster_drain(options: Options, report: Report, naive: float, ceiling: float = 0.0) -> None:
    wipe()
    enqueue_noops(options.drain_tasks)
    vacuum()
    with Cluster({}):
        rate = outbox_drain_rate(options.drain_tasks)
    conf = outbox_settings()  # settings.OUTBOX holds only what the environment overrides
    report.add(
        "(b) outbox relay in qcluster, no-op handler",
        f"{rate:,.0f} tasks/s",
        f"({rate / naive:,.1f}x naive"
        + (f"; {rate / ceiling:.0%} of the raw loop (h)" if ceiling else "")
        + f"; up to {conf.max_passes} passes, batch {conf.batch_size}, "
        f"{conf.threads} threads each; {options.drain_tasks:,} tasks)",
    )
    wipe()
    enqueue_noops(options.drain_tasks)
    vacuum()
    relay = Relay(threads=options.threads, batch_size=options.batch_size)
    started = time.perf_counter()
    stats = relay.drain(max_batches=10**6)
    seconds = time.perf_counter() - started
    report.add(
        "(b') one relay in this process, no-op handler",
        f"{stats.succeeded / seconds:,.0f} tasks/s",
        f"(batch {options.batch_size}, {options.threads} threads)",
    )


def http_drain(options: Options, report: Report) -> None:
    server = LocalServer()
    try:
        calls = options.http_tasks

        def call(_: int) -> None:
            thread_session().get(server.url, timeout=(3, 10)).raise_for_status()

        with ThreadPoolExecutor(options.threads) as pool:
            list(pool.map(call, range(200)))  # warm up the connections
            started = time.perf_counter()
            list(pool.map(call, range(calls)))
            loop_rate = calls / (time.perf_counter() - started)

        wipe()
        enqueue_noops(calls, kind=HTTP, payload={"url": server.url})
        relay = Relay(threads=options.threads, batch_size=options.batch_size)
        started = time.perf_counter()
        stats = relay.run(seconds=600, until_idle=True)
        seconds = time.perf_counter() - started
        relay_rate = stats.succeeded / seconds
    finally:
        server.stop()
    report.add(
        "(c) plain loop: one GET per call, no database",
        f"{loop_rate:,.0f} calls/s",
        f"({options.threads} threads)",
    )
    report.add(
        "(c) outbox relay: one GET per task",
        f"{relay_rate:,.0f} tasks/s",
        f"({relay_rate / loop_rate:.0%} of the plain loop, same {options.threads} threads)",
    )


def enqueue_rate(options: Options, report: Report) -> None:
    wipe()
    count = options.enqueue_tasks
    started = time.perf_counter()
    for _ in range(count // 100):
        with transaction.atomic():
            enqueue_many([TaskSpec(kind=NOOP) for _ in range(100)])
    batched = count / (time.perf_counter() - started)
    wipe()
    single_count = count // 10
    started = time.perf_counter()
    for _ in range(single_count):
        with transaction.atomic():
            enqueue(NOOP)
    single = single_count / (time.perf_counter() - started)
    report.add("(d) enqueue, 100 tasks per transaction", f"{batched:,.0f} tasks/s")
    report.add("(d) enqueue, 1 task per transaction", f"{single:,.0f} tasks/s")
    wipe()


def latency(options: Options, report: Report) -> None:
    wipe()
    committed: dict[int, float] = {}
    rand = random.Random(7)
    with Cluster({}):
        time.sleep(3)  # let the cluster start and a pass settle into waiting for work
        for _ in range(options.latency_samples):
            with transaction.atomic():
                task = enqueue(NOOP, {"stamp": True})
            committed[task.id] = time.time()  # type: ignore[union-attr]
            time.sleep(rand.uniform(0.01, 0.05))
        wait_drained(timeout=120)
    called: dict[int, Any] = dict(Task.objects.values_list("id", "result"))
    samples = [(called[i]["called_at"] - t) * 1000 for i, t in committed.items()]
    report.add(
        "(e) commit to first call",
        f"p50 {percentile(samples, 0.5):,.0f} ms, p99 {percentile(samples, 0.99):,.0f} ms",
        f"({len(samples)} tasks committed one by one to an idle cluster)",
    )


def cluster_start(options: Options, report: Report) -> None:
    """`manage.py qcluster` launched onto a waiting backlog: launch to the first task done."""
    samples: list[float] = []
    for _ in range(options.start_rounds):
        wipe()
        with transaction.atomic():
            enqueue_many([TaskSpec(kind=NOOP, payload={"stamp": True}) for _ in range(1000)])
        with Cluster({}) as cluster:
            deadline = time.monotonic() + 60
            while not Task.objects.filter(state=TaskState.SUCCEEDED).exists():
                if time.monotonic() > deadline:
                    raise RuntimeError("no task done within 60 s of starting the cluster")
                time.sleep(0.02)
            time.sleep(0.5)  # the first batch recorded: its earliest stamp is the first call
            results = Task.objects.filter(state=TaskState.SUCCEEDED).values_list(
                "result", flat=True
            )
            first = min(r["called_at"] for r in results if r)
            samples.append(first - cluster.started_at)
    report.add(
        "(i) cluster start: launch of qcluster to the first task done, backlog waiting",
        f"median {statistics.median(samples):.2f} s",
        f"({len(samples)} starts: " + ", ".join(f"{s:.2f}" for s in samples) + " s)",
    )
    wipe()


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


def footprint(options: Options, report: Report) -> None:
    """The idle cluster's memory: PSS summed over every process of `qcluster`, a few seconds
    after start, then idle again after each of four drains: memory that grew with work
    would show as a rising line."""
    if not Path("/proc/self/smaps_rollup").exists():
        report.add("(j) idle cluster memory", "not measured", "(needs Linux /proc)")
        return
    wipe()
    with Cluster({}) as cluster:
        assert cluster.process is not None
        time.sleep(8)  # started, one pass settled into waiting
        pids = process_tree(cluster.process.pid)
        at_start = sum(pss_kib(pid) for pid in pids)
        after: list[int] = []
        for _ in range(4):
            enqueue_noops(options.drain_tasks)
            wait_drained(timeout=600)
            time.sleep(8)  # the passes wound down to one waiting
            after.append(sum(pss_kib(pid) for pid in process_tree(cluster.process.pid)))
    report.add(
        "(j) idle cluster memory (PSS, all processes)",
        f"{at_start / 1024:,.0f} MiB after start; "
        + ", ".join(f"{kib / 1024:,.0f}" for kib in after)
        + f" MiB idle after each of 4 drains of {options.drain_tasks:,} tasks",
        f"({len(pids)} processes: qcluster, django-q2's sentinel, pusher and monitor, "
        f"{settings.Q_CLUSTER['workers']} workers; from /proc/<pid>/smaps_rollup)",
    )
    wipe()


def two_clusters(options: Options, report: Report, *, rounds: int = 3) -> None:
    """Two `qcluster` processes on one database draining one backlog, `rounds` times: the
    rate, how the passes and attempts spread over the two, and that no task ran twice (one
    attempt per task, each succeeded). Passes go to whichever cluster's pusher reads the
    broker first, so the spread differs from round to round."""
    rates: list[float] = []
    splits: list[str] = []
    for _ in range(rounds):
        wipe()
        enqueue_noops(options.drain_tasks)
        vacuum()
        var = ROOT / "var"
        with (
            Cluster({}, log=var / "benchmark-qcluster-1.log") as first,
            Cluster({}, log=var / "benchmark-qcluster-2.log") as second,
        ):
            rates.append(outbox_drain_rate(options.drain_tasks))
            assert first.process is not None
            assert second.process is not None
            trees = [set(process_tree(first.process.pid)), set(process_tree(second.process.pid))]
        by_cluster = [0, 0]
        passes: list[set[str]] = [set(), set()]
        # Tries per worker: the Attempt rows, and the successes kept on task rows (the worker
        # of a success is its task's `leased_by`).
        on_tasks = Task.objects.filter(succeeded_started_at__isnull=False).values_list("leased_by")
        per_worker = [
            *Attempt.objects.values_list("worker").annotate(n=Count("id")),
            *on_tasks.annotate(n=Count("id")),
        ]
        for worker, count in per_worker:
            pid = int(worker.split(":")[1])
            for index, tree in enumerate(trees):
                if pid in tree:
                    by_cluster[index] += count
                    passes[index].add(worker)
        attempts = sum(count for _, count in per_worker)
        tasks = Task.objects.count()
        not_once = Task.objects.exclude(state=TaskState.SUCCEEDED, attempts=1).count()
        if attempts != tasks or not_once:
            raise RuntimeError(f"{attempts} attempts for {tasks} tasks, {not_once} not run once")
        splits.append(
            f"{len(passes[0])}+{len(passes[1])} passes, "
            f"{by_cluster[0]:,}+{by_cluster[1]:,} attempts"
        )
    report.add(
        "(l) two qclusters on one database, no-op handler",
        f"median {statistics.median(rates):,.0f} tasks/s",
        f"({rounds} rounds of {options.drain_tasks:,} tasks, up to "
        f"{outbox_settings().max_passes} passes over both; by round, first+second cluster: "
        + "; ".join(splits)
        + "; every task ran exactly once: as many attempts as tasks, each succeeded on its "
        "first try)",
    )
    wipe()


def webhook_time(options: Options, report: Report) -> None:
    from unittest import mock

    webhook_round(options, report, 100)
    webhook_round(options, report, 10)
    # The baseline, in the same run: every body through DRF's serializer, as before the fast
    # path (tickets/intake/validation.py).
    with mock.patch("tickets.intake.serializers.fast_tickets", return_value=None):
        webhook_round(options, report, 100, label=" validated by DRF alone (baseline)")


def webhook_round(options: Options, report: Report, size: int, *, label: str = "") -> None:
    """Server time of POST /tickets-status with `size` new tickets, through Django's handler.

    Through the URL, as a seller calls it, so the figure includes routing and middleware.
    """
    import json

    from django.test import Client

    wipe()
    client = Client(HTTP_HOST="localhost")
    samples: list[float] = []
    for request in range(options.webhook_requests):
        body = json.dumps(
            {
                "tickets": [
                    {
                        "ticket_id": f"bench-{size}{label[:4]}-{request}-{n}",
                        "status": "confirmed",
                        "customer_email": f"c{n}@example.com",
                        "price": {"amount": "25.00", "currency": "EUR"},
                    }
                    for n in range(size)
                ]
            }
        )
        started = time.perf_counter()
        response = client.post(
            "/tickets-status",
            body,
            content_type="application/json",
            headers={"Idempotency-Key": f"bench-{size}{label[:4]}-{request}"},
        )
        samples.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            raise RuntimeError(f"the webhook answered {response.status_code}: {response.content!r}")
    report.add(
        f"(g) webhook with {size} tickets{label}, server time",
        f"p50 {percentile(samples, 0.5):,.1f} ms, p99 {percentile(samples, 0.99):,.1f} ms",
        f"({len(samples)} requests, each {size} new tickets and {2 * size} tasks; DEBUG off)",
    )
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM tickets_webhookdelivery")
        cursor.execute("DELETE FROM tickets_ticket")
    wipe()


def big_table(options: Options, report: Report, *, rounds: int = 3, keep: bool = False) -> None:
    """Claim time and drain rate with no finished rows, then with a million: medians of rounds.

    `keep`: leave the finished rows on the table for the next figure (k).
    """
    results: dict[str, tuple[float, float]] = {}
    wipe()
    for label in ("empty table", "big table"):
        if label == "big table":
            fill_finished(options.big_table_rows)
        filled_up_to = Task.objects.aggregate(top=Max("id"))["top"] or 0
        claim_ms: list[float] = []
        rates: list[float] = []
        for _ in range(rounds):
            enqueue_noops(options.drain_tasks)
            vacuum()
            relay = Relay(threads=options.threads, batch_size=options.batch_size)
            claims = timed_claims(relay)
            started = time.perf_counter()
            stats = relay.drain(max_batches=10**6)
            rates.append(stats.succeeded / (time.perf_counter() - started))
            claim_ms.append(statistics.median(claims))
            # Keep only the finished rows the scenario is about.
            with connection.cursor() as cursor:
                cursor.execute("DELETE FROM outbox_attempt WHERE task_id > %s", [filled_up_to])
                cursor.execute("DELETE FROM outbox_task WHERE id > %s", [filled_up_to])
        results[label] = (statistics.median(claim_ms), statistics.median(rates))
    (empty_claim, empty_rate), (big_claim, big_rate) = results["empty table"], results["big table"]
    report.add(
        f"(f) claim of {options.batch_size}, median of {rounds} rounds",
        f"{empty_claim:.2f} ms empty, {big_claim:.2f} ms with "
        f"{options.big_table_rows:,} finished rows",
        f"({(big_claim / empty_claim - 1):+.0%})",
    )
    report.add(
        f"(f) drain rate, one relay in this process, median of {rounds} rounds",
        f"{empty_rate:,.0f} tasks/s empty, {big_rate:,.0f} tasks/s with "
        f"{options.big_table_rows:,} finished rows",
        f"({(big_rate / empty_rate - 1):+.0%})",
    )
    if not keep:
        wipe()


# The finished rows' completion times span a week: a retention window, so the dashboard's
# last day holds a seventh of them, as it would in production.
FINISHED_SPREAD_SECONDS = 7 * 86_400
CONSOLE_KINDS = ["tickets.issue_receipt", "tickets.append_row", "tickets.void", "tickets.refund"]


def fill_finished(rows: int) -> None:
    fill_tasks(rows, kinds=[NOOP], spread_seconds=FINISHED_SPREAD_SECONDS)


def console_time(options: Options, report: Report, *, filled: bool = False) -> None:
    """Server time of the dashboard and the triage page on a table of `big_table_rows`
    finished tasks (the ones (f) left when `filled`) and `console_failing` failed or
    retrying ones, as a superuser, through Django's handler in-process (as (g))."""
    from django.contrib.auth import get_user_model
    from django.test import Client

    if not filled:
        wipe()
        fill_finished(options.big_table_rows)
    # Half failed, half retrying after a first try, over four kinds and the last day.
    fill_tasks(
        options.console_failing,
        kinds=CONSOLE_KINDS,
        failed_every=2,
        retrying_every=2,
        spread_seconds=86_400,
    )
    vacuum()
    tasks = Task.objects.count()
    succeeded = Task.objects.filter(state=TaskState.SUCCEEDED).count()
    user, _ = get_user_model().objects.update_or_create(
        username="benchmark-console",
        defaults={"is_staff": True, "is_superuser": True, "is_active": True},
    )
    client = Client(HTTP_HOST="localhost")
    client.force_login(user)
    try:
        for label, url in (
            ("dashboard", "/admin/outbox/task/dashboard/"),
            ("triage page", "/admin/outbox/task/triage/"),
            ("/metrics scrape", "/metrics"),
            ("task list, kind filter shown", "/admin/outbox/task/"),
            ("attempts list, status filter shown", "/admin/outbox/attempt/"),
            ("task search by a payload value", "/admin/outbox/task/?q=t-424242"),
        ):
            samples = _server_times(client, url, options.console_requests)
            report.add(
                f"(k) {label} with {succeeded:,} succeeded tasks, server time",
                f"p50 {percentile(samples, 0.5):,.0f} ms, p99 {percentile(samples, 0.99):,.0f} ms",
                f"({len(samples)} requests as a superuser after 2 to warm up; {tasks:,} tasks, "
                f"{tasks - succeeded:,} of them failed or retrying; finished over the last 7 days; "
                "DEBUG off)",
            )
        status = []
        for index in range(options.console_requests + 2):
            started = time.perf_counter()
            call_command("outbox_status", stdout=io.StringIO())
            if index >= 2:
                status.append((time.perf_counter() - started) * 1000)
        report.add(
            f"(k) outbox_status with {succeeded:,} succeeded tasks",
            f"p50 {percentile(status, 0.5):,.0f} ms, p99 {percentile(status, 0.99):,.0f} ms",
            f"({len(status)} runs in-process after 2 to warm up; its succeeded column is the "
            "planner's estimate above 20,000 tasks on PostgreSQL)",
        )
    finally:
        client.logout()
        user.delete()
    wipe()


def _server_times(client: Any, url: str, requests: int) -> list[float]:
    samples: list[float] = []
    for index in range(requests + 2):
        started = time.perf_counter()
        response = client.get(url)
        elapsed = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            raise RuntimeError(f"{url} answered {response.status_code}")
        if index >= 2:
            samples.append(elapsed)
    return samples


def machine() -> str:
    model = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    version = ""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SHOW server_version")
            version = f"PostgreSQL {cursor.fetchone()[0]}"
        else:
            cursor.execute("SELECT sqlite_version()")
            version = f"SQLite {cursor.fetchone()[0]}"
    import django
    import django_q

    return (
        f"{os.cpu_count()} CPUs ({model or platform.machine()}), Python "
        f"{platform.python_version()}, Django {django.get_version()}, django-q2 "
        f"{getattr(django_q, 'VERSION', '?')}, {version}"
    )


def run(options: Options, report: Report, *, only: set[str] | None = None) -> None:
    def wanted(name: str) -> bool:
        return only is None or name in only

    naive = naive_baseline(options, report) if wanted("a") or wanted("b") else 1.0
    ceiling = raw_ceiling(options, report) if wanted("h") or wanted("b") else 0.0
    if wanted("b"):
        cluster_drain(options, report, naive, ceiling)
    if wanted("c"):
        http_drain(options, report)
    if wanted("d"):
        enqueue_rate(options, report)
    if wanted("e"):
        latency(options, report)
    if wanted("f"):
        # (k) reads the million finished rows (f) filled, rather than filling them again.
        big_table(options, report, keep=wanted("k"))
    if wanted("k"):
        console_time(options, report, filled=wanted("f"))
    if wanted("g"):
        webhook_time(options, report)
    if wanted("i"):
        cluster_start(options, report)
    if wanted("j"):
        footprint(options, report)
    if wanted("l"):
        two_clusters(options, report)
    if wanted("m"):
        database_work(options, report)
    if wanted("n"):
        retention(options, report)


# (m) The database's work per task ---------------------------------------------------------


def enqueue_in_transactions(count: int, *, kind: str = NOOP, per_transaction: int = 100) -> None:
    """`count` tasks, `per_transaction` to a transaction: a webhook of 50 tickets' worth."""
    for start in range(0, count, per_transaction):
        with transaction.atomic():
            enqueue_many([TaskSpec(kind=kind) for _ in range(min(per_transaction, count - start))])


def _outbox_phases(options: Options, kind: str, inspect: bool) -> dbwork.Phases:
    from outbox.retry import RetryPolicy
    from outbox.services import tasks_prune

    wipe()
    vacuum()
    phases = dbwork.Phases()
    tasks = options.work_tasks
    with dbwork.measured(phases, "enqueue", inspect):
        enqueue_in_transactions(tasks, kind=kind)
    # A retry due at once, so one drain runs both tries.
    relay = Relay(
        threads=options.threads,
        batch_size=options.batch_size,
        policy=RetryPolicy(base_seconds=0.0, cap_seconds=0.0),
    )
    with dbwork.measured(phases, "drain", inspect):
        relay.drain(max_batches=10**6)
    done = Task.objects.filter(state=TaskState.SUCCEEDED).count()
    if done != tasks:
        raise RuntimeError(f"{done} of {tasks} tasks succeeded")
    with dbwork.measured(phases, "prune", inspect):
        tasks_prune(older_than=timedelta(0))
    return phases


def _raw_phases(options: Options, inspect: bool) -> dbwork.Phases:
    wipe()
    vacuum()
    phases = dbwork.Phases()
    with dbwork.measured(phases, "enqueue", inspect):
        enqueue_in_transactions(options.work_tasks)
    with dbwork.measured(phases, "drain", inspect):
        claimed = raw_loop()
    if claimed != options.work_tasks:
        raise RuntimeError(f"the raw loop claimed {claimed} of {options.work_tasks}")
    with dbwork.measured(phases, "prune", inspect), connection.cursor() as cursor:
        cursor.execute("DELETE FROM outbox_task")
    return phases


def _django_q_phases(options: Options, inspect: bool) -> dbwork.Phases:
    from django_q.models import OrmQ
    from django_q.tasks import async_task

    wipe()
    vacuum()
    phases = dbwork.Phases()
    tasks = options.naive_tasks
    with dbwork.measured(phases, "enqueue", inspect):
        for start in range(0, tasks, 100):
            with transaction.atomic():
                for _ in range(min(100, tasks - start)):
                    async_task("devtools.benchmark.naive_noop")
    # Its own cleanup is in the drain: it keeps `save_limit` results and deletes the rest.
    with dbwork.measured(phases, "drain", inspect), Cluster({"OUTBOX_AUTOSTART": "0"}):
        drain_rate(OrmQ.objects.count, tasks, timeout=600)
    return phases


def database_work(options: Options, report: Report) -> None:
    """WAL bytes and row writes per task: this project (no-op, and one failed try then a
    success), the raw loop (h), and django-q2 (a), in one run."""
    if connection.vendor != "postgresql":
        report.add("(m) database work per task", "PostgreSQL only", "(WAL, pg_stat_user_tables)")
        return
    inspect = dbwork.walinspect()
    tables = ["outbox_task", "outbox_attempt", "django_q_ormq", "django_q_task"]
    dbwork.autovacuum(tables, enabled=False)
    try:
        ours = _outbox_phases(options, NOOP, inspect)
        retried = _outbox_phases(options, FAIL_ONCE, inspect)
        raw = _raw_phases(options, inspect)
        django_q = _django_q_phases(options, inspect)
    finally:
        dbwork.autovacuum(tables, enabled=True)
        wipe()
    tasks, naive_tasks = options.work_tasks, options.naive_tasks
    source = (
        "records of this database read back with pg_walinspect, full-page images apart"
        if inspect
        else "whole server: pg_walinspect is not installed"
    )
    raw_job = raw.total("enqueue", "drain").wal / tasks
    for label, phases, count in (
        ("this project, no-op", ours, tasks),
        ("this project, one failed try then a success", retried, tasks),
        ("raw SKIP LOCKED loop (h), claim only", raw, tasks),
        ("django-q2 (a), ORM broker, no-op", django_q, naive_tasks),
    ):
        job = phases.total("enqueue", "drain")
        life = phases.total()
        ratio = f"{job.wal / count / raw_job:.2f}x the raw loop's WAL per job"
        report.add(
            f"(m) database work per task, {label}",
            f"enqueue + run: {dbwork.per_task(job, count)}",
            f"({ratio}; {dbwork.phase_words(phases, count, ['enqueue', 'drain', 'prune'])}; "
            f"insert to cleanup {life.writes / count:.2f} row writes; {count:,} tasks, "
            f"100 enqueued per transaction; WAL: {source})",
        )
    prune = ours.by_name["prune"]
    report.add(
        "(m) prune of finished no-op tasks, per task",
        f"{prune.wal / tasks:,.0f} B WAL, {prune.seconds / tasks * 1e6:,.1f} us",
        f"({tasks:,} tasks, chunks of 5,000; a task and its attempts deleted: "
        f"{prune.deleted / tasks:.2f} row deletes per task)",
    )


# (n) Retention: per-row prune against dropping a partition -------------------------------


def retention(options: Options, report: Report) -> None:
    """WAL and time to remove `big_table_rows` finished tasks: `tasks_prune` (per-row deletes
    in chunks, as the schedule runs it), against detaching and dropping one partition that
    holds as many rows of the same shape (a scratch table, as retention by day would be)."""
    from outbox.services import tasks_prune

    if connection.vendor != "postgresql":
        report.add("(n) retention", "PostgreSQL only", "(pg_walinspect)")
        return
    inspect = dbwork.walinspect()
    rows = options.big_table_rows
    wipe()
    fill_finished(rows)
    vacuum()
    phases = dbwork.Phases()
    with dbwork.measured(phases, "prune", inspect):
        tasks_prune(older_than=timedelta(0))
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS bench_by_day")
        cursor.execute(
            "CREATE TABLE bench_by_day (LIKE outbox_task INCLUDING DEFAULTS) "
            "PARTITION BY RANGE (finished_at)"
        )
        cursor.execute(
            "CREATE TABLE bench_day_1 PARTITION OF bench_by_day "
            "FOR VALUES FROM (MINVALUE) TO (MAXVALUE)"
        )
        for column in ("id", "dedupe_key", "correlation_id", "finished_at"):
            cursor.execute(f"CREATE INDEX ON bench_by_day ({column})")
        fill_tasks(rows, kinds=CONSOLE_KINDS, spread_seconds=86_400)
        cursor.execute("INSERT INTO bench_by_day SELECT * FROM outbox_task")
        wipe()
        cursor.execute("VACUUM ANALYZE bench_by_day")
    with dbwork.measured(phases, "drop", inspect), connection.cursor() as cursor:
        cursor.execute("ALTER TABLE bench_by_day DETACH PARTITION bench_day_1")
        cursor.execute("DROP TABLE bench_day_1")
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE bench_by_day")
    prune, drop = phases.by_name["prune"], phases.by_name["drop"]
    report.add(
        f"(n) prune of {rows:,} finished tasks (per-row deletes, chunks of 5,000)",
        f"{prune.wal / rows:,.0f} B WAL and {prune.seconds / rows * 1e6:,.1f} us per task; "
        f"{prune.wal / 2**20:,.0f} MiB, {prune.seconds:,.1f} s in all",
        f"(+{prune.fpi / 2**20:,.0f} MiB of page images; {prune.deleted / rows:.2f} row deletes "
        "per task; WAL: "
        + (
            "the whole server's, more than it keeps to read back)"
            if prune.whole_server
            else "this database's records)"
        ),
    )
    report.add(
        f"(n) drop of a partition of {rows:,} finished tasks (detach, drop)",
        f"{drop.wal:,} B WAL in all, {drop.seconds * 1000:,.0f} ms",
        "(the same rows in a table partitioned by finished_at, with four indexes)",
    )
