"""What the reconcile reads from our own records: tickets and their tasks, in chunks.

Everything is read by keys, a chunk at a time (the tickets a page of rows names, the tasks of a
chunk of tickets), so memory holds one chunk, never the tables.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

from django.db import connection
from django.db.models import BooleanField, Model, Q, QuerySet
from django.db.models.expressions import RawSQL

from outbox.models import Task
from tickets import kinds
from tickets.models import Ticket

CHUNK = 2000
M = TypeVar("M", bound=Model)


@dataclass(frozen=True, slots=True)
class TicketFacts:
    pk: int
    ticket_id: str
    status: str
    customer_email: str
    amount: Decimal
    currency: str
    booking_id: str
    receipt_number: str
    refund_requested_at: datetime | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class TaskFacts:
    id: int
    dedupe_key: str
    state: str
    attempts: int
    finished_at: datetime | None
    result: Any
    payload: Any
    last_error: str

    def evidence(self) -> dict[str, Any]:
        """The task as the report shows it."""
        return {
            "id": self.id,
            "state": self.state,
            "attempts": self.attempts,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "result": self.result,
            "last_error": self.last_error[:300],
        }


_TICKET_FIELDS = (
    "pk",
    "ticket_id",
    "status",
    "customer_email",
    "price_amount",
    "price_currency",
    "booking_id",
    "receipt_number",
    "refund_requested_at",
    "created_at",
    "updated_at",
)


@dataclass(frozen=True, slots=True)
class Scope:
    """Which tickets a run checks: created or changed in [since, until), or those named."""

    since: datetime | None = None
    until: datetime | None = None
    ticket_ids: tuple[str, ...] = ()

    def holds(self, ticket: TicketFacts) -> bool:
        if self.ticket_ids:
            return ticket.ticket_id in self.ticket_ids
        return self._in_window(ticket.created_at) or self._in_window(ticket.updated_at)

    def _in_window(self, moment: datetime) -> bool:
        if self.since is not None and moment < self.since:
            return False
        return self.until is None or moment < self.until

    def query(self) -> Q:
        if self.ticket_ids:
            return Q(ticket_id__in=self.ticket_ids)
        created, updated = Q(), Q()
        if self.since is not None:
            created &= Q(created_at__gte=self.since)
            updated &= Q(updated_at__gte=self.since)
        if self.until is not None:
            created &= Q(created_at__lt=self.until)
            updated &= Q(updated_at__lt=self.until)
        return created | updated


def _any_of(queryset: QuerySet[M], column: str, values: Sequence[str]) -> QuerySet[M]:
    """`column IN values`, as one array parameter on PostgreSQL (`= ANY(%s)`).

    An IN of 2,000 placeholders costs psycopg more to parse on our side (it splits the query
    text at each one, uncached for a query that long) than the query costs the server: most of
    a 100,000-ticket reconcile's time on PostgreSQL was that (docs/BENCHMARKS.md).
    """
    if connection.vendor != "postgresql":
        return queryset.filter(**{f"{column}__in": values})
    table = connection.ops.quote_name(queryset.model._meta.db_table)
    name = connection.ops.quote_name(column)
    return queryset.filter(
        RawSQL(f"{table}.{name} = ANY(%s)", (list(values),), output_field=BooleanField())
    )


def tickets_by_id(ticket_ids: Sequence[str]) -> dict[str, TicketFacts]:
    found: dict[str, TicketFacts] = {}
    for start in range(0, len(ticket_ids), CHUNK):
        chunk = ticket_ids[start : start + CHUNK]
        tickets = _any_of(Ticket.objects.all(), "ticket_id", chunk)
        for values in tickets.values_list(*_TICKET_FIELDS):
            ticket = TicketFacts(*values)
            found[ticket.ticket_id] = ticket
    return found


def tickets_in(scope: Scope, *, chunk: int = CHUNK) -> Iterator[list[TicketFacts]]:
    """The tickets in scope, a chunk at a time, by primary key (keyset: each chunk one query)."""
    after = 0
    query = Ticket.objects.filter(scope.query()).order_by("pk")
    while True:
        rows = list(query.filter(pk__gt=after).values_list(*_TICKET_FIELDS)[:chunk])
        if not rows:
            return
        yield [TicketFacts(*values) for values in rows]
        after = rows[-1][0]


def tasks_of(tickets: Sequence[TicketFacts]) -> dict[str, TaskFacts]:
    """The tasks of these tickets' effects, by dedupe key (a pruned one is simply absent)."""
    keys = [key for ticket in tickets for key in kinds.dedupe_keys(ticket.ticket_id)]
    found: dict[str, TaskFacts] = {}
    for start in range(0, len(keys), CHUNK):
        rows = _any_of(Task.objects.all(), "dedupe_key", keys[start : start + CHUNK]).values_list(
            "id",
            "dedupe_key",
            "state",
            "attempts",
            "finished_at",
            "result",
            "payload",
            "last_error",
        )
        for pk, key, state, attempts, finished_at, result, payload, error in rows:
            found[str(key)] = TaskFacts(
                pk, str(key), state, attempts, finished_at, result, payload, error
            )
    return found
