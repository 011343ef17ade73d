"""The comparison: each sheet row against the ticket it names, then each ticket in scope
against what it should have caused. Pure functions of what was read; nothing is written here.

A sheet is streamed page by page; what a sheet keeps between pages is the row number where
each ticket's first row was seen (to find duplicates, and at the end the missing rows): a few
dozen bytes per ticket on the sheet, never the rows themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from outbox.models import TaskState
from tickets import kinds
from tickets.models import DriftKind, TicketStatus
from tickets.reconcile.facts import Scope, TaskFacts, TicketFacts
from tickets.reconcile.sheets import SheetRow

IN_FLIGHT_STATES = (TaskState.PENDING, TaskState.RUNNING)
SHEET_EFFECTS = {kinds.PRINT_SHEET: kinds.PRINT_ROW, kinds.REFUND_SHEET: kinds.REFUND_ROW}


@dataclass(frozen=True, slots=True)
class Finding:
    """One difference (or one effect in flight), with what proves it."""

    kind: str
    ticket_id: str
    effect: str
    summary: str
    evidence: dict[str, Any]
    ticket: TicketFacts | None = None
    task_ids: tuple[int, ...] = ()
    # What makes it the same difference in a later run (an acknowledgement carries over).
    identity: str = ""


@dataclass
class SheetSeen:
    """Where each ticket's first row is on one sheet, and when the sheet's read began."""

    sheet: str
    read_started: datetime
    first_row: dict[str, int] = field(default_factory=dict)


def _row_differences(row: SheetRow, ticket: TicketFacts) -> dict[str, dict[str, str]]:
    columns = [*row.columns, "", "", ""][1:4]
    email, amount, currency = (str(value) for value in columns)
    found: dict[str, dict[str, str]] = {}
    # The same mailbox however a sheet (or a hand) cased it: every mail system here treats
    # addresses case-blind, so a case-only difference is not drift an accountant can act on.
    if email.strip().casefold() != ticket.customer_email.strip().casefold():
        found["customer_email"] = {"ours": ticket.customer_email, "sheet": email}
    try:
        # A number, not a text: "50.0", "50" and "50.00" are the same amount.
        same_amount = Decimal(amount.strip()) == ticket.amount
    except (InvalidOperation, ValueError):
        same_amount = False
    if not same_amount:
        found["amount"] = {"ours": f"{ticket.amount:.2f}", "sheet": amount}
    if currency.strip().upper() != ticket.currency.upper():
        found["currency"] = {"ours": ticket.currency, "sheet": currency}
    return found


def _unwanted_row(sheet: str, ticket: TicketFacts) -> str | None:
    """Why this ticket should have no row on this sheet, or None when it may have one."""
    if sheet != kinds.REFUND_SHEET:
        # A canceled ticket may have been confirmed first, and printed then.
        return None
    if ticket.status != TicketStatus.CANCELED:
        return "the ticket is not canceled: it has no place on the refund sheet"
    if ticket.refund_requested_at is not None:
        return (
            "the ticket was refunded through the Payments API before it was canceled: a row "
            "here would refund it twice"
        )
    return None


def sheet_findings(
    pages: Iterable[Sequence[SheetRow]],
    *,
    seen: SheetSeen,
    scope: Scope,
    lookup: Callable[[list[str]], Mapping[str, TicketFacts]],
) -> Iterator[Finding]:
    """Duplicate, extra and different rows of one sheet; records each ticket's first row."""
    sheet = seen.sheet
    effect = SHEET_EFFECTS[sheet].name
    for page in pages:
        tickets = lookup(sorted({row.ticket_id for row in page}))
        for row in page:
            tid = row.ticket_id
            first = seen.first_row.setdefault(tid, row.number)
            ticket = tickets.get(tid)
            where = {"sheet": sheet, "row": row.number, "columns": row.columns}
            identity = f"{sheet}|{'|'.join(row.columns)}"
            if ticket is None:
                yield Finding(
                    DriftKind.EXTRA_ROW,
                    tid,
                    effect,
                    f"row {row.number} of {sheet} names a ticket we have no record of",
                    where,
                    identity=identity,
                )
                continue
            if not scope.holds(ticket):
                continue
            unwanted = _unwanted_row(sheet, ticket)
            if unwanted is not None:
                yield Finding(
                    DriftKind.EXTRA_ROW,
                    tid,
                    effect,
                    f"row {row.number} of {sheet}: {unwanted}",
                    where,
                    ticket,
                    identity=identity,
                )
            elif first != row.number:
                yield Finding(
                    DriftKind.DUPLICATE_ROW,
                    tid,
                    effect,
                    f"row {row.number} of {sheet} repeats row {first}: remove one by hand",
                    {**where, "first_row": first},
                    ticket,
                    identity=f"{identity}|{first}",
                )
            elif differences := _row_differences(row, ticket):
                yield Finding(
                    DriftKind.DIFFERENT_ROW,
                    tid,
                    effect,
                    f"row {row.number} of {sheet} differs in {', '.join(differences)}",
                    {**where, "differences": differences},
                    ticket,
                    identity=identity,
                )


def _in_flight(task: TaskFacts | None, since: datetime | None) -> bool:
    """Whether the task may still make (or has just made) the effect: waiting, running, or
    finished after the API was read, so what was read may predate its write."""
    if task is None:
        return False
    if task.state in IN_FLIGHT_STATES:
        return True
    return since is not None and task.finished_at is not None and task.finished_at >= since


