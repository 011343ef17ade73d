from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import transaction
from django.db.models.functions import Now
from django.test import override_settings
from django.utils import timezone

from outbox.errors import Defer, PermanentError
from outbox.models import Attempt, AttemptReply, Task, TaskState
from outbox.registry import TaskContext, get_handler
from outbox.runtime.relay import Relay
from outbox.services import settle_waits, tasks_retry
from tests.conftest import ticket
from tickets import kinds
from tickets.models import Ticket

pytestmark = pytest.mark.django_db


def context(task: Task, attempt: int = 1) -> TaskContext:
    return TaskContext(
        id=task.id,
        kind=task.kind,
        payload=task.payload,
        idempotency_key=task.idempotency_key,
        attempt=attempt,
        max_attempts=task.max_attempts,
        correlation_id=task.correlation_id,
    )


def run(task: Task, attempt: int = 1):
    return get_handler(task.kind).func(context(task, attempt))


def sheet_task(sheet: str, ticket_id: str = "t-1") -> Task:
    return Task.objects.get(dedupe_key=f"sheet:{sheet}:{ticket_id}")


def test_issuing_a_receipt_stores_its_number_on_the_ticket(post_tickets, gateway_url, gateway):
    post_tickets([ticket("t-1", amount="50.00", currency="EUR")], correlation_id="c-9")
    task = Task.objects.get(kind=kinds.ISSUE_RECEIPT)

    result = run(task)

    [receipt] = gateway.snapshot()["receipts"]
    assert receipt["idempotency_key"] == task.idempotency_key
    assert receipt["price"] == {"money_amount": "50.00", "money_currency": "EUR"}
    assert receipt["correlation_id"] == "c-9"
    stored = Ticket.objects.get()
    assert stored.receipt_number == result["number"] == receipt["number"]
    assert stored.receipt_issued_at is not None


def test_a_repeated_receipt_call_gets_the_same_receipt(post_tickets, gateway_url, gateway):
    post_tickets([ticket("t-1")])
    task = Task.objects.get(kind=kinds.ISSUE_RECEIPT)

    first = run(task)
    second = run(task, attempt=2)

    assert first["number"] == second["number"]
    assert len(gateway.snapshot()["receipts"]) == 1


def test_a_ticket_without_currency_is_billed_in_usd(post_tickets, gateway_url, gateway):
    post_tickets([ticket("t-1", currency=None)])

    run(Task.objects.get(kind=kinds.ISSUE_RECEIPT))

    assert gateway.snapshot()["receipts"][0]["price"]["money_currency"] == "USD"


def test_a_first_append_writes_the_row_without_reading_the_sheet(
    post_tickets, gateway_url, gateway
):
    post_tickets([ticket("t-1", email="ada@example.com", amount="5.00", currency="EUR")])

    result = run(sheet_task(kinds.PRINT_SHEET))

    assert result == {"sheet": kinds.PRINT_SHEET, "appended": True}
    state = gateway.snapshot()
    assert state["sheets"][kinds.PRINT_SHEET] == [["t-1", "ada@example.com", "5.00", "EUR"]]
    assert [c["method"] for c in state["calls"]] == ["POST"]


def relay_once() -> None:
    Relay(threads=2, batch_size=10).run_once()


def make_due(task: Task) -> None:
    Task.objects.filter(id=task.id).update(available_at=Now())


def seconds_until_due(task: Task) -> float:
    due, now = Task.objects.annotate(now=Now()).values_list("available_at", "now").get(id=task.id)
    return (due - now).total_seconds()


@pytest.mark.django_db(transaction=True)
@override_settings(SHEET_SETTLE_SECONDS=60.0)
def test_a_retry_after_an_answered_500_that_wrote_the_row_comes_at_the_backoff_and_reads_first(
    post_tickets, gateway_url, gateway
):
    post_tickets([ticket("t-1", "canceled")])
    task = sheet_task(kinds.REFUND_SHEET)
    gateway.configure({"fail_after_write_rate": 1.0})
    relay_once()
    gateway.configure({"fail_after_write_rate": 0.0})

    # The API answered: it has finished with the request, so no minute of settle.
    assert seconds_until_due(task) <= 1.0  # the first backoff: uniform in [0, 1 s]
    [first] = Attempt.objects.filter(task=task)
    assert (first.reply, first.http_status) == (AttemptReply.ANSWERED, 500)
    task.refresh_from_db()
    assert task.settle_until is None
    make_due(task)
    relay_once()

    task.refresh_from_db()
    assert task.state == TaskState.SUCCEEDED
    assert task.result["already_present"] is True
    assert len(gateway.snapshot()["sheets"][kinds.REFUND_SHEET]) == 1


