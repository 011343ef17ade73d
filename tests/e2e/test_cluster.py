"""The real thing: gunicorn, `manage.py qcluster` and the fake gateway, over real HTTP."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from typing import Any

import pytest
import requests

from tests.e2e.conftest import Stack, wait_until

pytestmark = pytest.mark.e2e


def post_order(stack: Stack, key: str, tickets: list[dict[str, Any]]) -> requests.Response:
    response = requests.post(
        f"{stack.web_url}/tickets-status",
        json={"tickets": tickets},
        headers={"Idempotency-Key": key, "Correlation-ID": f"corr-{key}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return response


def confirmed(ticket_id: str) -> dict[str, Any]:
    return {
        "ticket_id": ticket_id,
        "status": "confirmed",
        "customer_email": f"{ticket_id}@example.com",
        "price": {"amount": "12.50", "currency": "EUR"},
    }


def all_tasks_succeeded(stack: Stack, expected: int) -> bool:
    states = stack.db.task_states()
    return states.get("succeeded", 0) == expected


def assert_each_effect_once(stack: Stack, ticket_ids: list[str]) -> dict[str, Any]:
    state = stack.gateway_state()
    receipts = Counter(r["ticket_id"] for r in state["receipts"])
    printed = Counter(row[0] for row in state["sheets"].get("tickets-to-print", []))
    assert receipts == Counter(ticket_ids), "each confirmed ticket gets exactly one receipt"
    assert printed == Counter(ticket_ids), "each confirmed ticket gets exactly one print row"
    keys = stack.db.rows(
        "SELECT idempotency_key FROM outbox_task WHERE kind = %s", ("tickets.issue_receipt",)
    )
    assert {r["idempotency_key"] for r in state["receipts"]} == {key for (key,) in keys}
    return state


def test_a_cluster_drains_webhooks_to_the_gateway_exactly_once(stack: Stack):
    stack.start_gateway("--seed", "1")
    stack.start_web()
    stack.start_cluster()
    ticket_ids = [f"t-{order}-{n}" for order in range(5) for n in range(10)]

    for order in range(5):
        post_order(stack, f"order-{order}", [confirmed(f"t-{order}-{n}") for n in range(10)])

    wait_until(lambda: all_tasks_succeeded(stack, 100), timeout=90, what="100 tasks to succeed")
    state = assert_each_effect_once(stack, ticket_ids)
    assert {c for r in state["receipts"] for c in r["correlation_ids"]} == {
        f"corr-order-{order}" for order in range(5)
    }
    # One try each: a success, kept on its task row.
    assert [tries for _, tries in stack.db.tries_per_task()] == [1] * 100


@pytest.mark.postgres
def test_two_clusters_never_run_one_task_twice(stack: Stack):
    stack.start_gateway("--seed", "2", "--latency-ms", "5")
    stack.start_web()
    stack.start_cluster("cluster-a")
    stack.start_cluster("cluster-b")
    ticket_ids = [f"t-{order}-{n}" for order in range(20) for n in range(15)]

    for order in range(20):
        post_order(stack, f"order-{order}", [confirmed(f"t-{order}-{n}") for n in range(15)])

    wait_until(lambda: all_tasks_succeeded(stack, 600), timeout=120, what="600 tasks to succeed")
    state = assert_each_effect_once(stack, ticket_ids)
    calls_per_key = Counter(len(r["correlation_ids"]) for r in state["receipts"])
    assert calls_per_key == {1: 300}, "no receipt was asked for twice"
    per_task = stack.db.tries_per_task()
    assert len(per_task) == 600
    assert {count for _, count in per_task} == {1}


@pytest.mark.postgres
def test_a_cluster_killed_mid_pass_leaves_tasks_that_another_cluster_completes(stack: Stack):
    stack.start_gateway("--seed", "3", "--latency-ms", "300")
    stack.start_web()
    doomed = stack.start_cluster("doomed", OUTBOX_THREADS="4")
    ticket_ids = [f"k-{n}" for n in range(30)]
    post_order(stack, "big-order", [confirmed(t) for t in ticket_ids])

    wait_until(
        lambda: stack.gateway_state()["stats"]["calls"] >= 6,
        timeout=60,
        what="the doomed cluster to start calling the gateway",
    )
    os.killpg(doomed.pid, signal.SIGKILL)
    doomed.wait(timeout=10)
    leased = stack.db.value("SELECT COUNT(*) FROM outbox_task WHERE state = 'running'")
    assert leased > 0, "the kill must land while tasks are leased"
    keys_before = dict(stack.db.rows("SELECT id, idempotency_key FROM outbox_task"))

    stack.start_cluster("rescuer")
    killed_at = time.monotonic()

    wait_until(lambda: all_tasks_succeeded(stack, 60), timeout=120, what="60 tasks to succeed")
    print(
        f"RELIABILITY: cluster SIGKILLed mid-pass: leased_at_kill={leased}, tasks=60, "
        f"recovered_after_s={time.monotonic() - killed_at:.1f} (lease 6 s)"
    )
    assert dict(stack.db.rows("SELECT id, idempotency_key FROM outbox_task")) == keys_before
    assert_each_effect_once(stack, ticket_ids)
    retried = stack.db.value("SELECT COUNT(*) FROM outbox_task WHERE attempts > 1")
    assert retried >= 1, "the rescuer took over tasks whose lease expired"
