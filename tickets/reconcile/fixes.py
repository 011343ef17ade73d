"""What is done about a drift item: a missing effect's task enqueued again, or a row the API
cannot delete acknowledged with a note. Both are written to the admin's history (LogEntry).

A fix makes exactly the task the webhook (or the refund) would have made: the effect's own
dedupe key and the idempotency key derived from it (tickets.kinds). When a task with that key
still exists, it is requeued the way the admin's retry and re-run requeue (outbox's
`tasks_retry`: the state guard in the UPDATE, the attempt count kept), so its next try is not
its first and the sheet handler reads the sheet before it appends. A task enqueued afresh (the
old one was pruned) carries `read_sheet_first`, so it reads too. Two fixes, or a fix raced with
the relay, make one row.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from django.contrib.admin.models import CHANGE, LogEntry
from django.db import transaction
from django.utils import timezone

from outbox import enqueue_many, tasks_retry
from outbox.console.audit import log_tasks, log_user_id
from outbox.models import Task, TaskState
from tickets import kinds
from tickets.models import FIXABLE_KINDS, DriftItem, DriftKind, Ticket
from tickets.reconcile import compare
from tickets.reconcile.facts import tasks_of, tickets_by_id
from tickets.ticket_in import TicketIn

REQUEUABLE = (TaskState.FAILED, TaskState.CANCELED, TaskState.SUCCEEDED)
EFFECTS = {effect.name: effect for effect in kinds.EFFECTS}


class CannotFix(Exception):
    """The item is not a missing effect, was handled already, or its ticket is gone."""


@dataclass(frozen=True, slots=True)
class FixOutcome:
    item_id: int
    task_id: int
    done: str


def _log_item(item: DriftItem, message: str, by: str) -> None:
    LogEntry.objects.log_actions(
        user_id=log_user_id(by), queryset=[item], action_flag=CHANGE, change_message=message
    )


def _still_wanted(item: DriftItem) -> bool:
    """Whether our records, read now, still call for the item's effect.

    The run may be old: since then a receipt may have been issued, a ticket refunded, a task
    retried by hand. The same comparison as the run's, over the ticket as it is now (the
    sheets taken as lacking the row, which the sheet handler checks itself before it
    appends), decides; an effect whose task is on its way still counts (nothing is requeued).
    """
    ticket = tickets_by_id([item.seller_ticket_id]).get(item.seller_ticket_id)
    if ticket is None:
        return False
    now = timezone.now()
    sheets = {sheet: compare.SheetSeen(sheet, read_started=now) for sheet in compare.SHEET_EFFECTS}
    return any(
        finding.effect == item.effect and finding.kind in (item.kind, DriftKind.IN_FLIGHT)
        for finding in compare.ticket_findings(ticket, tasks_of([ticket]), sheets)
    )


@transaction.atomic
def drift_fix(*, item_id: int, by: str, reason: str = "") -> FixOutcome:
    """Enqueue (or requeue) the task of the missing effect `item_id` names; once per item."""
    item = DriftItem.objects.select_for_update().filter(pk=item_id).first()
    if item is None:
        raise CannotFix(f"drift item #{item_id} does not exist")
    if item.kind not in FIXABLE_KINDS:
        raise CannotFix(
            f"drift item #{item_id} is a {item.get_kind_display().lower()}: the API cannot undo "
            "it, so it is corrected by hand and acknowledged"
        )
    if item.state != DriftItem.State.OPEN:
        raise CannotFix(f"drift item #{item_id} is {item.state} already (by {item.handled_by})")
    effect = EFFECTS.get(item.effect)
    ticket = Ticket.objects.filter(ticket_id=item.seller_ticket_id).first()
    if effect is None or ticket is None or (item.ticket_id and item.ticket_id != ticket.pk):
        raise CannotFix(f"drift item #{item_id}: its ticket or effect is no longer known")
    if not _still_wanted(item):
        raise CannotFix(
            f"drift item #{item_id}: ticket {item.seller_ticket_id} changed since run "
            f"#{item.run_id} and no longer lacks this effect (see its ticket): nothing to fix; "
            "acknowledge the item with a note"
        )
    spec = effect.spec(TicketIn.stored(ticket), f"reconcile-{item.run_id}-fix-{item.pk}")
    if effect.kind == kinds.APPEND_ROW:
        spec = replace(spec, payload={**spec.payload, kinds.READ_SHEET_FIRST: True})
    elif effect.kind == kinds.VOID_RECEIPT:
        spec = replace(spec, payload={**spec.payload, kinds.RECEIPT_MAY_EXIST: True})
    created = enqueue_many([spec])
    if created:
        task_id, done = created[0].id, f"enqueued task #{created[0].id}"
    else:
        existing = Task.objects.select_for_update().get(dedupe_key=spec.dedupe_key)
        task_id = existing.pk
        if existing.state in REQUEUABLE:
            tasks_retry(
                tasks=Task.objects.filter(pk=existing.pk, state__in=REQUEUABLE),
                include_succeeded=True,
            )
            done = f"requeued task #{existing.pk} (it was {existing.state})"
        else:
            done = f"task #{existing.pk} is {existing.state} already: nothing to requeue"
    item.state = DriftItem.State.FIXED
    item.handled_by = by
    item.handled_at = timezone.now()
    item.fix_task_id = task_id
    item.note = f"Fixed: {done}." + (f" {reason}" if reason else "")
    item.save(update_fields=["state", "handled_by", "handled_at", "fix_task_id", "note"])
    _log_item(item, f"Fixed from reconcile run #{item.run_id}: {done}. {reason}".strip(), by)
    log_tasks(
        [task_id],
        change_message=f"Enqueued by the fix of drift item #{item.pk} "
        f"(reconcile run #{item.run_id}, by {by or 'unknown'}): {item.summary}",
        by=by,
    )
    return FixOutcome(item.pk, task_id, done)


@transaction.atomic
def drift_acknowledge(*, item_id: int, by: str, note: str) -> None:
    """Mark an item handled by hand (a row removed or corrected on the sheet), with a note."""
    note = note.strip()
    if not note:
        raise CannotFix("an acknowledgement needs a note: what was done, or why it stands")
    item = DriftItem.objects.select_for_update().filter(pk=item_id).first()
    if item is None:
        raise CannotFix(f"drift item #{item_id} does not exist")
    if item.state != DriftItem.State.OPEN:
        raise CannotFix(f"drift item #{item_id} is {item.state} already (by {item.handled_by})")
    item.state = DriftItem.State.ACKNOWLEDGED
    item.handled_by = by
    item.handled_at = timezone.now()
    item.note = note[:2000]
    item.save(update_fields=["state", "handled_by", "handled_at", "note"])
    _log_item(item, f"Acknowledged from reconcile run #{item.run_id}: {note}", by)


def fix_run(*, run_id: int, by: str, reason: str = "") -> tuple[list[FixOutcome], list[str]]:
    """Fix every open missing effect of a run, each in its own transaction: what was done, and
    why the others were not (one refusal does not stop the rest)."""
    ids = DriftItem.objects.filter(
        run_id=run_id, state=DriftItem.State.OPEN, kind__in=FIXABLE_KINDS
    ).values_list("pk", flat=True)
    done: list[FixOutcome] = []
    refused: list[str] = []
    for item_id in list(ids.order_by("pk")):
        try:
            done.append(drift_fix(item_id=item_id, by=by, reason=reason))
        except CannotFix as exc:
            refused.append(str(exc))
    return done, refused
