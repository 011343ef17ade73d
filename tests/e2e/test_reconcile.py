"""The reconcile against real processes: the fake gateway, gunicorn and qcluster.

During a drain it reports effects still to come as in flight, never missing; after it, drift
planted on the fake's sheet is found, and the fix, run twice, brings back one row."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from tests.e2e.conftest import Stack, wait_until
from tests.e2e.test_cluster import confirmed, post_order

pytestmark = pytest.mark.e2e

PRINT = "tickets-to-print"
TICKETS = 150


def reconcile(stack: Stack, *args: str) -> tuple[int, dict[str, Any]]:
    result = stack.manage("reconcile", "--json", *args, check=False)
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, json.loads(result.stdout)


def drained(stack: Stack) -> bool:
    states = stack.db.task_states()
    return not states.get("pending") and not states.get("running")


def plant(stack: Stack, **drift: Any) -> None:
    response = requests.post(
        f"{stack.gateway_url}/fake-gateway/sheets/{PRINT}/drift", json=drift, timeout=10
    )
    assert response.status_code == 200, response.text


def print_rows(stack: Stack, ticket_id: str) -> int:
    return sum(1 for row in stack.gateway_state()["sheets"].get(PRINT, []) if row[0] == ticket_id)


def test_a_reconcile_during_a_drain_reports_in_flight_and_a_fix_twice_makes_one_row(stack):
    # Slow enough calls that the drain is still going when the reconcile reads.
    stack.start_gateway("--latency-ms", "300")
    stack.start_web()
    ids = [f"t-{i}" for i in range(TICKETS)]
    post_order(stack, "order-1", [confirmed(tid) for tid in ids])
    # Four threads at 300 ms a call: the drain takes about 20 s, the reconcile reads in it.
    stack.start_cluster(OUTBOX_THREADS="4")
    wait_until(lambda: print_rows(stack, "t-0"), timeout=20, what="the first rows")

    _, during = reconcile(stack)
    stack.configure_gateway(latency_ms=0)  # the rest of the drain at full speed

    assert during["counts"].get("in_flight"), "the drain ended before the reconcile read"
    wrong = {k: n for k, n in during["counts"].items() if k != "in_flight"}
    assert wrong == {}, [i["summary"] for i in during["items"] if i["kind"] != "in_flight"][:5]

    wait_until(lambda: drained(stack), timeout=60, what="the drain to finish")
    plant(stack, action="delete", ticket_id="t-3")
    plant(stack, action="duplicate", ticket_id="t-4")
    plant(stack, action="change", ticket_id="t-5", amount="1.25")

    code, found = reconcile(stack)

    assert code == 1
    assert found["counts"] == {"missing_row": 1, "duplicate_row": 1, "different_row": 1}
    [changed] = [i for i in found["items"] if i["kind"] == "different_row"]
    assert changed["evidence"]["differences"]["amount"] == {"ours": "12.50", "sheet": "1.25"}

    first = stack.manage("reconcile", "--fix", str(found["run"]), "--by", "ada")
    second = stack.manage("reconcile", "--fix", str(found["run"]), "--by", "ada")
    assert "1 missing effect(s)" in first.stdout
    assert "0 missing effect(s)" in second.stdout
    wait_until(lambda: drained(stack) and print_rows(stack, "t-3"), timeout=30, what="the fix")

    code, after = reconcile(stack)
    assert print_rows(stack, "t-3") == 1
    assert after["counts"] == {"duplicate_row": 1, "different_row": 1}
