"""Each effect reaches the gateway once for as long as its ticket lives: after prunes,
repeats, retries, slow writes and refunds racing receipts. Driven through the real relay and
the fake gateway over HTTP."""

from __future__ import annotations

import logging
import time
from collections import Counter
from datetime import timedelta

import pytest
from django.db.models.functions import Now
from django.test import override_settings

from devtools.fake_gateway import FakeGateway
from outbox.models import Attempt, AttemptOutcome, Task, TaskState
from outbox.runtime.relay import Relay
from outbox.services import tasks_prune, tasks_retry
from tests.conftest import ticket
from tickets import kinds
from tickets.gateway import ReceiptsClient
from tickets.models import Ticket
from tickets.services import ticket_receipt_record

# The relay's handler threads share the database with the test: no test-wide transaction.
pytestmark = pytest.mark.django_db(transaction=True)


def drain() -> None:
    """Run every task to its end, making retries due at once (no waiting in tests)."""
    relay = Relay(threads=4, batch_size=50)
    for _ in range(50):
        Task.objects.filter(state=TaskState.PENDING).update(available_at=Now())
        if not relay.run_once().claimed:
            return
    raise AssertionError("tasks still due after 50 batches")


def prune_everything() -> int:
    Task.objects.exclude(finished_at=None).update(finished_at=Now() - timedelta(days=31))
    return tasks_prune()


def effects(gateway: FakeGateway) -> dict[str, Counter[str]]:
    state = gateway.snapshot()
    return {
        "receipts": Counter(r["ticket_id"] for r in state["receipts"]),
        "print": Counter(row[0] for row in state["sheets"].get(kinds.PRINT_SHEET, [])),
        "refund_rows": Counter(row[0] for row in state["sheets"].get(kinds.REFUND_SHEET, [])),
        "voids": Counter(v["ticket_id"] for v in state["voids"]),
        "refunds": Counter(r["payment_reference"] for r in state["refunds"]),
    }


@override_settings(SHEET_SETTLE_SECONDS=0.0)
def test_repeating_every_input_after_the_tasks_were_pruned_repeats_no_effect(
    client, post_tickets, gateway_url, gateway
):
    sold = [ticket("t-1"), ticket("t-2"), ticket("t-3")]
    post_tickets(sold, key="sold")
    post_tickets([ticket("t-2", "canceled")], key="cancel")
    post_tickets([ticket("t-4", "canceled")], key="never-sold")
    drain()
    assert client.put("/ticket-refund/t-1").status_code == 202
    drain()
    before = effects(gateway)
    assert before["receipts"] == Counter(["t-1", "t-2", "t-3"])
    assert before["voids"] == before["refunds"] == Counter(["t-1"])

    assert prune_everything() > 0
    # The seller repeats everything under new keys (it lost its own records); an operator
    # asks for the refund again.
    post_tickets(sold, key="sold-again")
    post_tickets([ticket("t-2", "canceled")], key="cancel-again")
    post_tickets([ticket("t-4", "canceled")], key="never-sold-again")
    again = client.put("/ticket-refund/t-1")
    drain()

    assert again.status_code == 202
    assert again.json()["tasks"] == []
    assert Task.objects.count() == 0, "no effect was enqueued again"
    assert effects(gateway) == before


@override_settings(SHEET_SETTLE_SECONDS=0.0)
def test_a_canceled_ticket_cannot_be_refunded_through_the_api(
    client, post_tickets, gateway_url, gateway
):
    post_tickets([ticket("t-1")], key="sold")
    post_tickets([ticket("t-1", "canceled")], key="cancel")
    drain()
    tasks = Task.objects.count()

    response = client.put("/ticket-refund/t-1")
    drain()

    assert response.status_code == 409, response.content
    assert "refund sheet" in response.json()["error"]
    assert Ticket.objects.get().refund_requested_at is None
    assert Task.objects.count() == tasks, "nothing was enqueued"
    done = effects(gateway)
    assert done["refund_rows"] == Counter(["t-1"]), "refunded once: on the refund sheet"
    assert done["refunds"] == done["voids"] == Counter()


