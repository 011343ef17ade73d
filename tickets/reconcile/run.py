"""A reconcile run: read both sides, compare, store the items as they are found, count.

Items are written in batches while the sheets stream, so a run's memory is one page of rows,
one chunk of tickets and one batch of items, plus each sheet's first-row map (compare.py).
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from outbox import TaskError
from tickets import kinds
from tickets.models import DriftItem, DriftKind, ReconcileRun
from tickets.reconcile import compare
from tickets.reconcile.facts import Scope, tasks_of, tickets_by_id, tickets_in
from tickets.reconcile.sheets import SheetReader

logger = logging.getLogger(__name__)

BATCH = 500
SHEETS = (kinds.PRINT_SHEET, kinds.REFUND_SHEET)

NOTES = [
    "The Spreadsheets API is read (every row of both sheets) and compared with the tickets.",
    "The Receipts and Payments APIs have no lookup: receipts, voids and refunds are checked "
    "against our own records (the ticket's receipt number, its tasks' outcomes), not theirs.",
    "A ticket whose tasks were pruned is checked on the sheets and its receipt number only.",
]


class ReconcileFailed(Exception):
    """The run could not finish (an API that did not answer): it is stored as an error."""

    def __init__(self, message: str, run: ReconcileRun) -> None:
        super().__init__(message)
        self.run = run


def fingerprint(finding: compare.Finding) -> str:
    key = f"{finding.kind}|{finding.effect}|{finding.ticket_id}|{finding.identity}"
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass
class Reconciler:
    scope: Scope
    by: str = ""
    trigger: str = "command"
    reader: SheetReader | None = None

    def run(self) -> ReconcileRun:
        """Compare, store and count; raises ReconcileFailed (the run stored as an error)."""
        started = time.monotonic()
        scope = self.scope
        if not scope.ticket_ids and scope.until is None:
            # Tickets that arrive while this runs are the next run's.
            scope = Scope(since=scope.since, until=timezone.now())
        run = ReconcileRun.objects.create(
            by=self.by,
            trigger=self.trigger,
            since=scope.since,
            until=scope.until,
            ticket_ids=list(scope.ticket_ids),
            notes=NOTES,
        )
        reader = self.reader or SheetReader(
            page_rows=settings.RECONCILE_PAGE_ROWS,
            pages_per_second=settings.RECONCILE_PAGES_PER_SECOND,
            correlation_id=f"reconcile-{run.pk}-{uuid.uuid4().hex[:8]}",
        )
        try:
            rows, checked = self._compare(run, scope, reader)
        except TaskError as exc:
            run.status = ReconcileRun.Status.ERROR
            run.error = f"{exc.__class__.__name__}: {exc}"[:2000]
            self._finish(run, started)
            logger.warning("reconcile #%s stopped: %s", run.pk, run.error)
            raise ReconcileFailed(run.error, run) from exc
        run.rows_read, run.tickets_checked = rows, checked
        run.status = ReconcileRun.Status.DONE
        self._finish(run, started)
        return run

    def _compare(self, run: ReconcileRun, scope: Scope, reader: SheetReader) -> tuple[int, int]:
        seen: dict[str, compare.SheetSeen] = {}
        rows = 0

        def counted(sheet: str) -> Iterator[list[compare.SheetRow]]:
            nonlocal rows
            for page in reader.pages(sheet):
                rows += len(page)
                yield page

        for sheet in SHEETS:
            seen[sheet] = compare.SheetSeen(sheet, read_started=timezone.now())
            self._store(
                run,
                compare.sheet_findings(
                    counted(sheet), seen=seen[sheet], scope=scope, lookup=tickets_by_id
                ),
            )
        checked = 0

        def per_ticket() -> Iterator[compare.Finding]:
            nonlocal checked
            for chunk in tickets_in(scope):
                checked += len(chunk)
                tasks = tasks_of(chunk)
                for ticket in chunk:
                    yield from compare.ticket_findings(ticket, tasks, seen)

        self._store(run, per_ticket())
        return rows, checked

    def _store(self, run: ReconcileRun, findings: Iterable[compare.Finding]) -> None:
        batch: list[DriftItem] = []
        for finding in findings:
            batch.append(_item(run, finding))
            if len(batch) >= BATCH:
                _write(batch)
                batch = []
        if batch:
            _write(batch)

    def _finish(self, run: ReconcileRun, started: float) -> None:
        counts = dict(
            DriftItem.objects.filter(run=run)
            .order_by()
            .values_list("kind")
            .annotate(n=Count("id"))
            .values_list("kind", "n")
        )
        run.counts = counts
        run.drift_open = DriftItem.objects.filter(run=run, state=DriftItem.State.OPEN).count()
        run.finished_at = timezone.now()
        run.seconds = round(time.monotonic() - started, 3)
        run.save()


def _item(run: ReconcileRun, finding: compare.Finding) -> DriftItem:
    ticket = finding.ticket
    return DriftItem(
        run=run,
        kind=finding.kind,
        state=DriftItem.State.INFO if finding.kind == DriftKind.IN_FLIGHT else DriftItem.State.OPEN,
        seller_ticket_id=finding.ticket_id[:255],
        ticket_id=ticket.pk if ticket else None,
        effect=finding.effect,
        customer_email=(ticket.customer_email if ticket else _row_email(finding))[:254],
        amount=ticket.amount if ticket else None,
        currency=ticket.currency if ticket else "",
        summary=finding.summary[:500],
        evidence=finding.evidence,
        task_ids=list(finding.task_ids),
        fingerprint=fingerprint(finding),
    )


def _row_email(finding: compare.Finding) -> str:
    columns = finding.evidence.get("columns") or []
    return str(columns[1]) if len(columns) > 1 else ""


def _write(batch: list[DriftItem]) -> None:
    """Store a batch; a difference acknowledged in an earlier run stays acknowledged."""
    acknowledged = {
        fp: (run_id, by, note)
        for fp, run_id, by, note in DriftItem.objects.filter(
            fingerprint__in={item.fingerprint for item in batch},
            state=DriftItem.State.ACKNOWLEDGED,
        )
        .order_by("run_id")
        .values_list("fingerprint", "run_id", "handled_by", "note")
    }
    for item in batch:
        earlier = acknowledged.get(item.fingerprint)
        if earlier is not None and item.state == DriftItem.State.OPEN:
            run_id, by, note = earlier
            item.state = DriftItem.State.ACKNOWLEDGED
            item.handled_by = by
            item.handled_at = timezone.now()
            item.note = f"Acknowledged in run #{run_id}: {note}"[:2000]
    with transaction.atomic():
        DriftItem.objects.bulk_create(batch)
