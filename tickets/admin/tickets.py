"""The tickets' list and page, read-only, each with the outbox tasks it caused and their tries."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import SEARCH_VAR, ChangeList
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
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
from django.utils import timezone
from django.utils.html import format_html_join
from django.utils.safestring import SafeString, mark_safe

from outbox.console.admin_mixins import (
    ReadOnlyMixin,
    attempts_in_words,
    retry_button,
    trace_link,
)
from outbox.history import history
from outbox.models import FINISHED_STATES
from tickets import reports
from tickets.admin.effects import (
    STATE_COLOURS,
    attach_tasks,
    effect_label,
    effect_state,
    exact_match,
    first_line,
    money_standing,
    standing_in_a_word,
    tasks_of,
)
from tickets.models import Ticket
from tickets.selectors import tickets_by_correlation_id

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
        ("Outbox tasks", {"fields": ("traces", "outbox_tasks_detail")}),
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
        "traces",
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
        return money_standing(ticket, tasks_of(ticket, with_attempts=True))

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
            for state in (effect_state(t, ticket) for t in tasks_of(ticket, with_attempts=True))
        ]
        return render_to_string("admin/tickets/ticket/effects.html", {"rows": rows})

    @admin.display(description="status", ordering="status")
    def status_now(self, ticket: Ticket) -> str:
        return standing_in_a_word(ticket, tasks_of(ticket))

    @admin.display(description="price", ordering="price_amount")
    def price(self, ticket: Ticket) -> str:
        return f"{ticket.price_amount} {ticket.price_currency}"

    @admin.display(description="tasks")
    def tasks_at_a_glance(self, ticket: Ticket) -> SafeString | str:
        tasks = tasks_of(ticket)
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

    @admin.display(description="traces")
    def traces(self, ticket: Ticket) -> SafeString | str:
        """The traces of the ticket's tasks, once each: the delivery's, a refund's, a retry's."""
        seen: dict[str, Any] = {}
        for task in tasks_of(ticket):
            carrier = task.trace_context
            if isinstance(carrier, dict) and carrier.get("traceparent"):
                seen.setdefault(json.dumps(carrier, sort_keys=True), carrier)
        links = [trace_link(carrier) for carrier in seen.values()]
        return format_html_join(mark_safe("<br>"), "{}", ((link,) for link in links)) or "-"

    @admin.display(description="tasks and attempts")
    def outbox_tasks_detail(self, ticket: Ticket) -> SafeString:
        tasks = tasks_of(ticket, with_attempts=True)
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
