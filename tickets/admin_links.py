"""Where the engine's task page links a ticket task's subject: the ticket's admin page."""

from __future__ import annotations

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
