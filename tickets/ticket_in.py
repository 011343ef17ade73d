"""A ticket as a message states it: what the intake stores and the effects are built from."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tickets.models import Ticket


@dataclass(frozen=True, slots=True)
class TicketIn:
    ticket_id: str
    status: str
    customer_email: str
    amount: Decimal
    currency: str
    booking_id: str = ""

    @classmethod
    def stored(cls, ticket: Ticket) -> TicketIn:
        """The ticket as this service holds it (the effects of a refund or a fix are built
        from what was stored, not from a message)."""
        return cls(
            ticket.ticket_id,
            ticket.status,
            ticket.customer_email,
            ticket.price_amount,
            ticket.price_currency,
            ticket.booking_id,
        )
