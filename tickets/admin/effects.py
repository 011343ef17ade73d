"""What a ticket's tasks mean to an accountant: each effect's state in words, the money's standing.

A ticket's tasks come from `tickets.selectors.ticket_tasks`, the one place that maps tickets
to the tasks of their effects (`tickets.kinds.EFFECTS`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Q
from django.utils import formats, timezone

from outbox.models import Task, TaskState
from tickets import kinds
from tickets.models import Ticket, TicketStatus
from tickets.selectors import ticket_tasks, tickets_by_correlation_id

# What an accountant calls each effect (by `Effect.name`, the dedupe key's prefix).
EFFECT_TITLES = {
    kinds.RECEIPT.name: "Receipt",
    kinds.PRINT_ROW.name: "Print-sheet row",
    kinds.REFUND_ROW.name: "Refund-sheet row",
    kinds.VOID.name: "Receipt void",
    kinds.PAYMENT_REFUND.name: "Payment refund",
}
# What a succeeded effect did, in words (`{number}`: the receipt's number, when known).
EFFECT_DONE = {
    kinds.RECEIPT.name: "Receipt {number}issued",
    kinds.PRINT_ROW.name: "Print-sheet row written",
    kinds.REFUND_ROW.name: "Refund-sheet row written",
    kinds.VOID.name: "Receipt voided",
    kinds.PAYMENT_REFUND.name: "Payment refunded",
}

STATE_COLOURS = {
    "pending": "#1565c0",
    "running": "#6a1b9a",
    "succeeded": "#2e7d32",
    "failed": "#c62828",
    "canceled": "#616161",
}


def attach_tasks(tickets: Iterable[Ticket], *, with_attempts: bool = False) -> None:
    """Set `outbox_tasks` on each ticket, in one query for all of them (two with attempts)."""
    tickets = list(tickets)
    found = ticket_tasks([ticket.ticket_id for ticket in tickets], with_attempts=with_attempts)
    for ticket in tickets:
        ticket.outbox_tasks = found[ticket.ticket_id]  # type: ignore[attr-defined]
        ticket.outbox_attempts_read = with_attempts  # type: ignore[attr-defined]


def when(moment: datetime | None) -> str:
    """`2026-11-29 14:05:39 UTC`, the one format of every page (project/formats)."""
    if moment is None:
        return "-"
    return formats.date_format(timezone.localtime(moment), "DATETIME_FORMAT")


def first_line(text: str, limit: int = 200) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return ""
    line = lines[-1] if lines[0].startswith("Traceback") else lines[0]
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _tries(n: int) -> str:
    return "1 try" if n == 1 else f"{n} tries"


@dataclass(frozen=True, slots=True)
class EffectState:
    """One effect of a ticket, said in words an accountant reads without the engine's terms."""

    title: str
    task: Task
    words: str
    error: str
    retryable: bool


def effect_state(task: Task, ticket: Ticket) -> EffectState:
    name = effect_label(task, ticket.ticket_id)
    title = EFFECT_TITLES.get(name, name)
    error = task.last_error
    if task.state == TaskState.SUCCEEDED:
        number = f"{ticket.receipt_number} " if ticket.receipt_number else ""
        done = EFFECT_DONE.get(name, f"{title} done").format(number=number)
        words = f"{done} {when(task.finished_at)}"
        error = ""
    elif task.state == TaskState.RUNNING:
        words = f"{title}: being tried now (try {task.attempts})"
    elif task.state == TaskState.PENDING and task.attempts == 0:
        words = f"{title}: waiting to run (due {when(task.available_at)})"
    elif task.state == TaskState.PENDING:
        words = (
            f"{title}: waiting to retry ({_tries(task.attempts)} so far, next try "
            f"{when(task.available_at)})"
        )
    elif task.state == TaskState.FAILED:
        words = f"{title}: failed after {_tries(task.attempts)}, gave up {when(task.finished_at)}"
    else:
        words = f"{title}: not done, canceled {when(task.finished_at)}"
    return EffectState(
        title=title,
        task=task,
        words=words,
        error=error,
        retryable=task.state in (TaskState.FAILED, TaskState.PENDING) and task.attempts > 0,
    )


def standing_in_a_word(ticket: Ticket, tasks: Sequence[Task]) -> str:
    """The list's status: `confirmed`, `canceled`, `refund requested` or `refunded`."""
    if ticket.refund_requested_at is None:
        return ticket.status
    refunded = any(
        effect_label(task, ticket.ticket_id) == kinds.PAYMENT_REFUND.name
        and task.state == TaskState.SUCCEEDED
        for task in tasks
    )
    return "refunded" if refunded else "refund requested"


def money_standing(ticket: Ticket, tasks: Sequence[Task]) -> str:
    """Where the ticket's money is: sold, refund under way, voided, refunded, with when."""
    by_name = {effect_label(task, ticket.ticket_id): task for task in tasks}
    void, refund = by_name.get(kinds.VOID.name), by_name.get(kinds.PAYMENT_REFUND.name)
    parts = []
    if ticket.status == TicketStatus.CANCELED:
        parts.append("Canceled")
    else:
        parts.append("Sold (confirmed)")
    if refund is not None and refund.state == TaskState.SUCCEEDED:
        parts.append(f"refunded {when(refund.finished_at)}")
    elif ticket.refund_requested_at is not None:
        parts.append(f"refund requested {when(ticket.refund_requested_at)}, not yet refunded")
    if void is not None and void.state == TaskState.SUCCEEDED:
        parts.append(f"receipt voided {when(void.finished_at)}")
    elif void is not None and ticket.receipt_number:
        parts.append("receipt not yet voided")
    return "; ".join(parts)


def effect_label(task: Task, ticket_id: str) -> str:
    """`receipt`, `sheet:tickets-to-print`, `void`: the dedupe key without the ticket id."""
    key = task.dedupe_key or task.kind
    return key.removesuffix(f":{ticket_id}")


def exact_match(term: str) -> int | None:
    """The pk of the one ticket `term` names exactly (its id, receipt number, customer email,
    booking id or a Correlation-ID that touched only it), or None when none or several do.
    """
    exact = (
        Q(ticket_id=term)
        | Q(receipt_number=term)
        | Q(booking_id=term)
        | Q(customer_email__iexact=term)
    )
    correlated = tickets_by_correlation_id(term)
    if correlated:
        exact |= Q(ticket_id__in=correlated)
    pks = list(Ticket.objects.filter(exact).values_list("pk", flat=True)[:2])
    return pks[0] if len(pks) == 1 else None


def tasks_of(ticket: Ticket, *, with_attempts: bool = False) -> Sequence[Task]:
    """The ticket's tasks, read once per page (the page's fields all show them)."""
    read = getattr(ticket, "outbox_attempts_read", None)
    if read is None or (with_attempts and not read):
        attach_tasks([ticket], with_attempts=with_attempts)
    tasks: Sequence[Task] = ticket.outbox_tasks  # type: ignore[attr-defined]
    return tasks
