"""The accounting team's numbers: totals per day and currency, and the ticket list as CSV.

Days are UTC days, as every time in the admin. Amounts are `Decimal`s, written as decimal
strings (never floats), per currency: euros and dollars are never added together.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import Q, QuerySet
from django.utils import timezone

from outbox.models import Task, TaskState
from tickets import kinds
from tickets.models import Ticket

# Ticket tasks that failed for good: each is an effect that did not happen.
FAILURE_KINDS = (kinds.ISSUE_RECEIPT, kinds.APPEND_ROW, kinds.VOID_RECEIPT, kinds.REFUND_PAYMENT)


@dataclass(slots=True)
class Tally:
    count: int = 0
    amount: Decimal = Decimal("0.00")

    def add(self, amount: Decimal) -> None:
        self.count += 1
        self.amount += amount


@dataclass(slots=True)
class DayTotals:
    """One UTC day in one currency."""

    day: date
    currency: str
    receipts: Tally = field(default_factory=Tally)
    refunds: Tally = field(default_factory=Tally)
    failures: Tally = field(default_factory=Tally)


def daily_totals(*, days: int, now: datetime | None = None) -> list[DayTotals]:
    """Receipts issued, payment refunds done and ticket tasks failed per day and currency,
    over the last `days` UTC days (today included), newest first. Three queries.
    """
    now = now or timezone.now()
    since = datetime.combine(
        now.astimezone(UTC).date() - timedelta(days=days - 1),
        datetime.min.time(),
        tzinfo=UTC,
    )
    rows: dict[tuple[date, str], DayTotals] = {}

    def row(when: datetime | None, currency: str) -> DayTotals:
        assert when is not None  # the filters above ask for a time at or after `since`
        key = (when.astimezone(UTC).date(), currency)
        if key not in rows:
            rows[key] = DayTotals(day=key[0], currency=currency)
        return rows[key]

    issued = Ticket.objects.filter(receipt_issued_at__gte=since).values_list(
        "receipt_issued_at", "price_currency", "price_amount"
    )
    for when, currency, amount in issued:
        row(when, currency).receipts.add(amount)

    # Tasks have no foreign key to tickets: their dedupe keys name them (tickets.kinds).
    finished = list(
        Task.objects.filter(finished_at__gte=since)
        .filter(
            Q(state=TaskState.FAILED, kind__in=FAILURE_KINDS)
            | Q(state=TaskState.SUCCEEDED, kind=kinds.REFUND_PAYMENT)
        )
        .values_list("finished_at", "dedupe_key", "state")
    )
    owners = {key: kinds.ticket_id_of(key) for _, key, _ in finished if key}
    prices = {
        ticket_id: (currency, amount)
        for ticket_id, currency, amount in Ticket.objects.filter(
            ticket_id__in={t for t in owners.values() if t}
        ).values_list("ticket_id", "price_currency", "price_amount")
    }
    for when, key, state in finished:
        price = prices.get(owners.get(key or "") or "")
        if price is None:
            continue  # its ticket is gone: nothing to count money against
        tally = row(when, price[0])
        (tally.refunds if state == TaskState.SUCCEEDED else tally.failures).add(price[1])
    return sorted(rows.values(), key=lambda r: (r.day, r.currency), reverse=True)


def grand_totals(rows: Iterable[DayTotals]) -> dict[str, DayTotals]:
    """The same tallies over every day, per currency."""
    totals: dict[str, DayTotals] = defaultdict(lambda: DayTotals(day=date.min, currency=""))
    for r in rows:
        total = totals[r.currency]
        total.currency = r.currency
        for name in ("receipts", "refunds", "failures"):
            mine, theirs = getattr(total, name), getattr(r, name)
            mine.count += theirs.count
            mine.amount += theirs.amount
    return dict(sorted(totals.items()))


CSV_COLUMNS = (
    "ticket_id",
    "status",
    "customer_email",
    "amount",
    "currency",
    "booking_id",
    "receipt_number",
    "receipt_issued_at",
    "refund_requested_at",
    "created_at",
)
_CSV_FIELDS = {"amount": "price_amount", "currency": "price_currency"}
# A spreadsheet runs a cell starting with one of these as a formula (CSV injection, OWASP).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class _Echo:
    """A file that hands back what is written, so csv.writer feeds a streaming response."""

    def write(self, value: str) -> str:
        return value


def csv_cell(value: Any) -> str:
    """One cell as text: times in ISO 8601 UTC, money as written, formulas defused with '."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    text = str(value)
    if isinstance(value, str) and text.startswith(_FORMULA_STARTS):
        return "'" + text
    return text


def tickets_csv(tickets: QuerySet[Ticket]) -> Iterator[str]:
    """The header, then one line per ticket, read from the database in chunks."""
    writer = csv.writer(_Echo())
    yield writer.writerow(CSV_COLUMNS)
    fields = [_CSV_FIELDS.get(column, column) for column in CSV_COLUMNS]
    for values in tickets.values_list(*fields).iterator(chunk_size=2000):
        yield writer.writerow([csv_cell(v) for v in values])