@pytest.mark.django_db(transaction=True)
@override_settings(SHEET_SETTLE_SECONDS=60.0)
def test_three_answered_500s_in_a_row_never_wait_the_settle(post_tickets, gateway_url, gateway):
    post_tickets([ticket("t-1")])
    task = sheet_task(kinds.PRINT_SHEET)
    gateway.configure({"failure_rate": 1.0})
    for _ in range(3):
        make_due(task)
        relay_once()
        # Each wait is its own backoff (at most base * 2**(attempt - 1)), never a settle on it.
        task.refresh_from_db()
        assert seconds_until_due(task) <= 2**task.attempts
    gateway.configure({"failure_rate": 0.0})
    make_due(task)
    relay_once()

    task.refresh_from_db()
    assert task.state == TaskState.SUCCEEDED
    assert task.attempts == 4
    assert len(gateway.snapshot()["sheets"][kinds.PRINT_SHEET]) == 1


@pytest.mark.django_db(transaction=True)
@override_settings(SHEET_SETTLE_SECONDS=60.0, OUTBOX={"CALL_SECONDS": 0.5})
def test_an_append_that_got_no_answer_waits_the_settle_from_its_start_not_on_top_of_it(
    post_tickets, gateway_url, gateway
):
    post_tickets([ticket("t-1")])
    task = sheet_task(kinds.PRINT_SHEET)
    gateway.configure({"append_latency_ms": 2000})  # the answer comes after the 0.5 s deadline

    relay_once()

    task.refresh_from_db()
    [first] = Attempt.objects.filter(task=task)
    assert first.reply == AttemptReply.NO_ANSWER
    assert "no answer" in first.error
    assert "the next try waits until" in first.error
    # Due when the settle counted from the try's start ends: not 60 s after the try ended.
    assert task.settle_until is not None
    assert abs((task.settle_until - first.started_at).total_seconds() - 60.0) < 0.01
    assert abs((task.available_at - task.settle_until).total_seconds()) < 0.05


@pytest.mark.django_db(transaction=True)
@override_settings(SHEET_SETTLE_SECONDS=60.0)
def test_an_operators_retry_keeps_the_settle_of_a_try_that_got_no_answer(
    post_tickets, gateway_url, gateway
):
    post_tickets([ticket("t-1")])
    task = sheet_task(kinds.PRINT_SHEET)
    settle_until = timezone.now() + timedelta(seconds=45)
    Task.objects.filter(id=task.id).update(
        state=TaskState.FAILED, attempts=3, settle_until=settle_until
    )

    assert tasks_retry(tasks=Task.objects.filter(id=task.id)) == 1

    task.refresh_from_db()
    assert task.state == TaskState.PENDING
    assert task.available_at == settle_until  # not now: a write of try 3 may still land
    [wait] = settle_waits(task_ids=[task.id])
    assert wait.until == settle_until
    assert "may still land" in wait.describe()


@pytest.mark.django_db(transaction=True)
def test_a_forced_retry_skips_the_settle(post_tickets, gateway_url, gateway):
    post_tickets([ticket("t-1")])
    task = sheet_task(kinds.PRINT_SHEET)
    Task.objects.filter(id=task.id).update(
        state=TaskState.FAILED, settle_until=timezone.now() + timedelta(seconds=45)
    )

    tasks_retry(tasks=Task.objects.filter(id=task.id), skip_settle=True)

    assert seconds_until_due(task) <= 0.0
    assert settle_waits(task_ids=[task.id]) == []


@pytest.mark.django_db(transaction=True)
@override_settings(SHEET_SETTLE_SECONDS=0.0)
def test_a_retry_after_a_500_that_did_not_write_appends_the_row(post_tickets, gateway_url, gateway):
    post_tickets([ticket("t-1", "canceled")])
    task = sheet_task(kinds.REFUND_SHEET)
    gateway.configure({"failure_rate": 1.0})
    relay_once()
    gateway.configure({"failure_rate": 0.0})

    make_due(task)
    relay_once()

    task.refresh_from_db()
    assert task.result["appended"] is True
    assert len(gateway.snapshot()["sheets"][kinds.REFUND_SHEET]) == 1


def test_an_unknown_sheet_is_a_permanent_error(post_tickets, gateway_url):
    post_tickets([ticket("t-1")])
    task = sheet_task(kinds.PRINT_SHEET)
    task.payload["sheet"] = "somewhere-else"

    with pytest.raises(PermanentError, match="unknown sheet"):
        run(task)


