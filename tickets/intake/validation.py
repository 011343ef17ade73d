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

import iso4217
from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from outbox.plaintext import describe, first_control_character
from tickets.models import TicketStatus
from tickets.ticket_in import TicketIn

# What a ticket id may be: the one rule for every place an id arrives (the webhook body, the
# path of PUT /ticket-refund/{ticket_id} and of GET /api/tickets/{ticket_id}), so an id the
# webhook stores is always one a refund can name, and an id a path holds is checked before
# any query sees it. The OpenAPI schema is derived from these constants.
TICKET_ID_MAX_LENGTH = 255
# A path segment cannot hold `/` (Django decodes %2F before routing, so /ticket-refund/A%2F1
# never reaches the view), and browsers and several proxies read `\` as `/`.
TICKET_ID_FORBIDDEN_CHARACTERS = "/\\"
# Dot-segments (RFC 3986 5.2.4): clients resolve /ticket-refund/.. to / before sending it.
TICKET_ID_RESERVED = frozenset({".", ".."})
# The structural rules as a pattern, for the schema; the plain-text rule (no character of
# outbox.plaintext.CONTROL_CATEGORIES) is not expressible portably and is in the description.
TICKET_ID_PATTERN = r"^(?!\.{1,2}$)[^/\\]+$"
TICKET_ID_DESCRIPTION = (
    f"A JSON string of 1 to {TICKET_ID_MAX_LENGTH} characters, plain text (no control, "
    "format or line-separator character), without `/` or `\\`, and neither `.` nor `..`: "
    "every id the webhook accepts can be named in a URL path."
)


def ticket_id_error(value: object) -> str | None:
    """Why `value` cannot be a ticket id, or None when it can.

    The webhook trims the ends of an id first (DRF's CharField does); a path is taken as is.
    """
    if not isinstance(value, str):
        return f"must be a JSON string, not {_json_type(value)}"
    if (char := first_control_character(value)) is not None:
        return f"must be plain text: {describe(char)} is a control character"
    if not value:
        return "must not be blank"
    if len(value) > TICKET_ID_MAX_LENGTH:
        return f"must be at most {TICKET_ID_MAX_LENGTH} characters"
    if forbidden := next((c for c in value if c in TICKET_ID_FORBIDDEN_CHARACTERS), None):
        return f"must not contain {forbidden!r}: a URL path could not name the ticket"
    if value in TICKET_ID_RESERVED:
        return f"must not be {value!r}: a URL path could not name the ticket"
    return None


def _json_type(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if value is None:
        return "null"
    return "an array" if isinstance(value, list) else "an object"


# ISO 4217, as published by its maintenance agency (SIX) and shipped by the `iso4217`
# package (its table's date: iso4217.__published__). Only codes with a minor unit are money a
# ticket can be priced in: the `N.A.` ones are gold and other metals, the SDR, bond-market
# units, XTS (codes for testing) and XXX ("no currency").
CURRENCY_MINOR_UNITS: dict[str, int] = {
    currency.code: currency.exponent
    for currency in iso4217.Currency
    if currency.exponent is not None
}
CURRENCIES = frozenset(CURRENCY_MINOR_UNITS)


def amount_error(amount: Decimal, currency: str) -> str | None:
    """Why `amount` is no price in `currency` (already known to be ISO 4217), or None.

    Zero is refused: every confirmed ticket gets a receipt and may be refunded through the
    Payments API, and neither has a meaning for nothing paid (docs/API.md).
    """
    if amount <= 0:
        return "must be more than 0"
    if CURRENCY_MINOR_UNITS.get(currency) == 0 and amount != amount.to_integral_value():
        return f"must be a whole number: {currency} has no minor unit"
    return None


_STATUSES = frozenset(TicketStatus.values)
# As tickets.intake.views: ASCII digits, at most two decimals; the whole part (leading zeros aside)
# at most 10 digits, as max_digits=12 with decimal_places=2 allow.
_AMOUNT = re.compile(r"0*([0-9]{1,10})(?:\.[0-9]{1,2})?|0+(?:\.[0-9]{1,2})?")
_CENT = Decimal("0.01")
_MAX_ID = TICKET_ID_MAX_LENGTH
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
    if ticket_id is not None and ticket_id_error(ticket_id) is not None:
        return None
    status = item.get("status")
    email = _plain(item.get("customer_email"), max_length=_MAX_EMAIL)
    price = item.get("price")
    if not ticket_id or type(status) is not str or status not in _STATUSES or not email:
        return None
    if type(price) is not dict:
        return None
    amount = _amount(price.get("amount"))
    currency = _currency(price)
    if amount is None or currency is None or amount_error(amount, currency) is not None:
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
    return value if value in CURRENCIES else None
