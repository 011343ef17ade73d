"""A ticket as a message states it: what the intake stores and the effects are built from."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class TicketIn:
    ticket_id: str
    status: str
    customer_email: str
    amount: Decimal
    currency: str
    booking_id: str = ""
