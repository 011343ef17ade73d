from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import Group, User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django.utils.html import escape

from outbox.models import Attempt, AttemptOutcome, Task, TaskState
from tests.conftest import record_try, ticket, waiting_out_a_write
from tickets import kinds
from tickets.handlers import FORCE_RETRY_SHEET_ROW
from tickets.models import Ticket, TicketStatus, WebhookDelivery
from tickets.services import ticket_refund_request

CHANGELIST = "/admin/tickets/ticket/"

pytestmark = pytest.mark.django_db


@pytest.fixture
def accounting_client() -> Client:
    user = User.objects.create_user("acc", password="x", is_staff=True)
    user.groups.add(Group.objects.get(name="Accounting"))
    client = Client()
    client.force_login(user)
    return client


def task_of(ticket_id: str, kind: str, sheet: str | None = None) -> Task:
    tasks = Task.objects.filter(kind=kind, payload__ticket_id=ticket_id)
    if sheet is not None:
        tasks = tasks.filter(payload__sheet=sheet)
    return tasks.get()


def listed(client: Client, query: dict[str, Any] | None = None) -> list[Ticket]:
    response = client.get(CHANGELIST, query or {})
    assert response.status_code == 200
    return list(response.context["cl"].result_list)


def test_the_list_shows_status_receipt_and_the_state_of_each_task(admin_client, post_tickets):
    post_tickets([ticket("t-1"), ticket("t-2", status="canceled")])
    Ticket.objects.filter(ticket_id="t-1").update(receipt_number="R-0001")
    receipt = task_of("t-1", kinds.ISSUE_RECEIPT)
    receipt.state = TaskState.SUCCEEDED
    receipt.save(update_fields=["state"])
    print_row = task_of("t-1", kinds.APPEND_ROW, kinds.PRINT_SHEET)
    print_row.state = TaskState.FAILED
    print_row.save(update_fields=["state"])

    response = admin_client.get(CHANGELIST)

    assert response.status_code == 200
    html = response.content.decode()
    assert "R-0001" in html
    assert f'href="/admin/outbox/task/{receipt.pk}/change/"' in html
    assert ">receipt: succeeded</a>" in html
    assert ">sheet:tickets-to-print: failed</a>" in html
    assert ">sheet:tickets-to-refund: pending</a>" in html
    assert "canceled" in html


def test_the_list_reads_every_ticket_s_tasks_in_one_query(admin_client, post_tickets):
    def queries_to_list() -> tuple[int, str]:
        with CaptureQueriesContext(connection) as captured:
            response = admin_client.get(CHANGELIST)
        return len(captured), response.content.decode()

    post_tickets([ticket("t-1")], key="k-1")
    with_one, _ = queries_to_list()
    post_tickets([ticket(f"t-{n}") for n in range(2, 30)], key="k-2")

    with_many, html = queries_to_list()

    assert with_many == with_one
    assert html.count(": pending</a>") == 29 * 2


def test_search_finds_a_ticket_by_id_or_email(admin_client, post_tickets):
    post_tickets([ticket("t-1", email="ada@example.com"), ticket("t-2", email="bob@example.com")])

    assert [t.ticket_id for t in listed(admin_client, {"q": "t-2", "status": "confirmed"})] == [
        "t-2"
    ]
    assert [t.ticket_id for t in listed(admin_client, {"q": "ada@"})] == ["t-1"]
    assert listed(admin_client, {"q": "carol"}) == []


