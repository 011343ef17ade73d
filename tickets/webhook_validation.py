"""The webhook's fast path: the TicketIn list of a body that is plainly valid, else None.

DRF's serializer costs about 0.12 ms a ticket (field objects, nested run_validation, error
plumbing): 12 ms of a 100-ticket webhook. A seller's well-formed body is the hot path, so it
is checked here by hand, accepting only what it can prove the serializer accepts, with the
same values. Anything else (a bad field, or merely an unusual one such as a number where a
string is expected) returns None and the view runs the serializer, so every refusal and
every error message is DRF's own and cannot drift. The serializer stays the contract and the
OpenAPI schema; tests/tickets/test_webhook_validation.py runs both over a corpus.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from tickets.models import TicketStatus
from tickets.ticket_in import TicketIn

_STATUSES = frozenset(TicketStatus.values)
# As tickets.views: ASCII digits, at most two decimals; the whole part (leading zeros aside)
# at most 10 digits, as max_digits=12 with decimal_places=2 allow.
_AMOUNT = re.compile(r"0*([0-9]{1,10})(?:\.[0-9]{1,2})?|0+(?:\.[0-9]{1,2})?")
_CURRENCY = re.compile(r"[A-Z]{3}")
_CENT = Decimal("0.01")
_MAX_ID = 255
_MAX_EMAIL = 254
_MAX_AMOUNT_CHARS = 64  # DRF refuses over 1,000; a longer one is left to it


def fast_tickets(data: Any, *, max_tickets: int) -> list[TicketIn] | None:
    """The tickets of `data` when it is plainly valid; None to let the serializer decide."""
    if type(data) is not dict:
        return None
    items = data.get("tickets")
    if type(items) is not list or not 1 <= len(items) <= max_tickets:
        return None
    tickets = []
    for item in items:
        ticket = _ticket(item)
        if ticket is None:
            return None
        tickets.append(ticket)
    return tickets


def _ticket(item: Any) -> TicketIn | None:
    if type(item) is not dict:
        return None
    ticket_id = _plain(item.get("ticket_id"))
    status = item.get("status")
    email = _plain(item.get("customer_email"), max_length=_MAX_EMAIL)
    price = item.get("price")
    if not ticket_id or type(status) is not str or status not in _STATUSES or not email:
        return None
    if type(price) is not dict:
        return None
    amount = _amount(price.get("amount"))
    currency = _currency(price)
    if amount is None or currency is None:
        return None
    if "booking_id" in item and (booking := item["booking_id"]) is not None:
        booking_id = _plain(booking, allow_blank=True)
        if booking_id is None:
            return None
    else:
        booking_id = ""
    try:
        validate_email(email)  # the validator DRF's EmailField runs
    except ValidationError:
        return None
    return TicketIn(
        ticket_id=ticket_id,
        status=status,
        customer_email=email,
        amount=amount,
        currency=currency,
        booking_id=booking_id,
    )


def _plain(value: Any, *, max_length: int = _MAX_ID, allow_blank: bool = False) -> str | None:
    """A CharField's value, trimmed, when it is printable (so no control, format, surrogate
    or separator character but the space) and within bounds; else None."""
    if type(value) is not str or not value.isprintable():
        return None
    value = value.strip()
    if len(value) > max_length or (not value and not allow_blank):
        return None
    return value


def _amount(value: Any) -> Decimal | None:
    if type(value) is not str or len(value) > _MAX_AMOUNT_CHARS:
        return None
    if not _AMOUNT.fullmatch(value):
        return None
    # Exact: at most two decimals, so quantizing to cents adds zeros and never rounds.
    return Decimal(value).quantize(_CENT)


def _currency(price: dict[str, Any]) -> str | None:
    if "currency" not in price:
        return "USD"
    value = price["currency"]
    if type(value) is not str:
        return None
    value = value.strip()
    return value if _CURRENCY.fullmatch(value) else None
