"""Gateway integrations end to end: webhooks and refunds through gunicorn, qcluster and a
flaky fake gateway, checked at the gateway; and the `simulate` command against that stack."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections import Counter
from collections.abc import Collection
from typing import Any

import pytest
import requests

from tests.e2e.conftest import Stack, wait_until
from tests.e2e.test_cluster import (
    all_tasks_succeeded,
    assert_each_effect_once,
    confirmed,
    post_order,
)

pytestmark = pytest.mark.e2e

ORDERS = 20
PER_ORDER = 10
CANCELED_LATER = range(5)  # orders whose tickets 5..9 are canceled by a second webhook
CANCELED_FIRST = range(15, 20)  # orders whose tickets 8 and 9 arrive canceled, never confirmed
REPEATED = ("order-0", "order-5", "order-10", "order-15", "cancel-0", "cancel-3")
REFUNDED = ("i-10-1", "i-11-0", "i-12-7")  # confirmed, never canceled; i-11-0 has no currency


def ticket(order: int, n: int, status: str = "confirmed") -> dict[str, Any]:
    """Ticket n of an order; the first of each order comes without a currency (so USD)."""
    wire = {**confirmed(f"i-{order}-{n}"), "status": status}
    if n == 0:
        wire["price"] = {"amount": "12.50"}
    return wire


def order_tickets(order: int) -> list[dict[str, Any]]:
    first_canceled = order in CANCELED_FIRST
    return [
        ticket(order, n, "canceled" if first_canceled and n >= 8 else "confirmed")
        for n in range(PER_ORDER)
    ]


def cancel_tickets(order: int) -> list[dict[str, Any]]:
    return [ticket(order, n, "canceled") for n in range(5, PER_ORDER)]


def put_refund(stack: Stack, ticket_id: str) -> requests.Response:
    return requests.put(
        f"{stack.web_url}/ticket-refund/{ticket_id}",
        headers={"Correlation-ID": f"corr-refund-{ticket_id}"},
        timeout=30,
    )


def all_tasks_finished(stack: Stack, expected: int) -> bool:
    states = stack.db.task_states()
    return states.get("succeeded", 0) + states.get("canceled", 0) == expected


def assert_refunds_void_every_receipt(
    state: dict[str, Any], confirmed_ids: Collection[str], refunded: Collection[str]
) -> None:
    """One receipt per sold ticket, except a refunded one whose receipt the refund withdrew
    before it was issued; every receipt of a refunded ticket voided, once. (A void also goes
    out when a withdrawn receipt had been tried: its write may have landed unseen.)"""
    issued = Counter(r["ticket_id"] for r in state["receipts"])
    voided = Counter(v["ticket_id"] for v in state["voids"])
    assert {t: issued[t] for t in confirmed_ids if t not in refunded} == {
        t: 1 for t in confirmed_ids if t not in refunded
    }
    assert set(issued) <= set(confirmed_ids)
    assert all(issued[t] <= 1 for t in refunded)
    assert set(voided) <= set(refunded)
    assert set(voided.values()) <= {1}
    assert {t for t in refunded if issued[t]} <= set(voided), "an issued receipt was not voided"


def sheet_rows(state: dict[str, Any], sheet: str) -> list[dict[str, Any]]:
    return state["sheet_rows"].get(sheet, [])


def test_each_effect_reaches_a_flaky_gateway_exactly_once(stack: Stack):
    stack.start_gateway("--seed", "11", "--failure-rate", "0.3", "--fail-after-write-rate", "0.1")
    stack.start_web()
    stack.start_cluster()

    answers = {}
    for order in range(ORDERS):
        key = f"order-{order}"
        answers[key] = post_order(stack, key, order_tickets(order)).json()
    for order in CANCELED_LATER:
        key = f"cancel-{order}"
        answers[key] = post_order(stack, key, cancel_tickets(order)).json()
    late = [ticket(order, n) for order in CANCELED_FIRST for n in (8, 9)]
    late_answer = post_order(stack, "late-confirm", late).json()
    bodies = {"order": order_tickets, "cancel": cancel_tickets}
    for key in REPEATED:
        kind, number = key.split("-")
        repeat = post_order(stack, key, bodies[kind](int(number)))
        assert repeat.json() == answers[key], "a repeat is answered as the first time"
    for ticket_id in REFUNDED:
        for _ in range(2):
            response = put_refund(stack, ticket_id)
            assert response.status_code == 202, response.text
    unknown = put_refund(stack, "no-such-ticket")
    assert unknown.status_code == 404
    assert "no-such-ticket" in unknown.json()["error"]

    every = {f"i-{order}-{n}" for order in range(ORDERS) for n in range(PER_ORDER)}
    never_confirmed = {f"i-{order}-{n}" for order in CANCELED_FIRST for n in (8, 9)}
    ever_confirmed = every - never_confirmed
    canceled_later = {f"i-{order}-{n}" for order in CANCELED_LATER for n in range(5, 10)}
    canceled = canceled_later | never_confirmed
    tasks = 2 * len(ever_confirmed) + len(canceled) + 2 * len(REFUNDED)
    assert (len(ever_confirmed), len(canceled), tasks) == (190, 35, 421)
    assert {t["status"] for t in late_answer["tickets"]} == {"canceled"}, "canceled stays"
    assert late_answer["tasks"] == []

    wait_until(lambda: all_tasks_finished(stack, tasks), timeout=150, what=f"{tasks} tasks to end")
    state = stack.gateway_state()
    # A refund that came before its ticket's receipt was issued cancels the receipt: nothing
    # to void. One that came after voids it. Either way, never a receipt nobody voids.
    withdrawn = {
        ticket_id
        for (ticket_id,) in stack.db.rows(
            "SELECT payload->>'ticket_id' FROM outbox_task WHERE kind = %s AND state = %s"
            if stack.db.vendor == "postgresql"
            else "SELECT json_extract(payload, '$.ticket_id') FROM outbox_task "
            "WHERE kind = %s AND state = %s",
            ("tickets.issue_receipt", "canceled"),
        )
    }
    assert withdrawn <= set(REFUNDED)
    assert stack.db.task_states() == {"succeeded": tasks - len(withdrawn)} | (
        {"canceled": len(withdrawn)} if withdrawn else {}
    )

    receipts = state["receipts"]
    printed = sheet_rows(state, "tickets-to-print")
    refund_rows = sheet_rows(state, "tickets-to-refund")
    assert Counter(row["columns"][0] for row in printed) == Counter(ever_confirmed)
    assert Counter(row["columns"][0] for row in refund_rows) == Counter(canceled)

    def order_of(ticket_id: str) -> int:
        return int(ticket_id.split("-")[1])

    without_currency = {t for t in ever_confirmed if t.endswith("-0")}
    for receipt in receipts:
        currency = "USD" if receipt["ticket_id"] in without_currency else "EUR"
        assert receipt["price"] == {"money_amount": "12.50", "money_currency": currency}
        assert set(receipt["correlation_ids"]) == {f"corr-order-{order_of(receipt['ticket_id'])}"}
    for row in printed:
        ticket_id = row["columns"][0]
        currency = "USD" if ticket_id in without_currency else "EUR"
        assert row["columns"] == [ticket_id, f"{ticket_id}@example.com", "12.50", currency]
        assert row["correlation_id"] == f"corr-order-{order_of(ticket_id)}"
    for row in refund_rows:
        ticket_id = row["columns"][0]
        cause = "cancel" if ticket_id in canceled_later else "order"
        assert row["correlation_id"] == f"corr-{cause}-{order_of(ticket_id)}"

    assert_refunds_void_every_receipt(state, ever_confirmed, REFUNDED)
    assert Counter(r["payment_reference"] for r in state["refunds"]) == Counter(REFUNDED)
    for record in state["voids"] + state["refunds"]:
        ticket_id = record.get("ticket_id") or record["payment_reference"]
        assert record["correlation_id"] == f"corr-refund-{ticket_id}"

    # The run met the failures it was meant to survive, including writes answered 500.
    assert state["stats"]["injected"]["failure"] > 50
    assert state["stats"]["injected"]["fail_after_write"] > 10
    results = stack.db.rows(
        "SELECT result FROM outbox_task WHERE kind = %s", ("tickets.append_sheet_row",)
    )
    found_on_retry = [
        r for (raw,) in results if (r := json.loads(raw) if isinstance(raw, str) else raw)
    ]
    assert any(r.get("already_present") for r in found_on_retry), (
        "some append was written, answered 500, and found on the sheet by its retry"
    )


SUMMARY_ROW = re.compile(
    r"^(receipts|tickets-to-print|tickets-to-refund)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)$", re.M
)


def summary(stdout: str) -> dict[str, tuple[int, ...]]:
    return {m[1]: tuple(int(v) for v in m.groups()[1:]) for m in SUMMARY_ROW.finditer(stdout)}


def simulate(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return stack.manage("simulate", "--url", stack.web_url, *args, check=False)


def test_simulate_posts_orders_and_sees_every_effect_once(stack: Stack):
    stack.start_gateway("--seed", "12", "--failure-rate", "0.2", "--fail-after-write-rate", "0.1")
    stack.start_web()
    stack.start_cluster()

    run = simulate(
        stack, "--orders", "10", "--tickets-per-order", "5", "--cancel-rate", "0.4",
        "--unconfirmed-cancel-rate", "0.1", "--repeat-rate", "0.3", "--seed", "5",
        "--deadline", "90",
    )  # fmt: skip

    assert run.returncode == 0, run.stdout + run.stderr
    assert "OK: every expected effect is at the gateway, exactly once." in run.stdout
    assert "Posting  [" not in run.stdout, "a log gets no progress frames"
    rows = summary(run.stdout)
    state = stack.gateway_state()
    assert rows["receipts"] == (len(state["receipts"]), len(state["receipts"]), 0, 0, 0)
    printed = len(sheet_rows(state, "tickets-to-print"))
    refunded = len(sheet_rows(state, "tickets-to-refund"))
    assert rows["tickets-to-print"] == (printed, printed, 0, 0, 0)
    assert rows["tickets-to-refund"] == (refunded, refunded, 0, 0, 0)
    assert 0 < refunded < 50 < printed + refunded
    assert re.search(r"^Elapsed: [\d.]+s \(posting", run.stdout, re.M)


def test_simulate_fails_when_the_effects_never_arrive(stack: Stack):
    stack.start_gateway()
    stack.start_web()  # and no cluster: nothing reaches the gateway

    run = simulate(stack, "--orders", "3", "--tickets-per-order", "2", "--deadline", "1")

    assert run.returncode == 1, run.stdout + run.stderr
    assert summary(run.stdout)["receipts"] == (6, 0, 6, 0, 0)
    assert "missing after the 1s deadline" in run.stderr


def test_simulate_cannot_verify_at_a_gateway_that_is_not_fake(stack: Stack):
    stack.start_gateway()
    stack.start_web()
    not_a_fake = stack.web_url  # our own service: no /fake-gateway/state

    refused = simulate(stack, "--gateway", not_a_fake)
    posted = simulate(stack, "--gateway", not_a_fake, "--orders", "2", "--no-verify")

    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "can only post" in refused.stderr
    assert "--no-verify" in refused.stderr
    assert posted.returncode == 0, posted.stdout + posted.stderr
    assert "Effects not verified (--no-verify)" in posted.stdout
    assert stack.db.value("SELECT COUNT(*) FROM tickets_ticket") == 20


def test_garbage_error_pages_neither_stall_the_relay_nor_repeat_an_effect(stack: Stack):
    # 30% of calls fail and 10% fail after writing, every 5xx an HTML page with NUL and bytes
    # that are not UTF-8: PostgreSQL refuses such text, and a batch of outcomes with one in it
    # used to be dropped whole, successes included, again and again.
    stack.start_gateway(
        "--seed", "13", "--failure-rate", "0.3", "--fail-after-write-rate", "0.1",
        "--garbage-bodies",
    )  # fmt: skip
    stack.start_web()
    stack.start_cluster()
    ticket_ids = [f"g-{n}" for n in range(40)]
    for start in range(0, 40, 10):
        post_order(
            stack, f"garbled-{start}", [confirmed(t) for t in ticket_ids[start : start + 10]]
        )

    wait_until(lambda: all_tasks_succeeded(stack, 80), timeout=120, what="80 tasks to succeed")
    assert_each_effect_once(stack, ticket_ids)
    stored = [error for (error,) in stack.db.rows("SELECT error FROM outbox_attempt")]
    garbled = [error for error in stored if "502 Bad Gateway" in error]
    assert garbled, "the garbage pages were met, and their attempts were stored"
    assert not any("\x00" in error for error in stored)
    assert stack.gateway_state()["stats"]["injected"]["fail_after_write"] > 0


def test_repeating_every_input_after_a_prune_mid_way_repeats_no_effect(stack: Stack):
    stack.start_gateway("--seed", "14", "--failure-rate", "0.2", "--fail-after-write-rate", "0.1")
    stack.start_web()
    stack.start_cluster()
    ticket_ids = [f"p-{n}" for n in range(30)]
    sold = [confirmed(t) for t in ticket_ids]
    canceled = [{**confirmed(t), "status": "canceled"} for t in ticket_ids[25:]]
    refunded = ticket_ids[:3]
    post_order(stack, "sold", sold)
    post_order(stack, "canceled", canceled)
    expected = 2 * len(sold) + len(canceled)
    wait_until(
        lambda: stack.db.task_states().get("succeeded", 0) >= expected // 2,
        timeout=60,
        what="half the tasks to succeed",
    )
    for ticket_id in refunded:
        assert put_refund(stack, ticket_id).status_code == 202

    # Mid-way: whatever has finished is pruned (the hourly schedule does this after 30 days).
    time.sleep(1.1)
    stack.manage("prune_outbox", "--older-than", "1s")
    remaining = sum(stack.db.task_states().values())
    assert remaining < expected + 2 * len(refunded), "the prune deleted finished tasks"

    # Then the seller repeats everything, with the same keys and with new ones, and the
    # operator asks for the refunds again.
    for key, body in (("sold", sold), ("canceled", canceled)):
        post_order(stack, key, body)
        assert post_order(stack, f"{key}-again", body).json()["tasks"] == []
    for ticket_id in refunded:
        assert put_refund(stack, ticket_id).json()["tasks"] == []
    assert sum(stack.db.task_states().values()) == remaining, "no effect was enqueued again"

    wait_until(
        lambda: set(stack.db.task_states()) <= {"succeeded", "canceled"},
        timeout=120,
        what="every task to end",
    )
    state = stack.gateway_state()
    assert_refunds_void_every_receipt(state, ticket_ids, refunded)
    printed = Counter(row[0] for row in state["sheets"].get("tickets-to-print", []))
    assert printed == Counter(ticket_ids)
    refund_rows = Counter(row[0] for row in state["sheets"].get("tickets-to-refund", []))
    assert refund_rows == Counter(t["ticket_id"] for t in canceled)
    assert Counter(r["payment_reference"] for r in state["refunds"]) == Counter(refunded)
