"""Reads of the tickets domain."""

from __future__ import annotations

from typing import Any

from tickets.models import Ticket, TicketStatus


def active_tickets() -> list[dict[str, Any]]:
    """Tickets that are not canceled, in the contract's shape (GET /tickets)."""
    rows = (
        Ticket.objects.exclude(status=TicketStatus.CANCELED)
        .order_by("id")
        .values_list("ticket_id", "customer_email", "price_amount", "price_currency")
    )
    return [
        {
            "ticket_id": ticket_id,
            "customer_email": email,
            "price": {"amount": f"{amount:.2f}", "currency": currency},
        }
        for ticket_id, email, amount, currency in rows.iterator(chunk_size=2000)
    ]
