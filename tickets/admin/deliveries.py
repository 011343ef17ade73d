"""The webhook deliveries' list and page: what each delivery carried and what it was answered."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.http import (
    HttpRequest,
)
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from outbox.console.admin_mixins import ReadOnlyMixin, pretty_json
from tickets.models import Ticket, WebhookDelivery


def delivered_tickets(delivery: WebhookDelivery) -> list[dict[str, str]]:
    """The tickets a delivery's stored answer names: `[{"ticket_id", "status"}]`."""
    response = delivery.response if isinstance(delivery.response, dict) else {}
    tickets = response.get("tickets")
    if not isinstance(tickets, list):
        return []
    return [
        {"ticket_id": str(row.get("ticket_id", "")), "status": str(row.get("status", ""))}
        for row in tickets
        if isinstance(row, dict)
    ]


def attach_ticket_pks(deliveries: Iterable[WebhookDelivery]) -> None:
    """Set `ticket_pks` (ticket id to admin pk) on each delivery, in one query for all."""
    deliveries = list(deliveries)
    wanted = {row["ticket_id"] for d in deliveries for row in delivered_tickets(d)}
    pks = dict(
        Ticket.objects.filter(ticket_id__in=wanted).values_list("ticket_id", "pk") if wanted else []
    )
    for delivery in deliveries:
        delivery.ticket_pks = pks  # type: ignore[attr-defined]


class DeliveryChangeList(ChangeList):
    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        attach_ticket_pks(self.result_list)


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = (
        "idempotency_key",
        "received_at",
        "ticket_count",
        "answer",
        "ticket_links",
        "correlation_id",
    )
    # Exact, not `=` (iexact): an equality reads the unique and the correlation indexes;
    # UPPER(..) = UPPER(..) would read the whole table.
    search_fields = ("idempotency_key__exact", "correlation_id__exact")
    search_help_text = "Idempotency key or correlation id (whole value, exactly as sent)."
    ordering = ("-id",)
    show_full_result_count = False
    fields = (
        "idempotency_key",
        "received_at",
        "correlation_id",
        "ticket_count",
        "answer",
        "ticket_links",
        "body_hash",
        "response_pretty",
    )
    readonly_fields = fields

    class Media:
        css = {"all": ("outbox/admin.css",)}

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return DeliveryChangeList

    @admin.display(description="tickets")
    def ticket_count(self, delivery: WebhookDelivery) -> int:
        return len(delivered_tickets(delivery))

    @admin.display(description="answer")
    def answer(self, delivery: WebhookDelivery) -> str:
        """`2 confirmed, 1 canceled; 6 tasks enqueued`: what the first answer said."""
        statuses: dict[str, int] = {}
        for row in delivered_tickets(delivery):
            statuses[row["status"]] = statuses.get(row["status"], 0) + 1
        said = ", ".join(f"{n} {status}" for status, n in sorted(statuses.items())) or "none"
        response = delivery.response if isinstance(delivery.response, dict) else {}
        tasks = response.get("tasks")
        count = len(tasks) if isinstance(tasks, list) else 0
        return f"{said}; {count} task{'' if count == 1 else 's'} enqueued"

    @admin.display(description="ticket links")
    def ticket_links(self, delivery: WebhookDelivery) -> SafeString | str:
        rows = delivered_tickets(delivery)
        if not hasattr(delivery, "ticket_pks"):
            attach_ticket_pks([delivery])
        pks: dict[str, int] = delivery.ticket_pks  # type: ignore[attr-defined]
        if not rows:
            return "-"
        shown, more = rows[:10], len(rows) - 10
        links = format_html_join(
            ", ",
            "{}",
            (
                (
                    format_html(
                        '<a href="{}">{}</a>',
                        reverse("admin:tickets_ticket_change", args=[pks[row["ticket_id"]]]),
                        row["ticket_id"],
                    )
                    if row["ticket_id"] in pks
                    else row["ticket_id"],
                )
                for row in shown
            ),
        )
        return format_html("{} and {} more", links, more) if more > 0 else links

    @admin.display(description="first answer")
    def response_pretty(self, delivery: WebhookDelivery) -> SafeString:
        return pretty_json(delivery.response)
