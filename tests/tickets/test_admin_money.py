"""A ticket's page says where its money is; a ticket task's page links back to its ticket."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.utils import timezone

from outbox.models import Task, TaskState
from tests.conftest import grant, ticket
from tickets import kinds
from tickets.models import Ticket
from tickets.services import ticket_refund_request

CHANGELIST = "/admin/tickets/ticket/"
MOMENT = datetime(2026, 11, 29, 14, 5, 39, tzinfo=UTC)

pytestmark = pytest.mark.django_db


def task_of(ticket_id: str, kind: str) -> Task:
    return Task.objects.filter(kind=kind, payload__ticket_id=ticket_id).get()


def succeed(task: Task, **fields: object) -> None:
    Task.objects.filter(pk=task.pk).update(
        state=TaskState.SUCCEEDED, attempts=1, finished_at=MOMENT, **fields
    )


def page_of(client: Client, ticket_id: str) -> str:
    stored = Ticket.objects.get(ticket_id=ticket_id)
    response = client.get(f"{CHANGELIST}{stored.pk}/change/")
    assert response.status_code == 200
    return response.content.decode()


def test_an_issued_receipt_reads_with_its_number_and_when(admin_client, post_tickets):
    post_tickets([ticket("t-1")])
    Ticket.objects.filter(ticket_id="t-1").update(receipt_number="R-000012")
    succeed(task_of("t-1", kinds.ISSUE_RECEIPT))

    html = page_of(admin_client, "t-1")

    assert "Receipt R-000012 issued 2026-11-29 14:05:39 UTC" in html
    assert "Sold (confirmed)" in html


def test_a_refunded_ticket_reads_refunded_and_voided_with_when(admin_client, post_tickets):
    post_tickets([ticket("t-1")])
    Ticket.objects.filter(ticket_id="t-1").update(receipt_number="R-000012")
    succeed(task_of("t-1", kinds.ISSUE_RECEIPT))
    ticket_refund_request(ticket_id="t-1", correlation_id="c")
    succeed(task_of("t-1", kinds.VOID_RECEIPT))
    succeed(task_of("t-1", kinds.REFUND_PAYMENT))

    html = page_of(admin_client, "t-1")

    assert "refunded 2026-11-29 14:05:39 UTC" in html
    assert "receipt voided 2026-11-29 14:05:39 UTC" in html
    assert "Payment refunded 2026-11-29 14:05:39 UTC" in html
    assert "Receipt voided 2026-11-29 14:05:39 UTC" in html
    assert "t-1 (confirmed, refund requested)" in html
    listed = admin_client.get(CHANGELIST).content.decode()
    assert '<td class="field-status_now">refunded</td>' in listed


def test_a_refund_under_way_says_so_and_how_its_tries_went(admin_client, post_tickets):
    post_tickets([ticket("t-1")])
    ticket_refund_request(ticket_id="t-1", correlation_id="c")
    Task.objects.filter(pk=task_of("t-1", kinds.REFUND_PAYMENT).pk).update(
        attempts=3, last_error="PUT /payments-api/refunds answered 503: try later"
    )

    html = page_of(admin_client, "t-1")

    assert "not yet refunded" in html
    assert "Payment refund: waiting to retry (3 tries so far" in html
    assert "last error: PUT /payments-api/refunds answered 503: try later" in html


def test_a_failed_effect_has_a_retry_button_that_works(admin_client, post_tickets):
    post_tickets([ticket("t-1")])
    receipt = task_of("t-1", kinds.ISSUE_RECEIPT)
    Task.objects.filter(pk=receipt.pk).update(
        state=TaskState.FAILED, attempts=30, finished_at=timezone.now(), last_error="HTTP 400"
    )
    stored = Ticket.objects.get(ticket_id="t-1")

    html = page_of(admin_client, "t-1")
    assert f'formaction="/admin/outbox/task/{receipt.pk}/retry/"' in html
    response = admin_client.post(
        f"/admin/outbox/task/{receipt.pk}/retry/",
        {"next": f"{CHANGELIST}{stored.pk}/change/"},
    )

    assert response["Location"] == f"{CHANGELIST}{stored.pk}/change/"
    assert Task.objects.get(pk=receipt.pk).state == TaskState.PENDING


def test_who_cannot_retry_sees_no_retry_button(post_tickets):
    post_tickets([ticket("t-1")])
    receipt = task_of("t-1", kinds.ISSUE_RECEIPT)
    Task.objects.filter(pk=receipt.pk).update(state=TaskState.FAILED, attempts=3)
    viewer = grant(
        User.objects.create_user("v", password="x", is_staff=True), "tickets.view_ticket"
    )
    client = Client()
    client.force_login(viewer)

    assert "/retry/" not in page_of(client, "t-1")


def test_accounting_gets_the_retry_button(post_tickets):
    post_tickets([ticket("t-1")])
    receipt = task_of("t-1", kinds.ISSUE_RECEIPT)
    Task.objects.filter(pk=receipt.pk).update(state=TaskState.FAILED, attempts=3)
    user = User.objects.create_user("acc", password="x", is_staff=True)
    user.groups.add(Group.objects.get(name="Accounting"))
    client = Client()
    client.force_login(user)

    assert f"/admin/outbox/task/{receipt.pk}/retry/" in page_of(client, "t-1")


def test_a_ticket_task_s_page_links_its_ticket(admin_client, post_tickets):
    post_tickets([ticket("t-1")])
    receipt = task_of("t-1", kinds.ISSUE_RECEIPT)
    stored = Ticket.objects.get(ticket_id="t-1")

    html = admin_client.get(f"/admin/outbox/task/{receipt.pk}/change/").content.decode()

    assert f'href="{CHANGELIST}{stored.pk}/change/">ticket_id t-1</a>' in html


def test_attempts_read_as_words_not_a_fraction(admin_client, post_tickets):
    post_tickets([ticket("t-1")])
    receipt = task_of("t-1", kinds.ISSUE_RECEIPT)
    Task.objects.filter(pk=receipt.pk).update(attempts=7, max_attempts=36)

    html = admin_client.get(f"/admin/outbox/task/{receipt.pk}/change/").content.decode()

    assert "attempt 7 (budget 36 tries, 29 left)" in html
    assert "7/36" not in html


def test_the_deliveries_list_shows_tickets_answer_and_links(
    admin_client, post_tickets, django_assert_num_queries
):
    post_tickets([ticket("t-1"), ticket("t-2", status="canceled")], key="k-1")
    post_tickets([ticket("t-3")], key="k-2")
    one, three = Ticket.objects.get(ticket_id="t-1"), Ticket.objects.get(ticket_id="t-3")

    # The session and its user, the count, the page of deliveries, all of their tickets.
    with django_assert_num_queries(5):
        response = admin_client.get("/admin/tickets/webhookdelivery/")

    html = response.content.decode()
    assert "1 canceled, 1 confirmed; " in html
    assert f'<a href="{CHANGELIST}{one.pk}/change/">t-1</a>' in html
    assert f'<a href="{CHANGELIST}{three.pk}/change/">t-3</a>' in html
