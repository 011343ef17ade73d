"""Reads of the tickets domain."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tickets.models import Ticket, TicketStatus

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
