"""Writes of the tickets domain: a webhook becomes tickets and outbox tasks in one transaction."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from django.db import connection, transaction
from django.db.models import Field, Q
from django.db.models.functions import Now
from django.utils import timezone

from outbox import (
    EnqueuedTask,
    TaskSpec,
    enqueue_many,
    insert_ignoring_conflicts,
    tasks_cancel,
    tracing,
)
from outbox.models import Task, TaskState
from tickets import kinds
from tickets.models import Ticket, TicketStatus, WebhookDelivery, WebhookMessage
from tickets.ticket_in import TicketIn

logger = logging.getLogger(__name__)


class IdempotencyKeyReused(Exception):
    """The Idempotency-Key was already used for a different body."""


class WebhookIdReused(Exception):
    """A signed message's `webhook-id` already processed came back with a different body."""


class TicketNotFound(Exception):
    pass


class TicketCanceled(Exception):
    """A refund asked for a canceled ticket: its refund is the refund sheet's (docs/API.md)."""


@dataclass(frozen=True, slots=True)
class IntakeAnswer:
    body: dict[str, Any]
    # The body as sent on the wire; a repeat answers these very characters (docs/API.md).
    text: str
    correlation_id: str
    replayed: bool


def answer_text(body: dict[str, Any]) -> str:
    """The JSON text of an answer, exactly as DRF's JSONRenderer wrote the first answers
    before the text itself was stored: compact, UTF-8, keys in the order built."""
    text = json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    # As DRF: U+2028/U+2029 are line breaks to JavaScript.
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def stored_answer(delivery: WebhookDelivery) -> str:
    """The first answer of a delivery, character for character.

    Deliveries stored before `response_body` existed have only the JSON column, whose key
    order PostgreSQL does not keep; the answer is rebuilt in the order `_answer` makes it,
    which is the order that first answer had.
    """
    if delivery.response_body:
        return delivery.response_body
    first = delivery.response
    return answer_text(
        {
            "correlation_id": first["correlation_id"],
            "tickets": [
                {"ticket_id": t["ticket_id"], "status": t["status"]} for t in first["tickets"]
            ],
            "tasks": [{"id": t["id"], "kind": t["kind"]} for t in first["tasks"]],
        }
    )


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
    webhook_id: str | None = None,
) -> IntakeAnswer:
    """Record tickets, their outbox tasks and the delivery, all or nothing.

    A repeat of a delivery (same key, same body) returns the first answer and writes nothing;
    the same key with another body raises IdempotencyKeyReused.

    `webhook_id`, a signed message's id, is processed at most once: it is stored in the same
    transaction as the delivery, so either both stay or neither. A replay (the seller's retry
    reuses the id) gets the first answer and writes nothing; the same id with another body
    raises WebhookIdReused.
    """
    span = tracing.internal_span("store tickets", {"tickets.count": len(tickets)})
    with span, transaction.atomic():
        if webhook_id and not _webhook_message_recorded(webhook_id, idempotency_key):
            return _first_answer_to_message(webhook_id, body_digest)
        # On PostgreSQL a concurrent delivery with the same key blocks here until the first
        # commits, then reads its answer: the unique key, not a prior read, decides. One
        # statement where get_or_create took four round trips (SELECT, SAVEPOINT, INSERT,
        # RELEASE), a tenth of a small delivery's time.
        inserted = insert_ignoring_conflicts(
            WebhookDelivery,
            [
                {
                    "idempotency_key": idempotency_key,
                    "body_hash": body_digest,
                    "response": {},
                    "response_body": "",
                    "correlation_id": correlation_id,
                    "received_at": timezone.now(),
                }
            ],
            conflict_field="idempotency_key",
            returning=["id"],
        )
        if not inserted:
            delivery = WebhookDelivery.objects.get(idempotency_key=idempotency_key)
            if delivery.body_hash != body_digest:
                raise IdempotencyKeyReused(
                    f"Idempotency-Key {idempotency_key!r} was already used with a different body."
                )
            return _replay(delivery)

        held = _upsert_tickets(tickets)
        created_tasks = enqueue_many(_effects(held, correlation_id))
        body = _answer(held, created_tasks, correlation_id)
        text = answer_text(body)
        WebhookDelivery.objects.filter(id=inserted[0][0]).update(response=body, response_body=text)
    return IntakeAnswer(body, text, correlation_id, replayed=False)


def _replay(delivery: WebhookDelivery) -> IntakeAnswer:
    return IntakeAnswer(
        delivery.response, stored_answer(delivery), delivery.correlation_id, replayed=True
    )


def _webhook_message_recorded(webhook_id: str, idempotency_key: str) -> bool:
    """Store the message's id; False when it was already there (a replay).

    On PostgreSQL a concurrent replay waits on the unique index until the first commits.
    """
    inserted = insert_ignoring_conflicts(
        WebhookMessage,
        [{"webhook_id": webhook_id, "idempotency_key": idempotency_key, "received_at": None}],
        conflict_field="webhook_id",
        returning=["id"],
        db_now_if_null=("received_at",),
    )
    return bool(inserted)


