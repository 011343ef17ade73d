"""Figures (m) and (n): the database's work per task, and retention (prune against dropping a
partition). The measuring itself is `devtools/dbwork.py`."""

from __future__ import annotations

from datetime import timedelta

from django.db import connection, transaction

from devtools import dbwork
from devtools.benchmark.base import (
    CONSOLE_KINDS,
    Options,
    drain_rate,
    fill_finished,
    raw_loop,
    vacuum,
    wipe,
)
from devtools.benchmark.cluster import Cluster
from devtools.benchmark.handlers import FAIL_ONCE, NOOP
from devtools.benchmark.report import Report
from devtools.bulk import fill_tasks
from outbox.models import Task, TaskState
from outbox.runtime.relay import Relay
from outbox.services import TaskSpec, enqueue_many

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
        if life.whole_server and inspect:
            # A checkpoint recycled a phase's WAL before it was read (a slow phase on a busy
            # server): that phase is the whole server's difference, other databases included.
            ratio += "; NOT this database alone: a phase's WAL was recycled before it was read"
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