def test_the_task_list_finds_a_tickets_tasks_by_its_id_or_email_on_indexes(
    admin_client, post_tickets
):
    post_tickets([ticket("t-1", email="ada@example.com"), ticket("t-10", email="bob@example.com")])
    tasks_of_t1 = set(
        Task.objects.filter(dedupe_key__in=kinds.dedupe_keys("t-1")).values_list("pk", flat=True)
    )

    def found(term: str) -> tuple[set[int], list[str]]:
        with CaptureQueriesContext(connection) as queries:
            response = admin_client.get("/admin/outbox/task/", {"q": term})
        listed = {task.pk for task in response.context["cl"].result_list}
        return listed, [q["sql"] for q in queries if "dedupe_key" in q["sql"]]

    assert tasks_of_t1
    for term in ("t-1", "ada@example.com"):
        listed, sql = found(term)
        # Exactly t-1's tasks (not t-10's), matched by their dedupe keys: no payload scan.
        assert listed == tasks_of_t1, term
        assert sql, term
        assert not any("LIKE" in statement.upper() for statement in sql), term
    # A value no ticket has is still looked for in the payloads, case aside.
    listed, _ = found("ADA@EXAMPLE.COM")
    assert listed
    assert listed <= tasks_of_t1


def page_of(ticket_id: str) -> str:
    return f"/admin/tickets/ticket/{Ticket.objects.get(ticket_id=ticket_id).pk}/change/"


def test_search_finds_tickets_by_receipt_number_and_booking_id(admin_client, post_tickets):
    post_tickets(
        [ticket("t-1", booking_id="B-77"), ticket("t-2", booking_id="B-77"), ticket("t-3")]
    )
    Ticket.objects.filter(ticket_id="t-3").update(receipt_number="R-000123")

    assert [t.ticket_id for t in listed(admin_client, {"q": "000123"})] == ["t-3"]
    assert {t.ticket_id for t in listed(admin_client, {"q": "B-77"})} == {"t-1", "t-2"}


def test_search_finds_the_tickets_a_correlation_id_touched(admin_client, post_tickets):
    post_tickets([ticket("t-1"), ticket("t-2")], key="k-1", correlation_id="corr-order-1")
    post_tickets([ticket("t-3")], key="k-2", correlation_id="corr-order-2")
    # A refund requested by hand carries its own Correlation-ID only on its tasks.
    Task.objects.filter(dedupe_key=kinds.receipt_dedupe_key("t-3")).update(
        correlation_id="corr-refund-9"
    )

    found = {t.ticket_id for t in listed(admin_client, {"q": "corr-order-1"})}
    assert found == {"t-1", "t-2"}
    response = admin_client.get(CHANGELIST, {"q": "corr-refund-9"})
    assert response.status_code == 302
    assert response["Location"] == page_of("t-3")


@pytest.mark.parametrize("term", ["t-2", "R-9", "bob@example.com", "BOB@example.com"])
def test_a_single_exact_match_opens_the_ticket(admin_client, post_tickets, term):
    post_tickets([ticket("t-1"), ticket("t-2", email="bob@example.com"), ticket("t-22")])
    Ticket.objects.filter(ticket_id="t-2").update(receipt_number="R-9")

    response = admin_client.get(CHANGELIST, {"q": term})

    assert response.status_code == 302
    assert response["Location"] == page_of("t-2")


def test_several_matches_or_a_filter_keep_the_list(admin_client, post_tickets):
    post_tickets([ticket("t-1", booking_id="B-1"), ticket("t-2", booking_id="B-1")])

    assert admin_client.get(CHANGELIST, {"q": "B-1"}).status_code == 200
    assert admin_client.get(CHANGELIST, {"q": "t-1", "status": "confirmed"}).status_code == 200


def test_the_list_filters_by_status_and_receipt(admin_client, post_tickets):
    post_tickets([ticket("t-1"), ticket("t-2"), ticket("t-3", status="canceled")])
    Ticket.objects.filter(ticket_id="t-1").update(receipt_number="R-1")

    def ids(query: dict[str, str]) -> set[str]:
        return {t.ticket_id for t in listed(admin_client, query)}

    assert ids({"status": "canceled"}) == {"t-3"}
    assert ids({"receipt": "issued"}) == {"t-1"}
    assert ids({"receipt": "missing", "status": "confirmed"}) == {"t-2"}


