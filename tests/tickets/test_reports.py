"""The accountants' totals per day and the ticket list as CSV (tickets/reports.py)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.utils import timezone

from outbox.models import Task, TaskState
from tests.conftest import ticket
from tickets import kinds
from tickets.models import Ticket
from tickets.reports import csv_cell, daily_totals
from tickets.services import ticket_refund_request

pytestmark = pytest.mark.django_db

TOTALS = "/admin/tickets/ticket/totals/"
EXPORT = "/admin/tickets/ticket/export.csv"
NOW = datetime(2026, 11, 29, 15, 0, tzinfo=UTC)
YESTERDAY = NOW - timedelta(days=1)


def finish(dedupe_key: str, state: str, when: datetime) -> None:
    Task.objects.filter(dedupe_key=dedupe_key).update(state=state, finished_at=when)


def test_totals_count_receipts_refunds_and_failures_per_day_and_currency(post_tickets):
    post_tickets(
        [
            ticket("t-1", amount="10.50", currency="EUR"),
            ticket("t-2", amount="20.25", currency="EUR"),
            ticket("t-3", amount="7.00", currency="USD"),
        ]
    )
    Ticket.objects.filter(ticket_id__in=["t-1", "t-2"]).update(receipt_issued_at=NOW)
    Ticket.objects.filter(ticket_id="t-3").update(receipt_issued_at=YESTERDAY)
    ticket_refund_request(ticket_id="t-1", correlation_id="c-1")
    finish(kinds.PAYMENT_REFUND.dedupe_key("t-1"), TaskState.SUCCEEDED, NOW)
    finish(kinds.receipt_dedupe_key("t-3"), TaskState.FAILED, YESTERDAY)

    rows = {(r.day.isoformat(), r.currency): r for r in daily_totals(days=7, now=NOW)}

    today_eur = rows[("2026-11-29", "EUR")]
    assert (today_eur.receipts.count, today_eur.receipts.amount) == (2, Decimal("30.75"))
    assert (today_eur.refunds.count, today_eur.refunds.amount) == (1, Decimal("10.50"))
    assert today_eur.failures.count == 0
    yesterday_usd = rows[("2026-11-28", "USD")]
    assert (yesterday_usd.receipts.count, yesterday_usd.failures.count) == (1, 1)
    assert yesterday_usd.failures.amount == Decimal("7.00")
    assert set(rows) == {("2026-11-29", "EUR"), ("2026-11-28", "USD")}


def test_totals_leave_out_days_before_the_window(post_tickets):
    post_tickets([ticket("t-1")])
    Ticket.objects.filter(ticket_id="t-1").update(receipt_issued_at=NOW - timedelta(days=7))

    assert daily_totals(days=7, now=NOW) == []
    assert len(daily_totals(days=8, now=NOW)) == 1


def test_the_totals_page_shows_amounts_as_decimals_in_three_queries(
    admin_client, post_tickets, django_assert_num_queries
):
    post_tickets([ticket("t-1", amount="10.50"), ticket("t-2", amount="0.25")])
    Ticket.objects.update(receipt_issued_at=timezone.now())
    finish(kinds.PRINT_ROW.dedupe_key("t-2"), TaskState.FAILED, timezone.now())
    admin_client.get(TOTALS)  # the session and user are cached after the first page

    with django_assert_num_queries(5):  # session, user, and the three of daily_totals
        response = admin_client.get(TOTALS)

    html = response.content.decode()
    assert response.status_code == 200
    assert '<td class="num">2</td><td class="num">10.75</td>' in html
    assert '<td class="num">1</td><td class="num">0.25</td></tr>' in html, "the failure"


def test_the_dashboard_links_the_totals(admin_client):
    html = admin_client.get("/admin/outbox/task/dashboard/").content.decode()

    assert f'<a href="{TOTALS}">Ticket totals per day</a>' in html


def rows_of(response) -> list[list[str]]:
    text = b"".join(response.streaming_content).decode()
    return list(csv.reader(io.StringIO(text)))


def test_the_export_is_the_list_as_filtered(admin_client, post_tickets):
    post_tickets([ticket("t-1", amount="12.30"), ticket("t-2"), ticket("t-3", status="canceled")])

    response = admin_client.get(EXPORT, {"status": "confirmed", "q": "t-"})

    assert response.status_code == 200
    assert response.streaming, "rows are written as they are read, not held in memory"
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert "attachment" in response["Content-Disposition"]
    header, *rows = rows_of(response)
    assert header[:5] == ["ticket_id", "status", "customer_email", "amount", "currency"]
    assert sorted(row[0] for row in rows) == ["t-1", "t-2"]
    assert ["t-1", "confirmed", "ada@example.com", "12.30", "EUR"] in [r[:5] for r in rows]


def test_the_ticket_list_links_the_export_with_its_filters(admin_client, post_tickets):
    post_tickets([ticket("t-1"), ticket("t-2")])

    html = admin_client.get("/admin/tickets/ticket/", {"status": "confirmed"}).content.decode()

    assert f'id="export-csv" href="{EXPORT}?status=confirmed"' in html


def test_a_cell_that_a_spreadsheet_would_run_is_defused(post_tickets, admin_client):
    post_tickets([ticket("t-1", booking_id='=HYPERLINK("http://evil")')])

    _, row = rows_of(admin_client.get(EXPORT))

    assert row[5] == '\'=HYPERLINK("http://evil")'
    assert [csv_cell(v) for v in ("+1", "-1", "@x", "ok")] == ["'+1", "'-1", "'@x", "ok"]
    assert csv_cell(Decimal("-5.00")) == "-5.00", "money is a number, not a formula"


def test_the_export_needs_view_permission(post_tickets):
    user = User.objects.create_user("nobody", password="x", is_staff=True)
    client = Client()
    client.force_login(user)

    assert client.get(EXPORT).status_code == 403
    user.user_permissions.add(Permission.objects.get(codename="view_ticket"))
    assert Client().get(EXPORT).status_code == 302, "anonymous goes to the login page"
    client.force_login(User.objects.get(pk=user.pk))
    assert client.get(EXPORT).status_code == 200
