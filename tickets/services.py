"""Writes of the tickets domain: a webhook becomes tickets and outbox tasks in one transaction."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models.functions import Now
from django.utils import timezone

from outbox.services import EnqueuedTask, TaskSpec, enqueue_many
from outbox.sql import insert_ignoring_conflicts
from tickets import kinds
from tickets.models import Ticket, TicketStatus, WebhookDelivery

logger = logging.getLogger(__name__)


class IdempotencyKeyReused(Exception):
    """The Idempotency-Key was already used for a different body."""


class TicketNotFound(Exception):
    pass


@dataclass(frozen=True, slots=True)
class TicketIn:
    ticket_id: str
    status: str
    customer_email: str
    amount: Decimal
    currency: str
    booking_id: str = ""


@dataclass(frozen=True, slots=True)
class IntakeAnswer:
    body: dict[str, Any]
    correlation_id: str
    replayed: bool


def body_hash(data: Any) -> str:
    """Hash of the parsed body, so key order and whitespace do not make a repeat look new."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def tickets_status_receive(
    *,
    idempotency_key: str,
    body_digest: str,
    tickets: Sequence[TicketIn],
    correlation_id: str,
) -> IntakeAnswer:
    """Record tickets, their outbox tasks and the delivery, all or nothing.

    A repeat of a delivery (same key, same body) returns the first answer and writes nothing;
    the same key with another body raises IdempotencyKeyReused.
    """
    with transaction.atomic():
        # On PostgreSQL a concurrent delivery with the same key blocks here until the first
        # commits, then reads its answer: the unique key, not a prior read, decides.
        delivery, created = WebhookDelivery.objects.get_or_create(
            idempotency_key=idempotency_key,
            defaults={"body_hash": body_digest, "correlation_id": correlation_id},
        )
        if not created:
            if delivery.body_hash != body_digest:
                raise IdempotencyKeyReused(
                    f"Idempotency-Key {idempotency_key!r} was already used with a different body."
                )
            return IntakeAnswer(delivery.response, delivery.correlation_id, replayed=True)

        visited = _upsert_tickets(tickets)
        specs = _effects(tickets, visited, correlation_id)
        created_tasks = enqueue_many(specs)
        body = _answer(tickets, visited, created_tasks, correlation_id)
        delivery.response = body
        delivery.save(update_fields=["response"])
    return IntakeAnswer(body, correlation_id, replayed=False)


def _upsert_tickets(tickets: Sequence[TicketIn]) -> dict[str, list[str]]:
    """Apply the state machine; returns, per ticket id, the states it held in this request."""
    first: dict[str, TicketIn] = {}
    for ticket in tickets:
        first.setdefault(ticket.ticket_id, ticket)
    # Sorted, so two deliveries touching the same tickets lock them in the same order.
    ids = sorted(first)
    now = timezone.now()
    insert_ignoring_conflicts(
        Ticket,
        [
            {
                "ticket_id": t.ticket_id,
                "status": t.status,
                "customer_email": t.customer_email,
                "price_amount": t.amount,
                "price_currency": t.currency,
                "booking_id": t.booking_id,
                "receipt_number": "",
                "created_at": now,
                "updated_at": now,
            }
            for t in (first[i] for i in ids)
        ],
        conflict_field="ticket_id",
        returning=["id"],
    )
    current = dict(
        Ticket.objects.select_for_update()
        .filter(ticket_id__in=ids)
        .order_by("ticket_id")
        .values_list("ticket_id", "status")
    )
    visited: dict[str, list[str]] = {tid: [status] for tid, status in current.items()}
    for ticket in tickets:
        state = current[ticket.ticket_id]
        if ticket.status == state:
            continue
        if state == TicketStatus.CONFIRMED and ticket.status == TicketStatus.CANCELED:
            current[ticket.ticket_id] = TicketStatus.CANCELED
            visited[ticket.ticket_id].append(TicketStatus.CANCELED)
        else:
            logger.info(
                "ticket %s is canceled; a later %s changes nothing", ticket.ticket_id, ticket.status
            )
    to_cancel = [tid for tid, states in visited.items() if len(states) > 1]
    if to_cancel:
        Ticket.objects.filter(ticket_id__in=to_cancel, status=TicketStatus.CONFIRMED).update(
            status=TicketStatus.CANCELED, updated_at=Now()
        )
    return visited


def _effects(
    tickets: Sequence[TicketIn], visited: dict[str, list[str]], correlation_id: str
) -> list[TaskSpec]:
    specs: list[TaskSpec] = []
    seen: set[str] = set()
    for ticket in tickets:
        if ticket.ticket_id in seen:
            continue
        seen.add(ticket.ticket_id)
        states = visited[ticket.ticket_id]
        if TicketStatus.CONFIRMED in states:
            specs.append(kinds.issue_receipt_spec(ticket, correlation_id))
            specs.append(kinds.sheet_row_spec(kinds.PRINT_SHEET, ticket, correlation_id))
        if TicketStatus.CANCELED in states:
            specs.append(kinds.sheet_row_spec(kinds.REFUND_SHEET, ticket, correlation_id))
    return specs


def _answer(
    tickets: Sequence[TicketIn],
    visited: dict[str, list[str]],
    created: list[EnqueuedTask],
    correlation_id: str,
) -> dict[str, Any]:
    return {
        "correlation_id": correlation_id,
        "tickets": [{"ticket_id": tid, "status": states[-1]} for tid, states in visited.items()],
        "tasks": [{"id": task.id, "kind": task.kind} for task in created],
    }


def ticket_refund_request(*, ticket_id: str, correlation_id: str) -> list[EnqueuedTask]:
    """Void the receipt and refund the payment, once per ticket however often it is asked."""
    with transaction.atomic():
        ticket = Ticket.objects.select_for_update().filter(ticket_id=ticket_id).first()
        if ticket is None:
            raise TicketNotFound(f"ticket {ticket_id!r} is not known")
        if ticket.refund_requested_at is None:
            ticket.refund_requested_at = timezone.now()
            ticket.save(update_fields=["refund_requested_at", "updated_at"])
        return enqueue_many(kinds.refund_specs(ticket, correlation_id))


def ticket_receipt_record(*, ticket_id: str, number: str, issued_at: Any) -> None:
    Ticket.objects.filter(ticket_id=ticket_id).update(
        receipt_number=number, receipt_issued_at=issued_at, updated_at=Now()
    )