def test_the_ticket_page_shows_its_tasks_and_their_attempts(admin_client, post_tickets):
    post_tickets([ticket("t-1"), ticket("t-9")])
    receipt = task_of("t-1", kinds.ISSUE_RECEIPT)
    Attempt.objects.create(
        task=receipt,
        number=1,
        started_at=timezone.now(),
        duration_ms=41.7,
        outcome=AttemptOutcome.RETRY,
        http_status=502,
        error="Bad Gateway <html>",
    )
    Attempt.objects.create(
        task=receipt,
        number=1,
        started_at=timezone.now(),
        duration_ms=8.0,
        outcome=AttemptOutcome.SUCCEEDED,
        error="after the retry",
    )
    stored = Ticket.objects.get(ticket_id="t-1")

    response = admin_client.get(f"{CHANGELIST}{stored.pk}/change/")

    assert response.status_code == 200
    html = response.content.decode()
    assert f'href="/admin/outbox/task/{receipt.pk}/change/"' in html
    assert "sheet:tickets-to-print" in html
    assert "41.7 ms" in html
    assert "502" in html
    assert "Bad Gateway &lt;html&gt;" in html
    assert html.index("Bad Gateway") < html.index("after the retry")
    other = task_of("t-9", kinds.ISSUE_RECEIPT)
    assert f"/admin/outbox/task/{other.pk}/change/" not in html
    assert 'name="_save"' not in html


def test_the_ticket_page_shows_the_success_kept_on_the_task_row_as_the_last_try(
    admin_client, post_tickets
):
    # Recorded by the engine: try 1 answered 503, try 2 succeeded (kept on the task row, no
    # Attempt row). The page shows both, as when every try was a row: 1, then 2, succeeded.
    post_tickets([ticket("t-1")])
    receipt = task_of("t-1", kinds.ISSUE_RECEIPT)
    record_try(receipt.id, AttemptOutcome.RETRY, http_status=503, error="Service Unavailable")
    record_try(receipt.id, AttemptOutcome.SUCCEEDED)
    assert Attempt.objects.filter(task=receipt).count() == 1

    html = admin_client.get(page_of("t-1")).content.decode()

    table = html[html.index("outbox-attempts") :]
    rows = re.findall(r"<tr>\s*<td>(\d+)</td>.*?<td>([A-Z][a-z]+(?: [a-z]+)?)</td>", table, re.S)
    # Only the receipt task was tried: its table is the one on the page.
    assert rows == [("1", "Transient error"), ("2", "Succeeded")]
    assert "12.5 ms" in table


def test_every_task_a_ticket_causes_is_found_from_its_effects(post_tickets):
    # A ticket is refunded by one path (docs/API.md): t-1 through the API, t-2 by its cancel;
    # between them they cause every effect.
    post_tickets([ticket("t-1"), ticket("t-2")], key="k-1")
    ticket_refund_request(ticket_id="t-1", correlation_id="c")
    post_tickets([ticket("t-2", status="canceled")], key="k-2")

    for ticket_id, count in (("t-1", 4), ("t-2", 3)):
        stored = Ticket.objects.get(ticket_id=ticket_id)
        found = set(Task.objects.filter(dedupe_key__in=kinds.dedupe_keys(stored.ticket_id)))
        assert found == set(Task.objects.filter(payload__ticket_id=ticket_id))
        assert len(found) == count
    assert {t.kind for t in Task.objects.all()} == {e.kind for e in kinds.EFFECTS}
    assert Task.objects.count() == len(kinds.EFFECTS) + 2


def test_accounting_can_see_tickets_and_deliveries_but_not_change_them(
    accounting_client, post_tickets
):
    post_tickets([ticket("t-1", amount="10.00")])
    stored = Ticket.objects.get()

    assert accounting_client.get(CHANGELIST).status_code == 200
    assert accounting_client.get(f"{CHANGELIST}{stored.pk}/change/").status_code == 200
    assert accounting_client.get("/admin/tickets/webhookdelivery/").status_code == 200
    edited = accounting_client.post(f"{CHANGELIST}{stored.pk}/change/", {"status": "canceled"})
    deleted = accounting_client.post(f"{CHANGELIST}{stored.pk}/delete/", {"post": "yes"})

    assert edited.status_code == 403
    assert deleted.status_code == 403
    stored.refresh_from_db()
    assert (stored.status, stored.price_amount) == (TicketStatus.CONFIRMED, Decimal("10.00"))


