"""A stored run as the command prints it: a document for machines, lines for people."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from tickets.models import DriftItem, DriftKind, ReconcileRun

# The text report lists at most this many items; the admin page and --json have them all.
TEXT_ITEMS = 200


def item_document(item: DriftItem) -> dict[str, Any]:
    return {
        "id": item.pk,
        "kind": item.kind,
        "state": item.state,
        "ticket_id": item.seller_ticket_id,
        "effect": item.effect,
        "customer_email": item.customer_email,
        "amount": None if item.amount is None else f"{item.amount:.2f}",
        "currency": item.currency,
        "summary": item.summary,
        "evidence": item.evidence,
        "task_ids": item.task_ids,
        "note": item.note,
    }


def run_document(run: ReconcileRun) -> dict[str, Any]:
    return {
        "run": run.pk,
        "status": run.status,
        "error": run.error,
        "by": run.by,
        "trigger": run.trigger,
        "started_at": run.started_at.isoformat(),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "seconds": run.seconds,
        "since": run.since.isoformat() if run.since else None,
        "until": run.until.isoformat() if run.until else None,
        "ticket_ids": run.ticket_ids,
        "tickets_checked": run.tickets_checked,
        "rows_read": run.rows_read,
        "counts": run.counts,
        "drift_open": run.drift_open,
        "notes": run.notes,
        "items": [item_document(item) for item in run.items.order_by("pk").iterator(2000)],
    }


def _scope(run: ReconcileRun) -> str:
    if run.ticket_ids:
        return f"{len(run.ticket_ids)} named ticket(s)"
    since = run.since.isoformat() if run.since else "the beginning"
    until = run.until.isoformat() if run.until else "now"
    return f"tickets created or changed from {since} to {until}"


def run_lines(run: ReconcileRun) -> Iterator[str]:
    yield f"Reconcile run #{run.pk} ({run.status}), {_scope(run)}"
    yield (
        f"Checked {run.tickets_checked} ticket(s) against {run.rows_read} sheet row(s) "
        f"in {run.seconds or 0:.1f}s."
    )
    if run.error:
        yield f"Stopped: {run.error}"
    labels = dict(DriftKind.choices)
    for kind, count in sorted(run.counts.items()):
        yield f"  {labels.get(kind, kind)}: {count}"
    items = run.items.exclude(kind=DriftKind.IN_FLIGHT).order_by("pk")
    for item in items[:TEXT_ITEMS]:
        amount = "" if item.amount is None else f" {item.amount:.2f} {item.currency}"
        state = "" if item.state == DriftItem.State.OPEN else f" [{item.state}]"
        yield f"  #{item.pk} {item.kind} {item.seller_ticket_id}{amount}{state}: {item.summary}"
    more = items.count() - TEXT_ITEMS
    if more > 0:
        yield f"  ... and {more} more (the admin's drift items page, or --json)"
    for note in run.notes:
        yield f"Note: {note}"
    if run.drift_open:
        yield f"DRIFT: {run.drift_open} open item(s)."
    else:
        yield "No open drift."
