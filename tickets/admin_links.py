"""What the engine's console asks the domain: where a ticket task's subject links (the
ticket's admin page), where the dashboard's search goes, which tasks a search term names."""

from __future__ import annotations

from django.db.models import Q
from django.urls import reverse

from tickets import kinds
from tickets.models import Ticket

TICKET_KINDS = frozenset(effect.kind for effect in kinds.EFFECTS)


def ticket_admin_url(kind: str, subject: str) -> str | None:
    """The ticket's admin page when `kind` is a ticket effect's and the ticket exists."""
    if kind not in TICKET_KINDS:
        return None
    pk = Ticket.objects.filter(ticket_id=subject).values_list("pk", flat=True).first()
    return None if pk is None else reverse("admin:tickets_ticket_change", args=[pk])


def ticket_search_url() -> str:
    """The ticket list, which the dashboard's search box sends its `?q=` to."""
    return reverse("admin:tickets_ticket_changelist")


def ticket_totals_url() -> str:
    """Receipts, refunds and failures per day: the dashboard links it for the accountants."""
    return reverse("admin:tickets_ticket_totals")


def ticket_tasks_named_by(term: str) -> list[str] | None:
    """The dedupe keys of the tasks of the tickets `term` names, by ticket id or customer
    email (each a whole value, on the tickets' unique and email indexes); None when no ticket
    has it, and the task list falls back to scanning the payloads.

    A ticket's tasks are exactly its effects' dedupe keys (`kinds.dedupe_keys`), so the task
    list finds them on the unique `dedupe_key` index: the payloads, where the ticket id and
    the email also are, are not scanned.
    """
    ticket_ids = list(
        Ticket.objects.filter(Q(ticket_id=term) | Q(customer_email=term)).values_list(
            "ticket_id", flat=True
        )
    )
    if not ticket_ids:
        return None
    return [key for ticket_id in ticket_ids for key in kinds.dedupe_keys(ticket_id)]
