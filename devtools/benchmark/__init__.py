"""The outbox's benchmark: our relay against naive django-q2, measured in one run.

Every number is measured on the database the process is configured with (DATABASE_URL). The
benchmark wipes the outbox and django-q2 tables of that database: point it at a scratch one.

Split by figure family: `drain` (a-f, h-j), `webhook` (g), `console` (k), `two_clusters` (l),
`database` (m, n), `tracing` (o), `mixed_load` (p); what they share is in `base`, the processes
they start in `cluster`, the figures' report in `report` and the handlers the clusters run in
`handlers`. `run` stays here: it calls the figures by this package's names (the tests replace
some of them).
"""

from __future__ import annotations

from devtools.benchmark.base import (
    CONSOLE_KINDS,
    FINISHED_SPREAD_SECONDS,
    ROOT,
    Options,
    any_task_done,
    any_task_left,
    drain_rate,
    enqueue_noops,
    fill_finished,
    outbox_drain_rate,
    percentile,
    raw_loop,
    timed_claims,
    unfinished,
    vacuum,
    wait_drained,
    wipe,
)
from devtools.benchmark.cluster import (
    Cluster,
    LocalServer,
    process_tree,
    pss_kib,
)
from devtools.benchmark.console import (
    console_time,
)
from devtools.benchmark.database import (
    database_work,
    enqueue_in_transactions,
    retention,
)
from devtools.benchmark.drain import (
    big_table,
    cluster_drain,
    cluster_start,
    enqueue_rate,
    footprint,
    http_drain,
    latency,
    naive_baseline,
    raw_ceiling,
)
from devtools.benchmark.handlers import (
    FAIL_ONCE,
    HTTP,
    NOOP,
    fail_once,
    http_get,
    naive_noop,
    noop,
)
from devtools.benchmark.mixed_load import (
    mixed_load,
)
from devtools.benchmark.report import (
    Report,
    machine,
)
from devtools.benchmark.tracing import (
    tracing_cost,
)
from devtools.benchmark.two_clusters import (
    two_clusters,
)
from devtools.benchmark.webhook import (
    webhook_round,
    webhook_time,
)

__all__ = [
    "CONSOLE_KINDS",
    "FAIL_ONCE",
    "FINISHED_SPREAD_SECONDS",
    "HTTP",
    "NOOP",
    "ROOT",
    "Cluster",
    "LocalServer",
    "Options",
    "Report",
    "any_task_done",
    "any_task_left",
    "big_table",
    "cluster_drain",
    "cluster_start",
    "console_time",
    "database_work",
    "drain_rate",
    "enqueue_in_transactions",
    "enqueue_noops",
    "enqueue_rate",
    "fail_once",
    "fill_finished",
    "footprint",
    "http_drain",
    "http_get",
    "latency",
    "machine",
    "mixed_load",
    "naive_baseline",
    "naive_noop",
    "noop",
    "outbox_drain_rate",
    "percentile",
    "process_tree",
    "pss_kib",
    "raw_ceiling",
    "raw_loop",
    "retention",
    "timed_claims",
    "tracing_cost",
    "two_clusters",
    "unfinished",
    "vacuum",
    "wait_drained",
    "webhook_round",
    "webhook_time",
    "wipe",
]


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
    if wanted("o"):
        tracing_cost(options, report)
    if wanted("p"):
        mixed_load(options, report)
