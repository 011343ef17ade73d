"""Tickets in the admin, read-only, each with the outbox tasks it caused and their attempts.

A ticket's tasks come from `tickets.selectors.ticket_tasks`, the one place that maps tickets
to the tasks of their effects (`tickets.kinds.EFFECTS`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.html import format_html_join
from django.utils.safestring import SafeString

from outbox.admin_mixins import ReadOnlyMixin, pretty_json
from outbox.models import Task
from tickets.models import Ticket, WebhookDelivery
from tickets.selectors import ticket_tasks

STATE_COLOURS = {
    "pending": "#1565c0",
    "running": "#6a1b9a",
    "succeeded": "#2e7d32",
    "failed": "#c62828",
    "canceled": "#616161",
}


def attach_tasks(tickets: Iterable[Ticket], *, with_attempts: bool = False) -> None:
    """Set `outbox_tasks` on each ticket, in one query for all of them."""
    tickets = list(tickets)
    found = ticket_tasks([ticket.ticket_id for ticket in tickets], with_attempts=with_attempts)
    for ticket in tickets:
        ticket.outbox_tasks = found[ticket.ticket_id]  # type: ignore[attr-defined]


def effect_label(task: Task, ticket_id: str) -> str:
    """`receipt`, `sheet:tickets-to-print`, `void`: the dedupe key without the ticket id."""
    key = task.dedupe_key or task.kind
    return key.removesuffix(f":{ticket_id}")


class TicketChangeList(ChangeList):
    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        # Evaluating the page here caches its rows, so the template renders these very objects.
        attach_tasks(self.result_list)


class ReceiptFilter(admin.SimpleListFilter):
    title = "receipt"
    parameter_name = "receipt"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("issued", "Issued"), ("missing", "Not issued")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "issued":
            return queryset.exclude(receipt_number="")
        if self.value() == "missing":
            return queryset.filter(receipt_number="")
        return queryset


@admin.register(Ticket)
class TicketAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = (
        "ticket_id",
        "status",
        "customer_email",
        "price",
        "receipt_number",
        "created_at",
        "tasks_at_a_glance",
    )
    list_filter = ("status", ReceiptFilter, "price_currency")
    search_fields = ("ticket_id", "customer_email")
    search_help_text = "Ticket id or customer email (or part of either)."
    ordering = ("-id",)
    list_per_page = 100
    show_full_result_count = False
    fieldsets = (
        (None, {"fields": ("ticket_id", "status", "customer_email", "price", "booking_id")}),
        ("Receipt", {"fields": ("receipt_number", "receipt_issued_at", "refund_requested_at")}),
        ("Times", {"fields": ("created_at", "updated_at")}),
        ("Outbox tasks", {"fields": ("outbox_tasks_detail",)}),
    )
    readonly_fields = (
        "ticket_id",
        "status",
        "customer_email",
        "price",
        "booking_id",
        "receipt_number",
        "receipt_issued_at",
        "refund_requested_at",
        "created_at",
        "updated_at",
        "outbox_tasks_detail",
    )

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return TicketChangeList

    @admin.display(description="price", ordering="price_amount")
    def price(self, ticket: Ticket) -> str:
        return f"{ticket.price_amount} {ticket.price_currency}"

    @admin.display(description="tasks")
    def tasks_at_a_glance(self, ticket: Ticket) -> SafeString | str:
        tasks = _tasks_of(ticket)
        if not tasks:
            return "-"
        return format_html_join(
            " ",
            '<a href="{}" title="{}" style="color:{};white-space:nowrap">{}: {}</a>',
            (
                (
                    reverse("admin:outbox_task_change", args=[task.pk]),
                    f"task {task.pk}, attempt {task.attempts}/{task.max_attempts}",
                    STATE_COLOURS.get(task.state, "inherit"),
                    effect_label(task, ticket.ticket_id),
                    task.state,
                )
                for task in tasks
            ),
        )

    @admin.display(description="tasks and attempts")
    def outbox_tasks_detail(self, ticket: Ticket) -> SafeString:
        tasks = _tasks_of(ticket, with_attempts=True)
        rows = [
            {
                "task": task,
                "label": effect_label(task, ticket.ticket_id),
                "url": reverse("admin:outbox_task_change", args=[task.pk]),
                "colour": STATE_COLOURS.get(task.state, "inherit"),
                "attempts": list(task.attempt_set.all()),
            }
            for task in tasks
        ]
        return render_to_string("admin/tickets/ticket/outbox_tasks.html", {"rows": rows})


def _tasks_of(ticket: Ticket, *, with_attempts: bool = False) -> Sequence[Task]:
    if with_attempts or not hasattr(ticket, "outbox_tasks"):
        attach_tasks([ticket], with_attempts=with_attempts)
    tasks: Sequence[Task] = ticket.outbox_tasks  # type: ignore[attr-defined]
    return tasks


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("idempotency_key", "received_at", "correlation_id")
    search_fields = ("=idempotency_key", "=correlation_id")
    search_help_text = "Idempotency key or correlation id (whole value)."
    ordering = ("-id",)
    show_full_result_count = False
    fields = ("idempotency_key", "received_at", "correlation_id", "body_hash", "response_pretty")
    readonly_fields = fields

    @admin.display(description="first answer")
    def response_pretty(self, delivery: WebhookDelivery) -> SafeString:
        return pretty_json(delivery.response)
