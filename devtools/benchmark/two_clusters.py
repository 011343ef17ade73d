"""Figure (l): two `qcluster` processes on one database, draining one backlog."""

from __future__ import annotations

import statistics

from django.db.models import Count

from devtools.benchmark.base import ROOT, Options, enqueue_noops, outbox_drain_rate, vacuum, wipe
from devtools.benchmark.cluster import Cluster, process_tree
from devtools.benchmark.report import Report
from outbox.conf import outbox_settings
from outbox.models import Attempt, Task, TaskState


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