def _task_words(task: TaskFacts | None) -> str:
    if task is None:
        return "its task is gone (pruned) or was never made"
    return f"its task #{task.id} is {task.state} after {task.attempts} attempt(s)"


def _missing(
    kind: str,
    ticket: TicketFacts,
    effect: kinds.Effect,
    what: str,
    task: TaskFacts | None,
    *,
    read_started: datetime | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Finding:
    task_ids = (task.id,) if task is not None else ()
    evidence: dict[str, Any] = {"task": task.evidence() if task else None, **(extra or {})}
    if _in_flight(task, read_started):
        assert task is not None
        return Finding(
            DriftKind.IN_FLIGHT,
            ticket.ticket_id,
            effect.name,
            f"{what}: not there yet, its task #{task.id} is {task.state}",
            evidence,
            ticket,
            task_ids,
            identity=f"{kind}|{effect.name}",
        )
    return Finding(
        kind,
        ticket.ticket_id,
        effect.name,
        f"{what}: missing, and {_task_words(task)}",
        evidence,
        ticket,
        task_ids,
        identity=f"{kind}|{effect.name}",
    )


def _needs_print_row(ticket: TicketFacts, task: TaskFacts | None) -> bool:
    if ticket.status == TicketStatus.CONFIRMED:
        return True
    # A canceled ticket was printed only if it was confirmed first: its print task or its
    # receipt says so; one that arrived canceled never had either.
    return bool(ticket.receipt_number) or (task is not None and task.state != TaskState.CANCELED)


def ticket_findings(
    ticket: TicketFacts, tasks: Mapping[str, TaskFacts], sheets: Mapping[str, SheetSeen]
) -> Iterator[Finding]:
    """What one ticket should have caused and is missing (or still in flight)."""
    tid = ticket.ticket_id
    print_task = tasks.get(kinds.PRINT_ROW.dedupe_key(tid))
    seen = sheets.get(kinds.PRINT_SHEET)
    if seen and _needs_print_row(ticket, print_task) and tid not in seen.first_row:
        yield _missing(
            DriftKind.MISSING_ROW,
            ticket,
            kinds.PRINT_ROW,
            f"no row on {kinds.PRINT_SHEET}",
            print_task,
            read_started=seen.read_started,
            extra={"sheet": kinds.PRINT_SHEET},
        )
    seen = sheets.get(kinds.REFUND_SHEET)
    wants_refund_row = ticket.status == TicketStatus.CANCELED and ticket.refund_requested_at is None
    if seen and wants_refund_row and tid not in seen.first_row:
        yield _missing(
            DriftKind.MISSING_ROW,
            ticket,
            kinds.REFUND_ROW,
            f"no row on {kinds.REFUND_SHEET}",
            tasks.get(kinds.REFUND_ROW.dedupe_key(tid)),
            read_started=seen.read_started,
            extra={"sheet": kinds.REFUND_SHEET},
        )
    receipt_task = tasks.get(kinds.RECEIPT.dedupe_key(tid))
    if ticket.refund_requested_at is None:
        if ticket.status == TicketStatus.CONFIRMED and not ticket.receipt_number:
            yield _missing(
                DriftKind.MISSING_RECEIPT, ticket, kinds.RECEIPT, "no receipt number", receipt_task
            )
        return
    yield from _refund_findings(ticket, tasks, receipt_task)


def _refund_findings(
    ticket: TicketFacts, tasks: Mapping[str, TaskFacts], receipt_task: TaskFacts | None
) -> Iterator[Finding]:
    """A refunded ticket: its receipt voided (when one may exist) and its payment refunded.

    The Receipts and Payments APIs have no lookup: our records (the receipt number, the tasks'
    outcomes) are all there is to check.
    """
    tid = ticket.ticket_id
    void_task = tasks.get(kinds.VOID.dedupe_key(tid))
    refund_task = tasks.get(kinds.PAYMENT_REFUND.dedupe_key(tid))
    receipt_may_exist = bool(ticket.receipt_number) or (
        receipt_task is not None and receipt_task.attempts > 0
    )
    if void_task is None:
        # Pruned with its siblings, or never made; only a receipt task still here proves it.
        void_missing = receipt_task is not None and receipt_may_exist
    elif void_task.state == TaskState.SUCCEEDED:
        result = void_task.result if isinstance(void_task.result, dict) else {}
        void_missing = result.get("voided") is False and bool(ticket.receipt_number)
    else:
        void_missing = void_task.state in IN_FLIGHT_STATES or receipt_may_exist
    if void_missing:
        yield _missing(
            DriftKind.MISSING_VOID,
            ticket,
            kinds.VOID,
            "receipt "
            + (ticket.receipt_number or "(number unknown: its task tried)")
            + " not voided",
            void_task,
            extra={"receipt_number": ticket.receipt_number},
        )
    if refund_task is None:
        refund_missing = void_task is not None
    else:
        refund_missing = refund_task.state != TaskState.SUCCEEDED
    if refund_missing:
        yield _missing(
            DriftKind.MISSING_REFUND,
            ticket,
            kinds.PAYMENT_REFUND,
            "payment not refunded",
            refund_task,
        )