def _first_answer_to_message(webhook_id: str, body_digest: str) -> IntakeAnswer:
    message = WebhookMessage.objects.get(webhook_id=webhook_id)
    delivery = WebhookDelivery.objects.filter(idempotency_key=message.idempotency_key).first()
    if delivery is None or delivery.body_hash != body_digest:
        raise WebhookIdReused(f"webhook-id {webhook_id!r} was already used with a different body.")
    return _replay(delivery)


@dataclass(slots=True)
class _Held:
    """A ticket as this delivery found or created it, and the states it entered now."""

    stored: TicketIn
    created: bool
    visited: list[str]
    # Refunded through PUT /ticket-refund already: a cancel adds no refund-sheet row.
    refund_requested: bool = False

    @property
    def entered(self) -> list[str]:
        # A new ticket enters its first state; a known one only the states it moves to now.
        return self.visited if self.created else self.visited[1:]


def _upsert_tickets(tickets: Sequence[TicketIn]) -> dict[str, _Held]:
    """Apply the state machine; returns, per ticket id, what it held and entered in this request."""
    first: dict[str, TicketIn] = {}
    for ticket in tickets:
        first.setdefault(ticket.ticket_id, ticket)
    # Sorted, so two deliveries touching the same tickets lock them in the same order.
    ids = sorted(first)
    now = timezone.now()
    inserted = insert_ignoring_conflicts(
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
        returning=["ticket_id"],
    )
    created = {row[0] for row in inserted}
    held: dict[str, _Held] = {}
    for tid, status, email, amount, currency, booking, refund_requested_at in (
        Ticket.objects.select_for_update()
        .filter(ticket_id__in=ids)
        .order_by("ticket_id")
        .values_list(
            "ticket_id",
            "status",
            "customer_email",
            "price_amount",
            "price_currency",
            "booking_id",
            "refund_requested_at",
        )
    ):
        stored = TicketIn(tid, status, email, amount, currency, booking)
        held[tid] = _Held(
            stored=stored,
            created=tid in created,
            visited=[status],
            refund_requested=refund_requested_at is not None,
        )
    for ticket in tickets:
        entry = held[ticket.ticket_id]
        state = entry.visited[-1]
        if ticket.status == state:
            continue
        if state == TicketStatus.CONFIRMED and ticket.status == TicketStatus.CANCELED:
            entry.visited.append(TicketStatus.CANCELED)
            _log_differences(entry.stored, ticket)
        else:
            logger.info(
                "ticket %s is canceled; a later %s changes nothing", ticket.ticket_id, ticket.status
            )
    to_cancel = [tid for tid, entry in held.items() if len(entry.visited) > 1]
    if to_cancel:
        Ticket.objects.filter(ticket_id__in=to_cancel, status=TicketStatus.CONFIRMED).update(
            status=TicketStatus.CANCELED, updated_at=Now()
        )
    return held


def _log_differences(stored: TicketIn, message: TicketIn) -> None:
    """A cancel that disagrees with the stored ticket: the stored ticket wins, and it is said."""
    differing = [
        name
        for name, ours, theirs in (
            ("customer_email", stored.customer_email, message.customer_email),
            ("price.amount", stored.amount, message.amount),
            ("price.currency", stored.currency, message.currency),
        )
        if ours != theirs
    ]
    if differing:
        logger.warning(
            "ticket %s was canceled with a different %s than it was sold with; the refund row "
            "uses the stored ticket",
            stored.ticket_id,
            ", ".join(differing),
        )


def _effects(held: dict[str, _Held], correlation_id: str) -> list[TaskSpec]:
    """One task per effect of a transition this delivery made; none for a state already held,
    so a repeat of an old message finds nothing to do whatever has been pruned since."""
    specs: list[TaskSpec] = []
    for entry in held.values():
        entered = entry.entered
        if entry.refund_requested and kinds.ON_CANCELED in entered:
            # One refund per ticket, by the path that came first: the Payments API refund
            # was asked for already (under this row's lock), so no refund-sheet row.
            logger.info(
                "ticket %s is canceled after its refund was requested: it is refunded through "
                "the Payments API, not put on the refund sheet",
                entry.stored.ticket_id,
            )
            entered = [state for state in entered if state != kinds.ON_CANCELED]
        specs += kinds.specs_on(entered, entry.stored, correlation_id)
    return specs


def _answer(
    held: dict[str, _Held], created: list[EnqueuedTask], correlation_id: str
) -> dict[str, Any]:
    return {
        "correlation_id": correlation_id,
        "tickets": [{"ticket_id": tid, "status": entry.visited[-1]} for tid, entry in held.items()],
        "tasks": [{"id": task.id, "kind": task.kind} for task in created],
    }


RECEIPT_WITHDRAWN = "the ticket was refunded before its receipt was issued"