def test_a_refund_request_enqueues_the_void_and_the_refund_once(client, post_tickets):
    post_tickets([ticket("t-1")])

    first = client.put("/ticket-refund/t-1", headers={"Correlation-ID": "r-1"})
    again = client.put("/ticket-refund/t-1")

    assert first.status_code == again.status_code == 202
    assert {t["kind"] for t in first.json()["tasks"]} == {kinds.VOID_RECEIPT, kinds.REFUND_PAYMENT}
    assert again.json()["tasks"] == []
    tasks = Task.objects.filter(kind__in=[kinds.VOID_RECEIPT, kinds.REFUND_PAYMENT])
    assert {t.correlation_id for t in tasks} == {"r-1"}
    assert Ticket.objects.get().refund_requested_at is not None


def test_a_refund_of_an_unknown_ticket_is_404_and_writes_nothing(client):
    response = client.put("/ticket-refund/nope")

    assert response.status_code == 404
    assert "nope" in response.json()["error"]
    assert Task.objects.count() == 0


def test_a_void_waits_for_a_receipt_that_is_still_on_its_way(client, post_tickets, gateway_url):
    post_tickets([ticket("t-1")])
    # A worker is calling the receipts API right now: the refund cannot cancel that call.
    Task.objects.filter(kind=kinds.ISSUE_RECEIPT).update(state=TaskState.RUNNING, attempts=1)
    client.put("/ticket-refund/t-1")
    void = Task.objects.get(kind=kinds.VOID_RECEIPT)

    with pytest.raises(Defer, match="receipt task has not finished yet"):
        run(void)


def test_a_void_after_the_receipt_voids_it_once_with_its_key(
    client, post_tickets, gateway_url, gateway
):
    post_tickets([ticket("t-1")])
    run(Task.objects.get(kind=kinds.ISSUE_RECEIPT))
    client.put("/ticket-refund/t-1")
    void = Task.objects.get(kind=kinds.VOID_RECEIPT)
    refund = Task.objects.get(kind=kinds.REFUND_PAYMENT)

    assert run(void)["voided"] is True
    run(void, attempt=2)
    run(refund)

    state = gateway.snapshot()
    assert [(v["ticket_id"], v["idempotent_id"]) for v in state["voids"]] == [
        ("t-1", void.idempotency_key)
    ]
    assert [(r["payment_reference"], r["deduplication_id"]) for r in state["refunds"]] == [
        ("t-1", refund.idempotency_key)
    ]


def test_a_ticket_refunded_before_any_receipt_has_nothing_to_void(
    client, post_tickets, gateway_url
):
    # A canceled ticket cannot be refunded here (409, docs/API.md): the receipt never ran.
    post_tickets([ticket("t-1")])
    assert client.put("/ticket-refund/t-1").status_code == 202

    result = run(Task.objects.get(kind=kinds.VOID_RECEIPT))

    assert result["voided"] is False


@pytest.mark.django_db(transaction=True)
def test_the_relay_delivers_every_effect_of_a_webhook_through_the_gateway(
    post_tickets, gateway_url, gateway
):
    post_tickets([ticket("t-1"), ticket("t-2", "canceled")])

    stats = Relay(threads=4, batch_size=10).drain()

    assert stats.succeeded == 3
    assert set(Task.objects.values_list("state", flat=True)) == {TaskState.SUCCEEDED}
    state = gateway.snapshot()
    assert [r["ticket_id"] for r in state["receipts"]] == ["t-1"]
    assert [row[0] for row in state["sheets"][kinds.PRINT_SHEET]] == ["t-1"]
    assert [row[0] for row in state["sheets"][kinds.REFUND_SHEET]] == ["t-2"]
    with transaction.atomic():
        assert Ticket.objects.get(ticket_id="t-1").receipt_number


def test_the_receipt_handlers_sql_writes_and_reads_what_the_orm_would():
    from datetime import UTC, datetime

    from tickets.services import ticket_receipt_record, ticket_refunded_at

    Ticket.objects.create(
        ticket_id="t-1", status="confirmed", customer_email="a@example.com", price_amount="5.00"
    )
    long_ago = datetime(2020, 1, 1, tzinfo=UTC)
    Ticket.objects.update(updated_at=long_ago)
    assert ticket_refunded_at("t-1") is None
    assert ticket_refunded_at("t-unknown") is None

    issued_at = datetime(2026, 3, 1, 12, 30, 15, 250000, tzinfo=UTC)
    ticket_receipt_record(ticket_id="t-1", number="R-000042", issued_at=issued_at)
    assert Ticket.objects.get().updated_at > long_ago
    refunded_at = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
    Ticket.objects.filter(ticket_id="t-1").update(refund_requested_at=refunded_at)

    ticket = Ticket.objects.get()
    assert (ticket.receipt_number, ticket.receipt_issued_at) == ("R-000042", issued_at)
    assert ticket_refunded_at("t-1") == refunded_at