def test_nobody_adds_a_ticket_by_hand(admin_client):
    assert admin_client.get(f"{CHANGELIST}add/").status_code == 403


def test_the_delivery_page_shows_the_first_answer_pretty(admin_client, post_tickets):
    post_tickets([ticket("t-1")], key="delivery-key")
    delivery = WebhookDelivery.objects.get()

    response = admin_client.get(f"/admin/tickets/webhookdelivery/{delivery.pk}/change/")

    assert response.status_code == 200
    html = response.content.decode()
    assert "delivery-key" in html
    assert '<pre class="outbox-json">' in html
    assert "&quot;ticket_id&quot;: &quot;t-1&quot;" in html


def _add_attempts(task: Task, count: int) -> None:
    for number in range(1, count + 1):
        Attempt.objects.create(
            task=task,
            number=number,
            started_at=timezone.now(),
            duration_ms=1.0,
            outcome=AttemptOutcome.RETRY,
        )


def test_the_ticket_page_reads_in_a_fixed_number_of_queries(
    admin_client, post_tickets, django_assert_num_queries
):
    post_tickets([ticket("t-1")], key="k-1")
    post_tickets([ticket("t-2")], key="k-2")
    ticket_refund_request(ticket_id="t-2", correlation_id="c")
    post_tickets([ticket("t-2", "canceled")], key="k-3")
    for task in Task.objects.filter(payload__ticket_id="t-2"):
        _add_attempts(task, 3)
    few, many = Ticket.objects.get(ticket_id="t-1"), Ticket.objects.get(ticket_id="t-2")
    # Fills the content types' process-wide cache, which the first page of a test run reads.
    admin_client.get(f"{CHANGELIST}{few.pk}/change/")

    # The session and its user, the ticket, its tasks, their attempts.
    with django_assert_num_queries(5):
        admin_client.get(f"{CHANGELIST}{few.pk}/change/")
    with django_assert_num_queries(5):
        response = admin_client.get(f"{CHANGELIST}{many.pk}/change/")

    assert response.content.decode().count(" ms</td>") == 4 * 3


def test_the_list_reads_in_a_fixed_number_of_queries(
    admin_client, post_tickets, django_assert_num_queries
):
    post_tickets([ticket(f"t-{n}") for n in range(40)], key="k-1")
    for task in Task.objects.all()[:10]:
        _add_attempts(task, 2)

    # The session and its user, the count, the page of tickets, the currencies of the filter,
    # the tasks of every ticket on the page.
    with django_assert_num_queries(6):
        response = admin_client.get(CHANGELIST)

    assert response.content.decode().count(": pending</a>") == 40 * 2


def test_the_ticket_page_links_the_trace_of_its_tasks_once(admin_client, post_tickets):
    post_tickets([ticket("t-1")])
    carrier = {"traceparent": f"00-{'4b' * 16}-00f067aa0ba902b7-01"}
    Task.objects.update(trace_context=carrier)
    pk = Ticket.objects.get(ticket_id="t-1").pk

    page = admin_client.get(f"/admin/tickets/ticket/{pk}/change/").content.decode()

    assert page.count(f'href="http://localhost:16686/trace/{"4b" * 16}"') == 1


def test_the_forced_retry_of_a_sheet_append_names_the_second_row_it_risks(admin_client):
    append = Task.objects.create(
        kind=kinds.APPEND_ROW,
        payload={"sheet": kinds.PRINT_SHEET, "ticket_id": "t-1"},
        state=TaskState.PENDING,
    )
    waiting_out_a_write(append, tries=1)

    page = admin_client.post(
        "/admin/outbox/task/",
        {"action": "force_retry", ACTION_CHECKBOX_NAME: [append.pk], "index": 0},
    ).content.decode()

    assert f"<strong>{kinds.APPEND_ROW}</strong>: {escape(FORCE_RETRY_SHEET_ROW)}" in page
