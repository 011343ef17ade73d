"""The relay's figures: (a) naive django-q2, (b) the relay's drain, (c) HTTP calls, (d)
enqueue, (e) latency, (f) the big table, (h) the raw loop's ceiling, (i) cluster start and
(j) the idle cluster's memory."""

from __future__ import annotations

import random
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Max

from devtools.benchmark.base import (
    Options,
    drain_rate,
    enqueue_noops,
    fill_finished,
    outbox_drain_rate,
    percentile,
    raw_loop,
    timed_claims,
    vacuum,
    wait_drained,
    wipe,
)
from devtools.benchmark.cluster import Cluster, LocalServer, process_tree, pss_kib
from devtools.benchmark.handlers import HTTP, NOOP
from devtools.benchmark.report import Report
from devtools.sessions import thread_session
from outbox.conf import outbox_settings
from outbox.models import Task, TaskState
from outbox.runtime.relay import Relay
from outbox.services import TaskSpec, enqueue, enqueue_many


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
