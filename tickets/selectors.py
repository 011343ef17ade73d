"""Reads of the tickets domain."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db.models import QuerySet

from outbox.correlation import clean_correlation_id
from outbox.history import with_history
from outbox.models import Task
from tickets import kinds
from tickets.models import Ticket, TicketStatus, WebhookDelivery

# GET /tickets answers at most this many tickets at once (docs/SECURITY.md).
MAX_PAGE_SIZE = 1000


@dataclass(frozen=True, slots=True)
class TicketPage:
    rows: list[dict[str, Any]]
    # Where the next page starts (`?cursor=`), or None after the last page.
    next_cursor: int | None


def active_tickets_page(*, limit: int, cursor: int = 0) -> TicketPage:
    """Up to `limit` tickets that are not canceled, in the contract's shape (GET /tickets).

    Keyset pagination on the primary key: a page costs the same however deep it is, and a
    ticket stored while a client pages through is neither skipped nor shown twice. The
    cursor is the id of the last ticket of the previous page.
    """
    limit = max(1, min(limit, MAX_PAGE_SIZE))
    rows = list(
        Ticket.objects.exclude(status=TicketStatus.CANCELED)
        .filter(id__gt=cursor)
        .order_by("id")
        .values_list("id", "ticket_id", "customer_email", "price_amount", "price_currency")[
            : limit + 1
        ]
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return TicketPage(
        rows=[
            {
                "ticket_id": ticket_id,
                "customer_email": email,
                "price": {"amount": f"{amount:.2f}", "currency": currency},
            }
            for _, ticket_id, email, amount, currency in rows
        ],
        next_cursor=rows[-1][0] if more else None,
    )


def ticket_tasks(
    ticket_ids: Iterable[str], *, with_attempts: bool = False
) -> dict[str, list[Task]]:
    """The outbox tasks each ticket caused, by id; one query for all of them (two with the
    attempts, in the order they happened).

    Tasks have no foreign key to tickets (the outbox knows nothing of them): they are found by
    the dedupe keys of every effect in `kinds.EFFECTS`, on the unique index, so a new effect's
    tasks show up here without a change.
    """
    owner: dict[str, str] = {}
    found: dict[str, list[Task]] = {}
    for ticket_id in ticket_ids:
        found[ticket_id] = []
        for key in kinds.dedupe_keys(ticket_id):
            owner[key] = ticket_id
    if not owner:
        return found
    tasks: QuerySet[Task] = Task.objects.filter(dedupe_key__in=list(owner)).order_by("id")
    if with_attempts:
        # Read for `outbox.history.history`: the Attempt rows, and the success on the task.
        tasks = with_history(tasks)
    for task in tasks:
        assert task.dedupe_key is not None
        found[owner[task.dedupe_key]].append(task)
    return found


def tickets_by_correlation_id(correlation_id: str) -> set[str]:
    """The ids of the tickets a Correlation-ID touched: the webhooks that carried it, and the
    tasks it was copied onto (a refund requested by hand has no webhook). Two queries; none
    when the text cannot be a Correlation-ID.
    """
    if clean_correlation_id(correlation_id) != correlation_id:
        return set()
    found: set[str] = set()
    keys = Task.objects.filter(correlation_id=correlation_id).values_list("dedupe_key", flat=True)
    for key in keys:
        ticket_id = kinds.ticket_id_of(key) if key else None
        if ticket_id is not None:
            found.add(ticket_id)
    answers = WebhookDelivery.objects.filter(correlation_id=correlation_id).values_list(
        "response", flat=True
    )
    for answer in answers:
        entries = answer.get("tickets", []) if isinstance(answer, dict) else []
        found.update(
            str(e["ticket_id"]) for e in entries if isinstance(e, dict) and "ticket_id" in e
        )
    return found
