"""The webhook body through DRF's serializer: the path of every body the fast path does not
take."""

from __future__ import annotations

import logging
import re
from decimal import Decimal
from typing import Any

from django.conf import settings
from rest_framework import serializers

from outbox.plaintext import describe, first_control_character
from tickets.intake.validation import (
    CURRENCIES,
    TICKET_ID_MAX_LENGTH,
    amount_error,
    fast_tickets,
    ticket_id_error,
)
from tickets.models import TicketStatus
from tickets.ticket_in import TicketIn

logger = logging.getLogger(__name__)


# ASCII digits, at most two decimals: "50", "50.5", "50.50". Decimal() alone also takes
# "-0" (stored 0.00 but sent on as "-0.00"), "١٢" (Arabic-Indic digits, read as 12),
# "5e1", "+50" and padding; none is how a price is written, so each is refused.
_AMOUNT = re.compile(r"[0-9]+(?:\.[0-9]{1,2})?")


def plain_text_error(value: str) -> str | None:
    """Why `value` is not plain text (it holds a control character), or None."""
    char = first_control_character(value)
    if char is None:
        return None
    return f"must be plain text: {describe(char)} is a control character"


class PlainTextField(serializers.CharField):
    """An identifier: refused whole when it holds a control character anywhere.

    CharField trims only the ends, and only whitespace, so `t-1\\nforged` would reach the
    database and the logs; checked before trimming, so a trailing one is refused too.
    """

    def run_validation(self, data: Any = serializers.empty) -> Any:
        if isinstance(data, str) and (reason := plain_text_error(data)) is not None:
            raise serializers.ValidationError(reason)
        return super().run_validation(data)

    def to_internal_value(self, data: Any) -> str:
        # CharField takes numbers too: 100 was stored as "100", 1e2 as "100.0", 1e309 as
        # "inf". An id is what the sender wrote, so it must arrive as a string.
        if not isinstance(data, str):
            raise serializers.ValidationError(ticket_id_error(data) or "must be a JSON string")
        return super().to_internal_value(data)


class TicketIdField(PlainTextField):
    """A ticket id: the rule of tickets.intake.validation.ticket_id_error, after trimming."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(max_length=TICKET_ID_MAX_LENGTH, allow_blank=False, **kwargs)
        self.validators.append(_ticket_id_validator)


def _ticket_id_validator(value: str) -> None:
    if (reason := ticket_id_error(value)) is not None:
        raise serializers.ValidationError(reason)


class DecimalStringField(serializers.DecimalField):
    """A decimal that must arrive as a canonical string: money never travels as a JSON float.

    What is stored and what the APIs are sent is then the same two-decimal string.
    """

    def to_internal_value(self, data: Any) -> Decimal:
        if not isinstance(data, str):
            raise serializers.ValidationError('must be a decimal string such as "50.00"')
        if not _AMOUNT.fullmatch(data):
            raise serializers.ValidationError(
                'must be ASCII digits with at most two decimals, such as "50" or "50.00" '
                "(no sign, exponent or spaces)"
            )
        return super().to_internal_value(data)


class PriceSerializer(serializers.Serializer):
    amount = DecimalStringField(max_digits=12, decimal_places=2, min_value=Decimal("0"))
    currency = serializers.CharField(required=False, default="USD")

    def validate_currency(self, value: str) -> str:
        if value not in CURRENCIES:
            raise serializers.ValidationError(
                "must be an ISO 4217 currency code such as EUR (capital letters)"
            )
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if (reason := amount_error(attrs["amount"], attrs["currency"])) is not None:
            raise serializers.ValidationError({"amount": [reason]})
        return attrs


class TicketSerializer(serializers.Serializer):
    ticket_id = TicketIdField()
    status = serializers.ChoiceField(choices=TicketStatus.values)
    customer_email = serializers.EmailField(max_length=254)
    price = PriceSerializer()
    booking_id = PlainTextField(max_length=255, required=False, allow_blank=True, allow_null=True)


class TicketsStatusRequest(serializers.Serializer):
    tickets = TicketSerializer(many=True, allow_empty=False)

    class Meta:
        ref_name = "TicketsStatusRequest"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Read per request; DRF counts the list before validating any ticket (the stubs
        # lack ListSerializer.max_length).
        tickets = self.fields["tickets"]
        assert isinstance(tickets, serializers.ListSerializer)
        tickets.max_length = settings.WEBHOOK_MAX_TICKETS  # type: ignore[attr-defined]


def flatten_errors(detail: Any, path: str = "") -> list[dict[str, str]]:
    """DRF's nested errors as a flat list naming each field: `tickets[1].price.amount`."""
    if isinstance(detail, dict):
        out = []
        for key, value in detail.items():
            if key == "non_field_errors":
                name = path
            elif isinstance(key, int):
                name = f"{path}[{key}]"
            else:
                name = f"{path}.{key}" if path else str(key)
            out += flatten_errors(value, name)
        return out
    if isinstance(detail, list):
        if all(isinstance(item, str) for item in detail):
            return [{"field": path or "body", "message": str(item)} for item in detail]
        out = []
        for index, item in enumerate(detail):
            out += flatten_errors(item, f"{path}[{index}]")
        return out
    return [{"field": path or "body", "message": str(detail)}]


def validate_tickets(data: Any) -> tuple[list[TicketIn], list[dict[str, str]]]:
    """The webhook body's tickets, or its errors by field.

    A plainly valid body skips DRF (tickets/intake/validation.py: 12 ms of a 100-ticket
    request); any other is the serializer's to accept or refuse, so errors are its own.
    """
    tickets = fast_tickets(data, max_tickets=settings.WEBHOOK_MAX_TICKETS)
    if tickets is not None:
        return tickets, []
    return validate_with_serializer(data)


def validate_with_serializer(data: Any) -> tuple[list[TicketIn], list[dict[str, str]]]:
    """The webhook body through DRF: its tickets, or its errors flattened by field."""
    serializer = TicketsStatusRequest(data=data)
    if not serializer.is_valid():
        return [], flatten_errors(serializer.errors)
    tickets = [
        TicketIn(
            ticket_id=t["ticket_id"],
            status=t["status"],
            customer_email=t["customer_email"],
            amount=t["price"]["amount"],
            currency=t["price"]["currency"],
            booking_id=t.get("booking_id") or "",
        )
        for t in serializer.validated_data["tickets"]
    ]
    return tickets, []
