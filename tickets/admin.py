"""Tickets in the admin, read-only, each with the outbox tasks it caused and their attempts.

A ticket's tasks come from `tickets.selectors.ticket_tasks`, the one place that maps tickets
to the tasks of their effects (`tickets.kinds.EFFECTS`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import SEARCH_VAR, ChangeList
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    StreamingHttpResponse,
)
from django.http.response import HttpResponseBase
from django.shortcuts import redirect
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import formats, timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from outbox.console.admin_mixins import ReadOnlyMixin, attempts_in_words, pretty_json, retry_button
from outbox.history import history
from outbox.models import FINISHED_STATES, Task, TaskState
from tickets import kinds, reports
from tickets.models import Ticket, TicketStatus, WebhookDelivery
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


TOTALS_DAYS = 14


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
        "status_now",
        "customer_email",
        "price",
        "receipt_number",
        "created_at",
        "tasks_at_a_glance",
    )
    list_filter = ("status", ReceiptFilter, "price_currency")
    search_fields = ("ticket_id", "customer_email", "receipt_number", "booking_id")
    search_help_text = (
        "Ticket id, customer email, receipt number or booking id (or part of one), or a "
        "Correlation-ID (whole). One exact match opens the ticket."
    )
    ordering = ("-id",)
    list_per_page = 100
    show_full_result_count = False
    fieldsets = (
        (
            "Where the money is",
            {"fields": ("standing", "price", "receipt_number", "effects")},
        ),
        (None, {"fields": ("ticket_id", "status", "customer_email", "booking_id")}),
        ("Receipt", {"fields": ("receipt_issued_at", "refund_requested_at")}),
        ("Times", {"fields": ("created_at", "updated_at")}),
        ("Outbox tasks", {"fields": ("outbox_tasks_detail",)}),
    )
    readonly_fields = (
        "standing",
        "effects",
        "effects_with_retry",
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

    class Media:
        # Long errors wrap, wide tables scroll in their box: readable at 1366 px.
        css = {"all": ("outbox/admin.css",)}

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        match = request.resolver_match
        if match is not None and match.url_name == "tickets_ticket_export":
            return ChangeList  # the export reads the filtered queryset, not a page of rows
        return TicketChangeList

    def get_urls(self) -> list[URLPattern]:
        totals = path(
            "totals/", self.admin_site.admin_view(self.totals_view), name="tickets_ticket_totals"
        )
        export = path(
            "export.csv",
            self.admin_site.admin_view(self.export_view),
            name="tickets_ticket_export",
        )
        return [totals, export, *super().get_urls()]

    def totals_view(self, request: HttpRequest) -> HttpResponse:
        """Receipts, refunds and failures per UTC day and currency (`?days=`, 1 to 92)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            days = min(max(int(request.GET.get("days", TOTALS_DAYS)), 1), 92)
        except ValueError:
            days = TOTALS_DAYS
        rows = reports.daily_totals(days=days)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Totals per day, last {days} days (UTC)",
            "opts": self.opts,
            "days": days,
            "rows": rows,
            "totals": list(reports.grand_totals(rows).values()),
        }
        return TemplateResponse(request, "admin/tickets/ticket/totals.html", context)

    def export_view(self, request: HttpRequest) -> HttpResponseBase:
        """The ticket list as filtered and searched (the list's own querystring), as CSV."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            changelist = self.get_changelist_instance(request)
        except IncorrectLookupParameters:
            return HttpResponseBadRequest("These filters do not apply to tickets.")
        tickets = changelist.get_queryset(request)
        stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
        response = StreamingHttpResponse(
            reports.tickets_csv(tickets), content_type="text/csv; charset=utf-8"
        )
        response["Content-Disposition"] = f'attachment; filename="tickets-{stamp}.csv"'
        return response

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        """The fields' matches, and the tickets whose webhook or tasks carried the term as
        their Correlation-ID (tasks have no foreign key to tickets: see tickets_by_correlation_id).
        """
        found, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        correlated = tickets_by_correlation_id(search_term.strip())
        if correlated:
            found = found | queryset.filter(ticket_id__in=correlated)
        return found, may_have_duplicates

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        # Only a bare search (the dashboard's box, or a pasted id) jumps; filters stay a list.
        term = request.GET.get(SEARCH_VAR, "").strip()
        if term and set(request.GET) == {SEARCH_VAR} and self.has_view_permission(request):
            pk = exact_match(term)
            if pk is not None:
                return redirect(reverse("admin:tickets_ticket_change", args=[pk]))
        return super().changelist_view(request, extra_context)

    def get_fieldsets(self, request: HttpRequest, obj: Ticket | None = None) -> Any:
        fieldsets = super().get_fieldsets(request, obj)
        if not request.user.has_perm("outbox.retry_task"):
            return fieldsets
        # Same list, with a retry button by each failed effect.
        (title, options), *rest = fieldsets
        fields = tuple("effects_with_retry" if f == "effects" else f for f in options["fields"])
        return ((title, {**options, "fields": fields}), *rest)

    @admin.display(description="status")
    def standing(self, ticket: Ticket) -> str:
        return money_standing(ticket, _tasks_of(ticket, with_attempts=True))

    @admin.display(description="effects")
    def effects(self, ticket: Ticket) -> SafeString:
        return self.render_effects(ticket, can_retry=False)

    @admin.display(description="effects")
    def effects_with_retry(self, ticket: Ticket) -> SafeString:
        return self.render_effects(ticket, can_retry=True)

    def render_effects(self, ticket: Ticket, *, can_retry: bool) -> SafeString:
        back = reverse("admin:tickets_ticket_change", args=[ticket.pk])
        rows = [
            {
                "effect": state,
                "url": reverse("admin:outbox_task_change", args=[state.task.pk]),
                "error_line": first_line(state.error),
                "retry": retry_button(state.task.pk, back=back, label="Retry")
                if can_retry and state.retryable
                else "",
            }
            for state in (effect_state(t, ticket) for t in _tasks_of(ticket, with_attempts=True))
        ]
        return render_to_string("admin/tickets/ticket/effects.html", {"rows": rows})

    @admin.display(description="status", ordering="status")
    def status_now(self, ticket: Ticket) -> str:
        return standing_in_a_word(ticket, _tasks_of(ticket))

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
            '<a href="{}" title="{}" class="outbox-glance" style="color:{}">{}: {}</a>',
            (
                (
                    reverse("admin:outbox_task_change", args=[task.pk]),
                    f"task {task.pk}, "
                    + attempts_in_words(
                        task.attempts, task.max_attempts, finished=task.state in FINISHED_STATES
                    ),
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
                "attempts": history(task),
                "attempts_words": attempts_in_words(
                    task.attempts, task.max_attempts, finished=task.state in FINISHED_STATES
                ),
            }
            for task in tasks
        ]
        return render_to_string("admin/tickets/ticket/outbox_tasks.html", {"rows": rows})


def _tasks_of(ticket: Ticket, *, with_attempts: bool = False) -> Sequence[Task]:
    """The ticket's tasks, read once per page (the page's fields all show them)."""
    read = getattr(ticket, "outbox_attempts_read", None)
    if read is None or (with_attempts and not read):
        attach_tasks([ticket], with_attempts=with_attempts)
    tasks: Sequence[Task] = ticket.outbox_tasks  # type: ignore[attr-defined]
    return tasks


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