def ticket_refund_request(*, ticket_id: str, correlation_id: str) -> list[EnqueuedTask]:
    """Void the receipt and refund the payment: once per ticket, however often it is asked.

    A canceled ticket raises TicketCanceled and writes nothing: a ticket is refunded once, by
    whichever of the two paths (the cancel's refund sheet, this) came first.

    The ticket's `refund_requested_at`, not a task row, says it was asked: a repeat after the
    tasks were pruned finds it set and enqueues nothing. A receipt not issued yet never will
    be: its waiting task is canceled here, and the receipt handler refuses a refunded ticket.
    """
    with transaction.atomic():
        ticket = Ticket.objects.select_for_update().filter(ticket_id=ticket_id).first()
        if ticket is None:
            raise TicketNotFound(f"ticket {ticket_id!r} is not known")
        if ticket.refund_requested_at is not None:
            logger.info(
                "refund of ticket %s was already requested at %s; nothing more to do",
                ticket_id,
                ticket.refund_requested_at.isoformat(),
            )
            return []
        if ticket.status == TicketStatus.CANCELED:
            # One refund per ticket, by the path that came first: the seller's cancel put it
            # on the refund sheet, which accounting works by hand.
            raise TicketCanceled(
                f"ticket {ticket_id!r} is canceled: its refund is on the refund sheet, so it "
                "is not refunded through the Payments API too"
            )
        ticket.refund_requested_at = timezone.now()
        ticket.save(update_fields=["refund_requested_at", "updated_at"])
        receipt = Task.objects.filter(dedupe_key=kinds.receipt_dedupe_key(ticket_id))
        # Read before the cancel, under the ticket's lock: a task that has tried, or is trying
        # now, may have left a receipt; one that never ran never will (it is canceled here,
        # and the receipt handler refuses a refunded ticket). A confirmed ticket's task that
        # is gone was pruned, so it finished, and whether it tried is no longer known: a
        # receipt whose answer was lost may exist, and the void (by ticket, idempotent) is
        # sent to be safe. A ticket that arrived canceled never had a receipt task.
        if receipt.exists():
            may_exist = receipt.filter(Q(attempts__gt=0) | Q(state=TaskState.RUNNING)).exists()
        else:
            may_exist = ticket.status == TicketStatus.CONFIRMED
        tasks_cancel(tasks=receipt, reason=RECEIPT_WITHDRAWN)
        stored = TicketIn.stored(ticket)
        specs = [
            replace(spec, payload={**spec.payload, kinds.RECEIPT_MAY_EXIST: may_exist})
            if spec.kind == kinds.VOID_RECEIPT
            else spec
            for spec in kinds.specs_on([kinds.ON_REFUND_REQUESTED], stored, correlation_id)
        ]
        return enqueue_many(specs)


# The receipt handler's two statements, run around every receipt the Receipts API issues. In
# SQL written once per database vendor (the ORM's query building was four fifths of their CPU
# time, more than the API call's), with the table, the columns and the clock (`Now()`) taken
# from the model and from Django's own compiler, so they stay what the ORM would send.
_receipt_sql: dict[str, tuple[str, str]] = {}


def _receipt_statements() -> tuple[str, str]:
    statements = _receipt_sql.get(connection.vendor)
    if statements is None:
        quote = connection.ops.quote_name
        meta = Ticket._meta

        def column(name: str) -> str:
            field = meta.get_field(name)
            assert isinstance(field, Field)
            return quote(field.column)

        compiler = Ticket.objects.all().query.get_compiler(connection=connection)
        now, _ = compiler.compile(Now())
        table = quote(meta.db_table)
        refunded = (
            f"SELECT 1 FROM {table} WHERE {column('ticket_id')} = %s "
            f"AND {column('refund_requested_at')} IS NOT NULL"
        )
        record = (
            f"UPDATE {table} SET {column('receipt_number')} = %s, "
            f"{column('receipt_issued_at')} = %s, {column('updated_at')} = {now} "
            f"WHERE {column('ticket_id')} = %s"
        )
        statements = _receipt_sql[connection.vendor] = (refunded, record)
    return statements


def ticket_refunded_at(ticket_id: str) -> datetime | None:
    """When the ticket's refund was requested; None if it was not (or the ticket is unknown)."""
    with connection.cursor() as cursor:
        cursor.execute(_receipt_statements()[0], [ticket_id])
        if cursor.fetchone() is None:
            return None
    # Refunded, which is rare: its time through the ORM, converted as the field reads it.
    return (
        Ticket.objects.filter(ticket_id=ticket_id)
        .values_list("refund_requested_at", flat=True)
        .first()
    )


def ticket_receipt_record(*, ticket_id: str, number: str, issued_at: Any) -> None:
    issued = Ticket._meta.get_field("receipt_issued_at").get_db_prep_save(issued_at, connection)
    with connection.cursor() as cursor:
        cursor.execute(_receipt_statements()[1], [number, issued, ticket_id])
