"""The outbox handlers of the tickets domain. Every call goes through tickets.gateway."""

from __future__ import annotations

import threading
import time
from typing import Any

from django.conf import settings
from django.utils.dateparse import parse_datetime

import outbox
from outbox import Cancel, Defer, PermanentError
from outbox.models import FINISHED_STATES, Task
from tickets import kinds
from tickets.gateway import PaymentsClient, ReceiptsClient, SpreadsheetsClient
from tickets.models import Ticket
from tickets.services import ticket_receipt_record, ticket_refunded_at

# What a re-run of each kind does (the admin's re-run confirmation shows it; docs/OPERATORS.md
# says the same).
RERUN_RECEIPT = (
    "The same idempotency key: the Receipts API answers with the receipt it already issued, "
    "and no second receipt is made. For a refunded ticket nothing is issued: the task ends "
    "canceled, saying why."
)
RERUN_SHEET_ROW = (
    "Reads the sheet first and appends only when the ticket's row is missing: never a second "
    "row for one ticket."
)
# What a forced retry of a sheet append risks (the admin's force-retry confirmation shows it).
FORCE_RETRY_SHEET_ROW = (
    "The Spreadsheets API has no idempotency key: a try now may read the sheet before the "
    "earlier try's write lands, and append a second row for the ticket."
)
RERUN_VOID = "The same key (`idempotent_id`): the Receipts API records the void once."
RERUN_REFUND = "The same key (`deduplication_id`): the Payments API records the refund once."


@outbox.handler(
    kinds.ISSUE_RECEIPT, queue="critical", max_attempts=30, label="ticket_id", rerun=RERUN_RECEIPT
)
def issue_receipt(task: outbox.TaskContext) -> dict[str, Any]:
    p = task.payload
    refunded_at = ticket_refunded_at(p["ticket_id"])
    if refunded_at is not None:
        # The refund canceled this task if it was waiting; an operator's retry, or a try that
        # had failed before the refund, ends here: nothing would ever void this receipt.
        raise Cancel(
            f"ticket {p['ticket_id']} was refunded at {refunded_at.isoformat()}: no receipt is "
            "issued for a refunded ticket"
        )
    receipt = ReceiptsClient().issue(
        ticket_id=p["ticket_id"],
        amount=p["amount"],
        currency=p["currency"],
        idempotency_key=task.idempotency_key,
        correlation_id=task.correlation_id,
    )
    number = str(receipt["number"])
    issued_at = (
        parse_datetime(str(receipt.get("issued_at") or "")) if receipt.get("issued_at") else None
    )
    ticket_receipt_record(ticket_id=p["ticket_id"], number=number, issued_at=issued_at)
    return {"number": number, "issued_at": receipt.get("issued_at")}


class SheetReader:
    """Coalesces the sheet reads of concurrent retries into one GET per sheet.

    A caller only joins a read that has not started yet, so every read it relies on began
    after it asked, and therefore after its own earlier, unclear append.
    """

    JOIN_WINDOW_SECONDS = 0.02

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._next: dict[str, _SheetRead] = {}

    def ticket_ids(self, sheet: str, correlation_id: str) -> set[str]:
        with self._lock:
            read = self._next.get(sheet)
            leader = read is None
            if read is None:
                read = self._next[sheet] = _SheetRead()
        if leader:
            time.sleep(self.JOIN_WINDOW_SECONDS)
            with self._lock:
                del self._next[sheet]
            try:
                rows = SpreadsheetsClient().rows(sheet=sheet, correlation_id=correlation_id)
                read.ids = {str(row[0]) for row in rows if row}
            except BaseException as exc:
                read.error = exc
            finally:
                read.done.set()
        read.done.wait()
        if read.error is not None:
            raise read.error
        return read.ids


class _SheetRead:
    def __init__(self) -> None:
        self.done = threading.Event()
        self.ids: set[str] = set()
        self.error: BaseException | None = None