@override_settings(SHEET_SETTLE_SECONDS=0.0)
def test_a_ticket_refunded_through_the_api_is_not_put_on_the_refund_sheet_by_a_cancel(
    client, post_tickets, gateway_url, gateway
):
    post_tickets([ticket("t-1")], key="sold")
    drain()
    assert client.put("/ticket-refund/t-1").status_code == 202

    answer = post_tickets([ticket("t-1", "canceled")], key="cancel")
    drain()
    prune_everything()
    repeat = post_tickets([ticket("t-1", "canceled")], key="cancel-again")
    drain()

    assert answer.status_code == repeat.status_code == 200
    assert answer.json()["tickets"] == [{"ticket_id": "t-1", "status": "canceled"}]
    assert answer.json()["tasks"] == repeat.json()["tasks"] == []
    assert Ticket.objects.get().status == "canceled", "the seller's cancel is recorded"
    done = effects(gateway)
    assert done["refunds"] == done["voids"] == Counter(["t-1"]), "refunded once: by the API"
    assert done["refund_rows"] == Counter()
    assert client.put("/ticket-refund/t-1").json()["tasks"] == [], "a repeat still gets 202"


def test_every_effect_sends_a_key_derived_from_the_ticket_and_the_effect(
    client, post_tickets, gateway_url, gateway
):
    post_tickets([ticket("t-1")], key="first")
    client.put("/ticket-refund/t-1")
    keys = dict(Task.objects.values_list("dedupe_key", "idempotency_key"))

    # A task re-created by hand, or by a release that lost the old rows, sends the same key.
    assert keys == {
        dedupe_key: kinds.effect_idempotency_key(dedupe_key)
        for dedupe_key in (
            kinds.receipt_dedupe_key("t-1"),
            kinds.sheet_dedupe_key(kinds.PRINT_SHEET, "t-1"),
            kinds.void_dedupe_key("t-1"),
            kinds.refund_dedupe_key("t-1"),
        )
    }
    assert kinds.effect_idempotency_key("receipt:t-1") != kinds.effect_idempotency_key(
        "receipt:t-2"
    )


def test_a_refund_before_the_receipt_is_issued_withdraws_the_receipt(
    client, post_tickets, gateway_url, gateway
):
    post_tickets([ticket("t-1")])

    client.put("/ticket-refund/t-1")
    drain()

    receipt = Task.objects.get(kind=kinds.ISSUE_RECEIPT)
    assert receipt.state == TaskState.CANCELED
    assert "refunded before its receipt was issued" in receipt.last_error
    done = effects(gateway)
    assert done["receipts"] == done["voids"] == Counter()
    assert done["refunds"] == Counter(["t-1"])


def test_retrying_a_refunded_tickets_receipt_issues_nothing_and_says_why(
    client, post_tickets, gateway_url, gateway
):
    post_tickets([ticket("t-1")])
    receipt = Task.objects.get(kind=kinds.ISSUE_RECEIPT)
    # The receipts API refused it for a while; the receipt task is dead when the refund comes.
    Task.objects.filter(id=receipt.id).update(state=TaskState.FAILED, finished_at=Now())
    client.put("/ticket-refund/t-1")
    drain()

    retried = tasks_retry(tasks=Task.objects.filter(id=receipt.id))  # the accountant's button
    drain()

    assert retried == 1
    receipt.refresh_from_db()
    assert receipt.state == TaskState.CANCELED
    assert "no receipt is issued for a refunded ticket" in receipt.last_error
    attempt = Attempt.objects.get(task_id=receipt.id)
    assert attempt.outcome == AttemptOutcome.CANCELED
    assert effects(gateway)["receipts"] == Counter()


def test_a_void_waits_for_a_receipt_being_issued_when_the_refund_came_and_then_voids_it(
    client, post_tickets, gateway_url, gateway
):
    post_tickets([ticket("t-1")])
    receipt = Task.objects.get(kind=kinds.ISSUE_RECEIPT)
    # A worker holds the receipt task: its call is on the wire when the refund commits.
    Task.objects.filter(id=receipt.id).update(
        state=TaskState.RUNNING, attempts=1, lease_expires_at=Now() + timedelta(minutes=5)
    )
    client.put("/ticket-refund/t-1")
    void = Task.objects.get(kind=kinds.VOID_RECEIPT)

    Relay(threads=2, batch_size=10).run_once()
    void.refresh_from_db()
    assert (void.state, void.attempts) == (TaskState.PENDING, 0), "deferred, no attempt spent"

    # The call lands and its worker records it.
    issued = ReceiptsClient().issue(
        ticket_id="t-1",
        amount="50.00",
        currency="EUR",
        idempotency_key=receipt.idempotency_key,
        correlation_id="",
    )
    ticket_receipt_record(ticket_id="t-1", number=issued["number"], issued_at=None)
    Task.objects.filter(id=receipt.id).update(state=TaskState.SUCCEEDED, finished_at=Now())
    drain()

    void.refresh_from_db()
    number = Ticket.objects.get().receipt_number
    assert number
    assert void.result == {"voided": True, "receipt_number": number}
    done = effects(gateway)
    assert done["receipts"] == done["voids"] == Counter(["t-1"])


