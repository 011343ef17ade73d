"""The effects of the tickets domain: one table, `EFFECTS`, of everything a ticket can cause.

Each effect is one outbox task: its kind, the transition that causes it, its payload and its
dedupe key. The intake and the refund enqueue from this table, and a ticket's tasks are found
from it (tasks have no foreign key to tickets: the outbox knows nothing of them), so a new
effect is one new row here and nothing else can miss it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from outbox import TaskSpec
from tickets.models import TicketStatus
from tickets.ticket_in import TicketIn

ISSUE_RECEIPT = "tickets.issue_receipt"
APPEND_ROW = "tickets.append_sheet_row"
VOID_RECEIPT = "tickets.void_receipt"
REFUND_PAYMENT = "tickets.refund_payment"

PRINT_SHEET = "tickets-to-print"
REFUND_SHEET = "tickets-to-refund"

# The transitions that cause effects: a ticket entering a status, or a refund being asked.
ON_CONFIRMED = TicketStatus.CONFIRMED.value
ON_CANCELED = TicketStatus.CANCELED.value
ON_REFUND_REQUESTED = "refund_requested"

REFUND_REASON = "refund requested"

# Fixed for ever: the idempotency keys sent to the APIs derive from it.
_EFFECT_NAMESPACE = uuid.UUID("6f1c1f4e-7d0a-4c57-9a5e-2f0b8d3c9e11")


def effect_idempotency_key(dedupe_key: str) -> str:
    """The key the APIs see for one effect: a function of the effect's identity (ticket and
    effect) alone, so a task re-created by hand, or after a prune, sends the same key."""
    return uuid.uuid5(_EFFECT_NAMESPACE, dedupe_key).hex


@dataclass(frozen=True, slots=True)
class Effect:
    """One thing a ticket causes outside, done once by one outbox task.

    `name` is also the dedupe key's prefix (`receipt:T`, `sheet:<sheet>:T`), so the admin
    labels a task by it. The dedupe key, and the idempotency key derived from it, must never
    change for an existing effect: tasks already stored and the APIs' records depend on them.
    """

    name: str
    kind: str
    on: str
    payload: Callable[[TicketIn], dict[str, Any]]

    def dedupe_key(self, ticket_id: str) -> str:
        return f"{self.name}:{ticket_id}"

    def spec(self, ticket: TicketIn, correlation_id: str) -> TaskSpec:
        dedupe_key = self.dedupe_key(ticket.ticket_id)
        return TaskSpec(
            kind=self.kind,
            payload=self.payload(ticket),
            dedupe_key=dedupe_key,
            idempotency_key=effect_idempotency_key(dedupe_key),
            correlation_id=correlation_id,
        )


def _receipt_payload(ticket: TicketIn) -> dict[str, Any]:
    return {
        "ticket_id": ticket.ticket_id,
        "amount": str(ticket.amount),
        "currency": ticket.currency,
    }


def _sheet_row_payload(sheet: str) -> Callable[[TicketIn], dict[str, Any]]:
    def payload(ticket: TicketIn) -> dict[str, Any]:
        return {
            "sheet": sheet,
            "ticket_id": ticket.ticket_id,
            "customer_email": ticket.customer_email,
            "amount": str(ticket.amount),
            "currency": ticket.currency,
        }

    return payload


# In the void's payload: whether, when the refund was asked for, a receipt could exist (its
# task had tried, or was trying). Written in the refund's transaction, so it outlives a prune
# of the receipt task.
RECEIPT_MAY_EXIST = "receipt_may_exist"

# In a sheet row's payload: read the sheet before the first append too. A reconcile's fix of a
# missing row whose old task was pruned sets it, so a row that came back since is not doubled.
READ_SHEET_FIRST = "read_sheet_first"


def _refund_payload(ticket: TicketIn) -> dict[str, Any]:
    return {"ticket_id": ticket.ticket_id, "reason": REFUND_REASON}


RECEIPT = Effect("receipt", ISSUE_RECEIPT, ON_CONFIRMED, _receipt_payload)
PRINT_ROW = Effect(
    f"sheet:{PRINT_SHEET}", APPEND_ROW, ON_CONFIRMED, _sheet_row_payload(PRINT_SHEET)
)
REFUND_ROW = Effect(
    f"sheet:{REFUND_SHEET}", APPEND_ROW, ON_CANCELED, _sheet_row_payload(REFUND_SHEET)
)
VOID = Effect("void", VOID_RECEIPT, ON_REFUND_REQUESTED, _refund_payload)
PAYMENT_REFUND = Effect("refund", REFUND_PAYMENT, ON_REFUND_REQUESTED, _refund_payload)

# In the order a ticket's tasks are enqueued for one transition.
EFFECTS: tuple[Effect, ...] = (RECEIPT, PRINT_ROW, REFUND_ROW, VOID, PAYMENT_REFUND)


def dedupe_keys(ticket_id: str) -> list[str]:
    """The dedupe key of every task a ticket can cause, whatever its status."""
    return [effect.dedupe_key(ticket_id) for effect in EFFECTS]


def ticket_id_of(dedupe_key: str) -> str | None:
    """The ticket a task's dedupe key belongs to, or None when no effect made it."""
    for effect in EFFECTS:
        prefix = f"{effect.name}:"
        # `sheet:tickets-to-print:T` also starts with no other effect's prefix: names differ.
        if dedupe_key.startswith(prefix) and len(dedupe_key) > len(prefix):
            return dedupe_key[len(prefix) :]
    return None


def specs_on(entered: Sequence[str], ticket: TicketIn, correlation_id: str) -> list[TaskSpec]:
    """The tasks of the effects these transitions cause, in the order of `EFFECTS`."""
    return [effect.spec(ticket, correlation_id) for effect in EFFECTS if effect.on in entered]


def receipt_dedupe_key(ticket_id: str) -> str:
    return RECEIPT.dedupe_key(ticket_id)


def sheet_dedupe_key(sheet: str, ticket_id: str) -> str:
    return f"sheet:{sheet}:{ticket_id}"


def void_dedupe_key(ticket_id: str) -> str:
    return VOID.dedupe_key(ticket_id)


def refund_dedupe_key(ticket_id: str) -> str:
    return PAYMENT_REFUND.dedupe_key(ticket_id)
