from __future__ import annotations

import json
import logging
from decimal import Decimal

import pytest

from outbox.models import Task, TaskState
from tests.conftest import ticket
from tickets import kinds
from tickets.models import Ticket, TicketStatus, WebhookDelivery

pytestmark = pytest.mark.django_db


def counts() -> tuple[int, int, int]:
    return Ticket.objects.count(), Task.objects.count(), WebhookDelivery.objects.count()


def test_a_confirmed_ticket_is_stored_with_a_receipt_and_a_print_row_task(post_tickets):
    response = post_tickets([ticket("t-1", amount="50.00", currency="EUR")])

    assert response.status_code == 200
    stored = Ticket.objects.get(ticket_id="t-1")
    assert stored.status == TicketStatus.CONFIRMED
    assert stored.price_amount == Decimal("50.00")
    assert stored.price_currency == "EUR"
    tasks = {(t.kind, t.payload.get("sheet")) for t in Task.objects.all()}
    assert tasks == {(kinds.ISSUE_RECEIPT, None), (kinds.APPEND_ROW, kinds.PRINT_SHEET)}


def test_the_answer_lists_the_correlation_id_tickets_and_every_task_created(post_tickets):
    response = post_tickets([ticket("t-1")], correlation_id="corr-42")

    body = response.json()
    assert response["Correlation-ID"] == "corr-42"
    assert body["correlation_id"] == "corr-42"
    assert body["tickets"] == [{"ticket_id": "t-1", "status": "confirmed"}]
    created = {(t.id, t.kind) for t in Task.objects.all()}
    assert {(t["id"], t["kind"]) for t in body["tasks"]} == created
    assert set(Task.objects.values_list("correlation_id", flat=True)) == {"corr-42"}


def test_a_missing_correlation_id_is_generated_and_stored_on_the_tasks(post_tickets):
    response = post_tickets([ticket("t-1")])

    generated = response["Correlation-ID"]
    assert generated.startswith("gen_")
    assert set(Task.objects.values_list("correlation_id", flat=True)) == {generated}


def test_a_canceled_ticket_gets_only_a_refund_row_task(post_tickets):
    post_tickets([ticket("t-1", "canceled")])

    task = Task.objects.get()
    assert (task.kind, task.payload["sheet"]) == (kinds.APPEND_ROW, kinds.REFUND_SHEET)
    assert Ticket.objects.get().status == TicketStatus.CANCELED


def test_a_cancel_after_a_confirm_adds_the_refund_row_and_keeps_the_receipt(post_tickets):
    post_tickets([ticket("t-1")], key="a")
    post_tickets([ticket("t-1", "canceled")], key="b")

    assert Ticket.objects.get().status == TicketStatus.CANCELED
    assert sorted(Task.objects.values_list("dedupe_key", flat=True)) == [
        "receipt:t-1",
        "sheet:tickets-to-print:t-1",
        "sheet:tickets-to-refund:t-1",
    ]


def test_a_confirm_after_a_cancel_changes_nothing_and_is_logged(post_tickets, caplog):
    post_tickets([ticket("t-1", "canceled")], key="a")

    with caplog.at_level(logging.INFO, logger="tickets.services"):
        response = post_tickets([ticket("t-1", "confirmed")], key="b")

    assert response.status_code == 200
    assert response.json()["tickets"] == [{"ticket_id": "t-1", "status": "canceled"}]
    assert Ticket.objects.get().status == TicketStatus.CANCELED
    assert Task.objects.count() == 1
    assert "ticket t-1 is canceled; a later confirmed changes nothing" in caplog.text


def test_each_effect_is_enqueued_once_per_ticket_across_deliveries(post_tickets):
    for key in ("a", "b", "c"):
        post_tickets([ticket("t-1"), ticket("t-2")], key=key)

    assert Task.objects.count() == 4
    assert WebhookDelivery.objects.count() == 3


def test_a_confirm_and_cancel_in_one_request_enqueue_all_three_effects(post_tickets):
    post_tickets([ticket("t-1"), ticket("t-1", "canceled")])

    assert Ticket.objects.get().status == TicketStatus.CANCELED
    assert Task.objects.count() == 3


def test_a_repeat_with_the_same_key_and_body_answers_the_same_and_writes_nothing(post_tickets):
    first = post_tickets([ticket("t-1")], key="k", correlation_id="c-1")
    before = counts()

    again = post_tickets([ticket("t-1")], key="k", correlation_id="c-2")

    assert again.status_code == 200
    assert again.json() == first.json()
    assert again["Correlation-ID"] == "c-1"
    assert counts() == before


def test_the_same_key_with_another_body_is_422_and_writes_nothing(post_tickets):
    post_tickets([ticket("t-1")], key="k")
    before = counts()

    response = post_tickets([ticket("t-2")], key="k")

    assert response.status_code == 422
    assert "Idempotency-Key" in response.json()["error"]
    assert counts() == before


def test_a_missing_idempotency_key_is_400_and_writes_nothing(post_tickets):
    response = post_tickets([ticket("t-1")], key=None)

    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()["error"]
    assert counts() == (0, 0, 0)


def test_malformed_json_is_400_and_writes_nothing(post_tickets):
    response = post_tickets(body='{"tickets": [')

    assert response.status_code == 400
    assert "JSON parse error" in response.json()["error"]
    assert counts() == (0, 0, 0)


def test_a_missing_currency_means_usd(post_tickets):
    post_tickets([ticket("t-1", currency=None)])

    assert Ticket.objects.get().price_currency == "USD"
    assert Task.objects.get(kind=kinds.ISSUE_RECEIPT).payload["currency"] == "USD"


