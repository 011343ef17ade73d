"""Stopping `qcluster` as service managers do: a signal to the main process or to its group."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import Counter

import pytest

from tests.e2e.conftest import Stack, wait_until
from tests.e2e.test_cluster import (
    all_tasks_succeeded,
    assert_each_effect_once,
    confirmed,
    post_order,
)

pytestmark = pytest.mark.e2e

GRACE = 20.0


def send(process: subprocess.Popen[bytes], sig: signal.Signals, to: str) -> None:
    if to == "group":  # systemd's KillMode=control-group, `timeout`, `kill -- -PGID`
        os.killpg(process.pid, sig)
    else:
        process.send_signal(sig)


def start_slow_work(stack: Stack, latency_ms: int, tickets: int) -> list[str]:
    stack.start_gateway("--seed", "7")
    stack.configure_gateway(latency_ms=latency_ms)
    stack.start_web()
    ticket_ids = [f"s-{n}" for n in range(tickets)]
    post_order(stack, "slow-order", [confirmed(t) for t in ticket_ids])
    return ticket_ids


@pytest.mark.parametrize(
    ("sig", "to"),
    [
        (signal.SIGTERM, "main"),
        (signal.SIGTERM, "group"),
        (signal.SIGINT, "group"),
    ],
)
def test_a_signalled_cluster_hangs_or_loses_or_repeats_work(
    stack: Stack, sig: signal.Signals, to: str
):
    ticket_ids = start_slow_work(stack, latency_ms=1500, tickets=12)
    cluster = stack.start_cluster(
        "cluster", OUTBOX_THREADS="4", OUTBOX_STOP_GRACE_SECONDS=str(GRACE)
    )
    wait_until(
        lambda: stack.db.value("SELECT COUNT(*) FROM outbox_task WHERE state = 'running'") > 0,
        timeout=60,
        what="the cluster to have attempts in flight",
    )
    time.sleep(0.5)  # the attempts have reached the slow gateway

    sent_at = time.monotonic()
    send(cluster, sig, to)
    try:
        cluster.wait(timeout=GRACE + 10)
    except subprocess.TimeoutExpired:
        pytest.fail(f"qcluster still running {GRACE + 10:.0f} s after {sig.name} to the {to}")
    took = time.monotonic() - sent_at
    assert took < GRACE, f"the orderly stop took {took:.1f} s, beyond the grace period"
    assert cluster.returncode == 0, "an orderly stop exits 0"
    assert stack.db.value("SELECT COUNT(*) FROM outbox_task WHERE state = 'running'") == 0, (
        "every task is finished or handed back, none left to its lease"
    )
    log = cluster.log_path.read_text()  # type: ignore[attr-defined]
    assert "Traceback" not in log

    stack.configure_gateway(latency_ms=0)
    stack.start_cluster("after")
    wait_until(lambda: all_tasks_succeeded(stack, 24), timeout=90, what="24 tasks to succeed")
    state = assert_each_effect_once(stack, ticket_ids)
    calls_per_key = Counter(len(r["correlation_ids"]) for r in state["receipts"])
    assert calls_per_key == {1: len(ticket_ids)}, "no receipt was asked for twice"
    per_task = stack.db.tries_per_task()
    assert {count for _, count in per_task} == {1}, "every task ran exactly once"


@pytest.mark.parametrize("how", ["second signal", "grace period over"])
def test_a_cluster_that_cannot_finish_in_time_is_not_stopped_at_once(stack: Stack, how: str):
    start_slow_work(stack, latency_ms=8000, tickets=6)
    grace = 3.0 if how == "grace period over" else 60.0
    cluster = stack.start_cluster(
        "cluster",
        OUTBOX_THREADS="4",
        OUTBOX_STOP_GRACE_SECONDS=str(grace),
        OUTBOX_MAX_TASK_SECONDS="9",
        OUTBOX_LEASE_SECONDS="30",
        OUTBOX_CALL_SECONDS="20",  # the 8 s calls run to their end unless the stop is forced
        Q_TIMEOUT="25",
        Q_RETRY="40",
    )
    wait_until(
        lambda: stack.db.value("SELECT COUNT(*) FROM outbox_task WHERE state = 'running'") > 0,
        timeout=60,
        what="the cluster to have attempts in flight",
    )
    time.sleep(0.5)
    sent_at = time.monotonic()
    os.killpg(cluster.pid, signal.SIGTERM)
    if how == "second signal":
        time.sleep(1.0)
        cluster.send_signal(signal.SIGTERM)
    try:
        cluster.wait(timeout=15)
    except subprocess.TimeoutExpired:
        pytest.fail(f"qcluster still running 15 s after the {how}")
    took = time.monotonic() - sent_at
    assert took < 7, f"stopping at once took {took:.1f} s"
    assert cluster.returncode != 0, "a forced stop exits non-zero"
    log = cluster.log_path.read_text()  # type: ignore[attr-defined]
    left = stack.db.rows("SELECT id, kind FROM outbox_task WHERE state = 'running'")
    assert left, "the attempts in flight were left to their leases"
    assert "left to their leases" in log
    for task_id, kind in left:
        assert f"{task_id} ({kind})" in log, "the log names each task left to its lease"
    assert "Traceback" not in log
    wait_until(
        lambda: not subprocess.run(["pgrep", "-g", str(cluster.pid)], capture_output=True).stdout,
        timeout=10,
        what="every process of the cluster to be gone",
    )