def test_a_withdrawn_receipt_that_had_been_tried_is_voided_all_the_same(
    client, post_tickets, gateway_url, gateway
):
    post_tickets([ticket("t-1")])
    # Its first try got a 500 after the write: a receipt may exist that we never saw.
    Task.objects.filter(kind=kinds.ISSUE_RECEIPT).update(attempts=1)
    client.put("/ticket-refund/t-1")
    drain()

    assert Task.objects.get(kind=kinds.ISSUE_RECEIPT).state == TaskState.CANCELED
    assert effects(gateway)["voids"] == Counter(["t-1"])


def test_the_refund_row_uses_the_stored_ticket_not_the_cancel_message(
    post_tickets, gateway_url, gateway, caplog
):
    post_tickets([ticket("t-1", email="ada@example.com", amount="50.00", currency="EUR")])
    caplog.set_level(logging.WARNING, logger="tickets.services")

    post_tickets(
        [ticket("t-1", "canceled", email="eve@example.com", amount="0.01", currency="USD")],
        key="cancel",
    )
    drain()

    rows = gateway.snapshot()["sheets"][kinds.REFUND_SHEET]
    assert rows == [["t-1", "ada@example.com", "50.00", "EUR"]]
    assert "customer_email, price.amount, price.currency" in caplog.text
    assert "eve@example.com" not in caplog.text


@override_settings(SHEET_SETTLE_SECONDS=1.0, OUTBOX={"CALL_SECONDS": 0.5})
def test_a_row_written_after_the_client_gave_up_is_found_and_not_appended_again(
    post_tickets, gateway_url, gateway
):
    post_tickets([ticket("t-1")])
    row_task = Task.objects.get(kind=kinds.APPEND_ROW)
    gateway.configure({"append_latency_ms": 900})  # the write lands after the 0.5 s deadline

    Relay(threads=2, batch_size=10).run_once()
    row_task.refresh_from_db()
    assert row_task.state == TaskState.PENDING
    assert "deadline" in row_task.last_error

    deadline = time.monotonic() + 10
    while not gateway.snapshot()["sheets"].get(kinds.PRINT_SHEET) and time.monotonic() < deadline:
        time.sleep(0.05)  # the slow write lands on its own time
    gateway.configure({"append_latency_ms": 0})
    drain()

    row_task.refresh_from_db()
    assert row_task.result["already_present"] is True
    assert effects(gateway)["print"] == Counter(["t-1"])


@override_settings(SHEET_SETTLE_SECONDS=60.0)
def test_a_try_after_one_that_left_no_outcome_waits_for_a_slow_write_before_reading(
    post_tickets, gateway_url, gateway
):
    post_tickets([ticket("t-1")])
    # Its first try's worker was killed mid-call: no attempt recorded, the lease ran out.
    Task.objects.filter(kind=kinds.APPEND_ROW).update(attempts=1)

    Relay(threads=2, batch_size=10).run_once()

    row_task = Task.objects.annotate(now=Now()).get(kind=kinds.APPEND_ROW)
    assert row_task.state == TaskState.PENDING
    assert "ended without an outcome" in row_task.last_error
    assert (row_task.available_at - row_task.now).total_seconds() >= 59.0
    assert not any("/spreadsheets-api" in call["path"] for call in gateway.snapshot()["calls"])


@pytest.mark.parametrize(
    ("attempts", "voided"),
    [(1, ["t-1"]), (0, [])],
    ids=["tried-then-pruned", "never-tried-then-pruned"],
)
def test_a_receipt_task_pruned_before_the_void_runs_is_judged_as_the_refund_saw_it(
    client, post_tickets, gateway_url, gateway, attempts, voided
):
    post_tickets([ticket("t-1")])
    # A first try may have written a receipt whose answer was lost (or the task never ran).
    Task.objects.filter(kind=kinds.ISSUE_RECEIPT).update(attempts=attempts)
    client.put("/ticket-refund/t-1")
    # The withdrawn receipt task is pruned before the void gets its turn.
    Task.objects.filter(kind=kinds.ISSUE_RECEIPT).update(finished_at=Now() - timedelta(days=31))
    tasks_prune()
    drain()

    assert not Task.objects.filter(kind=kinds.ISSUE_RECEIPT).exists()
    assert effects(gateway)["voids"] == Counter(voided)