def test_the_booking_id_is_optional_and_stored_when_given(post_tickets):
    post_tickets([ticket("t-1", booking_id="b-9"), ticket("t-2", booking_id=None)])

    assert dict(Ticket.objects.values_list("ticket_id", "booking_id")) == {"t-1": "b-9", "t-2": ""}


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({"ticket_id": ""}, "tickets[1].ticket_id"),
        ({"ticket_id": "x" * 256}, "tickets[1].ticket_id"),
        ({"status": "refunded"}, "tickets[1].status"),
        ({"customer_email": "not-an-email"}, "tickets[1].customer_email"),
        ({"price": {"amount": "1.234", "currency": "EUR"}}, "tickets[1].price.amount"),
        ({"price": {"amount": "-1.00", "currency": "EUR"}}, "tickets[1].price.amount"),
        ({"price": {"amount": 10.5, "currency": "EUR"}}, "tickets[1].price.amount"),
        ({"price": {"amount": "ten", "currency": "EUR"}}, "tickets[1].price.amount"),
        ({"price": {"amount": "NaN", "currency": "EUR"}}, "tickets[1].price.amount"),
        ({"price": {"currency": "EUR"}}, "tickets[1].price.amount"),
        ({"price": {"amount": "1.00", "currency": "EURO"}}, "tickets[1].price.currency"),
        ({"price": {"amount": "1.00", "currency": "eu1"}}, "tickets[1].price.currency"),
        ({"price": "1.00"}, "tickets[1].price"),
        ({"booking_id": "b" * 256}, "tickets[1].booking_id"),
    ],
)
def test_one_invalid_ticket_rejects_the_request_naming_its_index_and_field(
    post_tickets, bad, field
):
    invalid = {**ticket("t-2"), **bad}

    response = post_tickets([ticket("t-1"), invalid])

    assert response.status_code == 400
    assert field in [error["field"] for error in response.json()["errors"]]
    assert field in response.json()["error"]
    assert counts() == (0, 0, 0)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "tickets"),
        ({"tickets": []}, "tickets"),
        ({"tickets": "nope"}, "tickets"),
        ([], "body"),
        ({"tickets": [{"ticket_id": "t"}]}, "tickets[0].status"),
    ],
)
def test_a_body_of_the_wrong_shape_is_400_naming_the_field(post_tickets, body, field):
    response = post_tickets(body=json.dumps(body))

    assert response.status_code == 400
    assert field in [error["field"] for error in response.json()["errors"]]
    assert counts() == (0, 0, 0)


def test_an_error_after_the_tickets_are_written_leaves_nothing(post_tickets, monkeypatch):
    def explode(specs):
        assert Ticket.objects.count() == 1  # the tickets were written in this transaction
        raise RuntimeError("injected failure before commit")

    monkeypatch.setattr("tickets.services.enqueue_many", explode)

    with pytest.raises(RuntimeError, match="injected failure"):
        post_tickets([ticket("t-1")])

    assert counts() == (0, 0, 0)


def test_an_error_while_recording_the_delivery_leaves_nothing(post_tickets):
    from django.db import connection

    def explode_on_the_answer(execute, sql, params, many, context):
        # The delivery's answer is its last write, after the tickets and the tasks.
        if sql.startswith('UPDATE "tickets_webhookdelivery"'):
            raise RuntimeError("injected failure at the last write")
        return execute(sql, params, many, context)

    with (
        connection.execute_wrapper(explode_on_the_answer),
        pytest.raises(RuntimeError, match="last write"),
    ):
        post_tickets([ticket("t-1")])

    assert counts() == (0, 0, 0)


def test_a_100_ticket_webhook_costs_as_many_queries_as_a_1_ticket_one(
    post_tickets, django_assert_num_queries
):
    from django.db import connection

    # The transaction's savepoint and release (a BEGIN/COMMIT outside tests), insert the
    # delivery (ignoring a conflict), insert tickets, lock them, insert tasks, save the
    # answer; plus NOTIFY on PostgreSQL.
    expected = 8 if connection.vendor == "postgresql" else 7
    with django_assert_num_queries(expected):
        post_tickets([ticket("one-0")], key="one")
    with django_assert_num_queries(expected):
        response = post_tickets([ticket(f"hundred-{i}") for i in range(100)], key="hundred")
    assert len(response.json()["tasks"]) == 200


def test_get_tickets_lists_tickets_that_are_not_canceled_in_the_contract_shape(
    client, post_tickets
):
    post_tickets([ticket("t-1", amount="7.5"), ticket("t-2", "canceled")])

    response = client.get("/tickets")

    assert response.status_code == 200
    assert response.json() == [
        {
            "ticket_id": "t-1",
            "customer_email": "ada@example.com",
            "price": {"amount": "7.50", "currency": "EUR"},
        }
    ]


def test_health_answers_ok_when_the_database_answers(client):
    response = client.get("/health")

    assert response.status_code == 200
    assert response.content == b"ok"


def test_health_answers_503_when_the_database_does_not(client, monkeypatch):
    from django.db import connection

    def broken(*args, **kwargs):
        raise RuntimeError("database is down")

    monkeypatch.setattr(connection, "cursor", broken)

    response = client.get("/health")

    assert response.status_code == 503


def test_a_task_state_is_pending_right_after_intake(post_tickets):
    post_tickets([ticket("t-1")])

    assert set(Task.objects.values_list("state", flat=True)) == {TaskState.PENDING}
