"""The outbox task kinds of the tickets domain: names, dedupe keys and payloads in one place."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from outbox import TaskSpec

if TYPE_CHECKING:
    from tickets.models import Ticket
    from tickets.services import TicketIn

ISSUE_RECEIPT = "tickets.issue_receipt"
APPEND_ROW = "tickets.append_sheet_row"
VOID_RECEIPT = "tickets.void_receipt"
REFUND_PAYMENT = "tickets.refund_payment"

PRINT_SHEET = "tickets-to-print"
REFUND_SHEET = "tickets-to-refund"


# Fixed for ever: the idempotency keys sent to the APIs derive from it.
_EFFECT_NAMESPACE = uuid.UUID("6f1c1f4e-7d0a-4c57-9a5e-2f0b8d3c9e11")


def effect_idempotency_key(dedupe_key: str) -> str:
    """The key the APIs see for one effect: a function of the effect's identity (ticket and
    effect) alone, so a task re-created by hand, or after a prune, sends the same key."""
    return uuid.uuid5(_EFFECT_NAMESPACE, dedupe_key).hex


def receipt_dedupe_key(ticket_id: str) -> str:
    return f"receipt:{ticket_id}"


def sheet_dedupe_key(sheet: str, ticket_id: str) -> str:
    return f"sheet:{sheet}:{ticket_id}"


def void_dedupe_key(ticket_id: str) -> str:
    return f"void:{ticket_id}"


def refund_dedupe_key(ticket_id: str) -> str:
    return f"refund:{ticket_id}"


def dedupe_keys(ticket_id: str) -> list[str]:
    """The dedupe key of every task a ticket can cause, whatever its status.

    Tasks have no foreign key to tickets (the outbox knows nothing of them): these keys, on
    the unique index, are how a ticket's tasks are found.
    """
    return [
        receipt_dedupe_key(ticket_id),
        sheet_dedupe_key(PRINT_SHEET, ticket_id),
        sheet_dedupe_key(REFUND_SHEET, ticket_id),
        void_dedupe_key(ticket_id),
        refund_dedupe_key(ticket_id),
    ]


def issue_receipt_spec(ticket: TicketIn, correlation_id: str) -> TaskSpec:
    return TaskSpec(
        kind=ISSUE_RECEIPT,
        payload={
            "ticket_id": ticket.ticket_id,
            "amount": str(ticket.amount),
            "currency": ticket.currency,
        },
        dedupe_key=receipt_dedupe_key(ticket.ticket_id),
        idempotency_key=effect_idempotency_key(receipt_dedupe_key(ticket.ticket_id)),
        correlation_id=correlation_id,
    )


def sheet_row_spec(sheet: str, ticket: TicketIn, correlation_id: str) -> TaskSpec:
    return TaskSpec(
        kind=APPEND_ROW,
        payload={
            "sheet": sheet,
            "ticket_id": ticket.ticket_id,
            "customer_email": ticket.customer_email,
            "amount": str(ticket.amount),
            "currency": ticket.currency,
        },
        dedupe_key=sheet_dedupe_key(sheet, ticket.ticket_id),
        idempotency_key=effect_idempotency_key(sheet_dedupe_key(sheet, ticket.ticket_id)),
        correlation_id=correlation_id,
    )


def refund_specs(ticket: Ticket, correlation_id: str) -> list[TaskSpec]:
    payload = {"ticket_id": ticket.ticket_id, "reason": "refund requested"}
    return [
        TaskSpec(
            kind=VOID_RECEIPT,
            payload=payload,
            dedupe_key=void_dedupe_key(ticket.ticket_id),
            idempotency_key=effect_idempotency_key(void_dedupe_key(ticket.ticket_id)),
            correlation_id=correlation_id,
        ),
        TaskSpec(
            kind=REFUND_PAYMENT,
            payload=payload,
            dedupe_key=refund_dedupe_key(ticket.ticket_id),
            idempotency_key=effect_idempotency_key(refund_dedupe_key(ticket.ticket_id)),
            correlation_id=correlation_id,
        ),
    ]
