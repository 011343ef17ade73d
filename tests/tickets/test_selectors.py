from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.authtoken.models import Token

from outbox.history import history
from outbox.models import Attempt, AttemptOutcome, Task
from tests.conftest import ticket
from tickets import kinds
from tickets.models import Ticket
from tickets.selectors import ticket_tasks
from tickets.services import ticket_refund_request
from tickets.ticket_in import TicketIn

pytestmark = pytest.mark.django_db

AUDIT_SHEET = "tickets-to-audit"


def _audit_row(ticket: TicketIn) -> dict[str, Any]:
    return {"sheet": AUDIT_SHEET, "ticket_id": ticket.ticket_id, "amount": str(ticket.amount)}


@pytest.fixture
def sixth_effect(monkeypatch):
    """A new effect, added the way a contributor would: one more row in the table."""
    audit = kinds.Effect(f"sheet:{AUDIT_SHEET}", kinds.APPEND_ROW, kinds.ON_CONFIRMED, _audit_row)
    monkeypatch.setattr(kinds, "EFFECTS", (*kinds.EFFECTS, audit))
    return audit


def test_each_ticket_gets_its_own_tasks_in_one_query(post_tickets, django_assert_num_queries):
    post_tickets([ticket("t-1"), ticket("t-10"), ticket("t-2", status="canceled")])

    with django_assert_num_queries(1):
        found = ticket_tasks(["t-1", "t-10", "t-2", "t-unknown"])

    assert {tid: [task.dedupe_key for task in tasks] for tid, tasks in found.items()} == {
        "t-1": ["receipt:t-1", "sheet:tickets-to-print:t-1"],
        "t-10": ["receipt:t-10", "sheet:tickets-to-print:t-10"],
        "t-2": ["sheet:tickets-to-refund:t-2"],
        "t-unknown": [],
    }


def test_no_tickets_cost_no_query(django_assert_num_queries):
    with django_assert_num_queries(0):
        assert ticket_tasks([]) == {}


def test_attempts_come_in_two_queries_in_the_order_they_happened(
    post_tickets, django_assert_num_queries
):
    post_tickets([ticket("t-1"), ticket("t-2")])
    receipt = Task.objects.get(dedupe_key="receipt:t-1")
    Attempt.objects.create(
        task=receipt,
        number=1,
        started_at=timezone.now(),
        duration_ms=1.0,
        outcome=AttemptOutcome.RETRY,
    )
    # The second try succeeded: kept on the task row, as the relay records it.
    Task.objects.filter(id=receipt.id).update(
        state="succeeded",
        attempts=2,
        succeeded_started_at=timezone.now(),
        succeeded_duration_ms=1.0,
    )

    with django_assert_num_queries(2):
        found = ticket_tasks(["t-1", "t-2"], with_attempts=True)
        attempts = [(a.number, a.outcome) for task in found["t-1"] for a in history(task)]

    assert attempts == [(1, AttemptOutcome.RETRY), (2, AttemptOutcome.SUCCEEDED)]


def test_every_task_a_refunded_ticket_caused_is_found(post_tickets):
    post_tickets([ticket("t-1")], key="k-1")
    ticket_refund_request(ticket_id="t-1", correlation_id="c")
    post_tickets([ticket("t-1", "canceled")], key="k-2")

    found = ticket_tasks(["t-1"])["t-1"]

    assert found == list(Task.objects.filter(payload__ticket_id="t-1").order_by("id"))
    assert len(found) == 4


def test_a_new_effect_is_enqueued_and_listed_by_the_admin_and_the_api(
    sixth_effect, post_tickets, admin_client, admin_user
):
    post_tickets([ticket("t-1")])
    audit = Task.objects.get(dedupe_key="sheet:tickets-to-audit:t-1")
    stored = Ticket.objects.get(ticket_id="t-1")
    api = Client(headers={"Authorization": f"Token {Token.objects.create(user=admin_user).key}"})

    listed = admin_client.get("/admin/tickets/ticket/").content.decode()
    page = admin_client.get(f"/admin/tickets/ticket/{stored.pk}/change/").content.decode()
    detail = api.get("/api/tickets/t-1").json()

    assert ">sheet:tickets-to-audit: pending</a>" in listed
    assert f'href="/admin/outbox/task/{audit.pk}/change/"' in page
    assert audit.id in [task["id"] for task in detail["tasks"]]
    assert len(detail["tasks"]) == 3