sheet_reader = SheetReader()


def sheet_settle_seconds() -> float:
    return float(getattr(settings, "SHEET_SETTLE_SECONDS", 60.0))


@outbox.handler(
    kinds.APPEND_ROW,
    queue="default",
    max_attempts=30,
    label="ticket_id",
    rerun=RERUN_SHEET_ROW,
    force_retry=FORCE_RETRY_SHEET_ROW,
    # The sheets API has no idempotency key: after a try whose append got no answer, the
    # engine holds the next try until a slow write of that try has had time to land.
    settle_seconds=sheet_settle_seconds,
)
def append_sheet_row(task: outbox.TaskContext) -> dict[str, Any]:
    p = task.payload
    sheet = p["sheet"]
    if sheet not in (kinds.PRINT_SHEET, kinds.REFUND_SHEET):
        raise PermanentError(f"unknown sheet {sheet!r}")
    # Any earlier try may have written the row (a 500 after the write, a lost answer): look
    # before appending again. The engine has already waited out a try that got no answer.
    # A reconcile's fix reads first even on its first try (tickets.reconcile.fixes).
    look_first = task.attempt > 1 or bool(p.get(kinds.READ_SHEET_FIRST))
    if look_first and p["ticket_id"] in sheet_reader.ticket_ids(sheet, task.correlation_id):
        return {"sheet": sheet, "appended": False, "already_present": True}
    SpreadsheetsClient().append_row(
        sheet=sheet,
        columns=[p["ticket_id"], p["customer_email"], p["amount"], p["currency"]],
        correlation_id=task.correlation_id,
    )
    return {"sheet": sheet, "appended": True}


@outbox.handler(
    kinds.VOID_RECEIPT, queue="default", max_attempts=30, label="ticket_id", rerun=RERUN_VOID
)
def void_receipt(task: outbox.TaskContext) -> dict[str, Any]:
    ticket_id = task.payload["ticket_id"]
    # The receipt task first, the ticket second: its handler writes the number before the
    # task can finish, so a finished task read first means the number read next is final.
    receipt_task = (
        Task.objects.filter(dedupe_key=kinds.receipt_dedupe_key(ticket_id))
        .values_list("state", "attempts")
        .first()
    )
    if receipt_task is not None and receipt_task[0] not in FINISHED_STATES:
        raise Defer("the receipt task has not finished yet", retry_after=5.0)
    number = (
        Ticket.objects.filter(ticket_id=ticket_id).values_list("receipt_number", flat=True).first()
    )
    # A receipt task that tried and then failed or was canceled may have written a receipt
    # whose answer never arrived: void it too (the API records a void by ticket). If the task
    # is gone (pruned since), the refund wrote down whether a receipt could exist; a void
    # enqueued before it did so is sent to be safe.
    if receipt_task is not None:
        may_exist = receipt_task[1] > 0
    else:
        may_exist = bool(task.payload.get(kinds.RECEIPT_MAY_EXIST, True))
    if not number and not may_exist:
        return {"voided": False, "reason": "no receipt was issued for this ticket"}
    ReceiptsClient().void(
        ticket_id=ticket_id,
        reason=task.payload.get("reason", "refund"),
        idempotent_id=task.idempotency_key,
        correlation_id=task.correlation_id,
    )
    return {"voided": True, "receipt_number": number or None}


@outbox.handler(
    kinds.REFUND_PAYMENT, queue="default", max_attempts=30, label="ticket_id", rerun=RERUN_REFUND
)
def refund_payment(task: outbox.TaskContext) -> dict[str, Any]:
    ticket_id = task.payload["ticket_id"]
    PaymentsClient().refund(
        payment_reference=ticket_id,
        reason=task.payload.get("reason", "refund"),
        deduplication_id=task.idempotency_key,
        correlation_id=task.correlation_id,
    )
    return {"refunded": True}
