"""What an answer proves, with real processes: the fake gateway, gunicorn and a qcluster.

Only a try that got no answer waits for a write in flight; an answered 500 does not. A proxy's
200 page or a redirect is never recorded as done. A base URL that answers every path with a
JSON 404 fails no task. An operator's retry never outruns a write still in flight.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

import pytest
import requests

from tests.e2e.conftest import Stack, wait_until
from tests.e2e.test_cluster import confirmed, post_order

pytestmark = pytest.mark.e2e

PRINT = "tickets-to-print"
REFUND = "tickets-to-refund"


def canceled(ticket_id: str) -> dict[str, Any]:
    return {**confirmed(ticket_id), "status": "canceled"}


def rows(stack: Stack, sheet: str) -> Counter[str]:
    return Counter(row[0] for row in stack.gateway_state()["sheets"].get(sheet, []))


def task_row(stack: Stack, kind: str) -> tuple[Any, ...]:
    return stack.db.rows(
        "SELECT id, state, attempts, settle_until, finished_at, last_error FROM outbox_task "
        "WHERE kind = %s",
        (kind,),
    )[0]


def attempts(stack: Stack, task_id: int) -> list[tuple[Any, ...]]:
    return stack.db.rows(
        "SELECT number, outcome, reply, started_at, error FROM outbox_attempt "
        "WHERE task_id = %s ORDER BY number",
        (task_id,),
    )


def as_datetime(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def test_answered_500s_on_an_append_converge_at_the_backoff_not_the_settle(stack: Stack):
    stack.env["SHEET_SETTLE_SECONDS"] = "60"  # production's: one wait would fail the test
    stack.start_gateway("--down", "spreadsheets")  # every append answered 503
    stack.start_web()
    assert post_order(stack, "k-1", [confirmed("t-1")]).status_code == 200
    stack.start_cluster()
    append = "tickets.append_sheet_row"

    def answered_failures() -> int:
        task_id = task_row(stack, append)[0]
        return sum(1 for row in attempts(stack, task_id) if row[1] == "retry")

    # Count recorded failures, not claims: the claim counter moves before a try's answer.
    wait_until(lambda: answered_failures() >= 3, timeout=30, what="three answered 503s")
    stack.configure_gateway(down=[])

    # Far inside the 60 s settle: an answered 503 never waits it.
    wait_until(
        lambda: task_row(stack, append)[1] == "succeeded", timeout=20, what="the row appended"
    )

    task_id, _, _, settle_until, _, _ = task_row(stack, append)
    assert settle_until is None
    failed = [row for row in attempts(stack, task_id) if row[1] == "retry"]
    assert len(failed) >= 3
    assert {row[2] for row in failed} == {"answered"}
    assert rows(stack, PRINT) == Counter(["t-1"])


def test_an_append_cut_mid_call_waits_the_settle_from_its_start_then_finds_its_row(
    stack: Stack,
):
    stack.env["SHEET_SETTLE_SECONDS"] = "5"
    stack.start_gateway()
    # The write lands 3.5 s after it was sent; the call is cut at its 3 s deadline first.
    stack.configure_gateway(append_latency_ms=3500)
    stack.start_web()
    assert post_order(stack, "k-1", [confirmed("t-1")]).status_code == 200
    stack.start_cluster()
    append = "tickets.append_sheet_row"

    wait_until(
        lambda: task_row(stack, append)[1] == "succeeded", timeout=40, what="the append done"
    )

    task_id, _, _, settle_until, finished_at, _ = task_row(stack, append)
    first = attempts(stack, task_id)[0]
    assert first[1:3] == ("retry", "no_answer")
    started = as_datetime(first[3])
    assert abs((as_datetime(settle_until) - started).total_seconds() - 5.0) < 0.1
    assert as_datetime(finished_at) >= as_datetime(settle_until)
    assert rows(stack, PRINT) == Counter(["t-1"])  # found, not appended again
    posts = [
        c for c in stack.gateway_state()["calls"] if c["method"] == "POST" and PRINT in c["path"]
    ]
    assert len(posts) == 1


def test_a_base_url_answering_json_404_everywhere_fails_no_task(stack: Stack):
    stack.start_gateway("--json-404s")
    wrong = f"{stack.gateway_url}/v1"
    stack.env["GATEWAY_ADDR"] = wrong
    stack.start_web()
    tickets = [confirmed(f"t-{n}") for n in range(10)]
    assert post_order(stack, "k-1", tickets).status_code == 200
    stack.start_cluster()

    wait_until(
        lambda: (
            stack.db.value("SELECT COUNT(*) FROM outbox_circuit WHERE opened_until IS NOT NULL")
            == 2
        ),
        timeout=30,
        what="the receipts' and the sheets' circuits open",
    )
    # Each circuit probed the address again after its rest and opened once more: the relay
    # kept trying these tasks, and none of those tries failed one.
    wait_until(
        lambda: stack.db.value("SELECT MIN(opened_count) FROM outbox_circuit") >= 3,
        timeout=30,
        what="both circuits probed twice and opened again",
    )

    states = stack.db.task_states()
    assert set(states) <= {"pending", "running"}, states
    assert sum(states.values()) == 20
    errors = [row[0] for row in stack.db.rows("SELECT last_error FROM outbox_circuit")]
    assert all(f"{wrong}/" in error and "GATEWAY_ADDR" in error for error in errors), errors
    assert stack.db.value("SELECT COUNT(*) FROM outbox_attempt WHERE outcome = 'failed'") == 0


def test_proxies_pages_and_redirects_are_never_done_and_every_effect_happens_once(
    stack: Stack,
):
    stack.env["OUTBOX_CIRCUIT_MAX_COOLDOWN_SECONDS"] = "1"
    stack.start_gateway(
        "--seed",
        "7",
        "--failure-rate",
        "0.2",
        "--fail-after-write-rate",
        "0.1",
        "--fake-success-rate",
        "0.1",
        "--redirect-rate",
        # Twice the 5%: with about a hundred writes, 5% may inject none at all.
        "0.1",
    )
    stack.start_web()
    confirmed_ids = [f"c-{n}" for n in range(30)]
    canceled_ids = [f"x-{n}" for n in range(10)]
    refunded_ids = confirmed_ids[:10]
    assert post_order(stack, "k-1", [confirmed(t) for t in confirmed_ids]).status_code == 200
    assert post_order(stack, "k-2", [canceled(t) for t in canceled_ids]).status_code == 200
    for ticket_id in refunded_ids:
        answer = requests.put(f"{stack.web_url}/ticket-refund/{ticket_id}", timeout=10)
        assert answer.status_code == 202
    stack.start_cluster()

    expected = stack.db.value("SELECT COUNT(*) FROM outbox_task")
    wait_until(
        lambda: (
            stack.db.task_states().get("succeeded", 0) + stack.db.task_states().get("canceled", 0)
            == expected
        ),
        timeout=120,
        what="every task finished",
    )

    state = stack.gateway_state()
    # Every fault the run is about happened: a run where the seed injected none of one kind
    # would prove nothing about it.
    injected = state["stats"]["injected"]
    kinds_of_fault = ("failure", "fail_after_write", "fake_success", "redirect")
    assert all(injected.get(kind, 0) > 0 for kind in kinds_of_fault), injected
    # And the service met them: the maintenance pages were read as tries that proved nothing.
    unproven = stack.db.value(
        "SELECT COUNT(*) FROM outbox_attempt WHERE error LIKE %s", ("%text/html body%",)
    )
    assert unproven > 0
    assert set(stack.db.task_states()) <= {"succeeded", "canceled"}
    receipts = Counter(r["ticket_id"] for r in state["receipts"])
    assert all(n == 1 for n in receipts.values()), receipts
    assert set(confirmed_ids) - set(refunded_ids) <= set(receipts)
    assert rows(stack, PRINT) == Counter(confirmed_ids)
    assert rows(stack, REFUND) == Counter(canceled_ids)
    voids = Counter(v["ticket_id"] for v in state["voids"])
    refunds = Counter(r["payment_reference"] for r in state["refunds"])
    assert refunds == Counter(refunded_ids)
    # A void for every refunded ticket whose receipt may exist, never two.
    assert all(n == 1 for n in voids.values())
    assert set(voids) <= set(refunded_ids)
    assert set(receipts) & set(refunded_ids) <= set(voids)


def test_a_replay_during_the_settle_waits_for_the_write_in_flight(stack: Stack):
    stack.env["SHEET_SETTLE_SECONDS"] = "8"
    stack.start_gateway()
    stack.configure_gateway(append_latency_ms=6000)  # lands 3 s after the call was cut
    stack.start_web()
    assert post_order(stack, "k-1", [confirmed("t-1")]).status_code == 200
    stack.start_cluster()
    append = "tickets.append_sheet_row"
    wait_until(
        lambda: task_row(stack, append)[3] is not None, timeout=30, what="a try cut mid-call"
    )
    stack.configure_gateway(append_latency_ms=0)

    replay = stack.manage("replay_tasks", "--state", "pending", "--kind", append, "--yes")

    assert "a write of try 1 may still land" in replay.stdout
    wait_until(
        lambda: task_row(stack, append)[1] == "succeeded", timeout=40, what="the append done"
    )
    assert rows(stack, PRINT) == Counter(["t-1"])


def test_a_refund_after_a_lost_receipt_was_pruned_still_voids_it(stack: Stack):
    stack.start_gateway()
    stack.start_web()
    assert post_order(stack, "k-1", [confirmed("t-1")]).status_code == 200
    # The receipt is written, its answer never arrives, and the task gives up on it.
    stack.db.rows(
        "UPDATE outbox_task SET max_attempts = 1 WHERE kind = 'tickets.issue_receipt' RETURNING id"
    )
    stack.configure_gateway(fail_after_write_rate=1.0)
    stack.start_cluster()
    wait_until(
        lambda: task_row(stack, "tickets.issue_receipt")[1] == "failed",
        timeout=30,
        what="the receipt task failed",
    )
    stack.configure_gateway(fail_after_write_rate=0.0)
    assert [r["ticket_id"] for r in stack.gateway_state()["receipts"]] == ["t-1"]
    stack.db.rows(
        "UPDATE outbox_task SET finished_at = '2000-01-01' WHERE kind = 'tickets.issue_receipt' "
        "RETURNING id"
    )
    stack.manage("prune_outbox")
    assert (
        stack.db.value("SELECT COUNT(*) FROM outbox_task WHERE kind = 'tickets.issue_receipt'") == 0
    )

    answer = requests.put(f"{stack.web_url}/ticket-refund/t-1", timeout=10)

    assert answer.status_code == 202
    wait_until(
        lambda: stack.gateway_state()["voids"] and stack.gateway_state()["refunds"],
        timeout=30,
        what="the void and the refund",
    )
    state = stack.gateway_state()
    assert [v["ticket_id"] for v in state["voids"]] == ["t-1"]
    assert [r["payment_reference"] for r in state["refunds"]] == ["t-1"]
