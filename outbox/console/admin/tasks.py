"""The task list and the task page: read-only, a task's history inline, the pages hung off it."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin
from django.db.models import Q, QuerySet
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, path, reverse
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe
from django.utils.timezone import localtime

from outbox.console import selectors
from outbox.console.actions import TaskActions
from outbox.console.admin.filters import CreatedAgeFilter, KindFilter
from outbox.console.admin_mixins import (
    AttemptColumns,
    ReadOnlyMixin,
    attempts_in_words,
    cut_line,
    fieldset_fields,
    folded_text,
    pretty_json,
    retry_button,
    trace_link,
)
from outbox.console.dashboard import dashboard_view
from outbox.console.links import subject_url, task_search_keys
from outbox.console.triage import FailureFilter, retry_group_view, retry_one_view, triage_view
from outbox.errors import UnknownTaskKind
from outbox.history import history
from outbox.models import FINISHED_STATES, Attempt, Task
from outbox.registry import get_handler
from outbox.services import (
    RETRYABLE_STATES,
)


def _after_dots(text: str) -> list[str]:
    parts = text.split(".")
    return [part + "." for part in parts[:-1]] + parts[-1:]


class HistoryFormSet(BaseInlineFormSet):
    """The task's history as `outbox.history` reads it: its Attempt rows, then the success its
    row keeps (an unsaved Attempt). Display only: the inline is read-only."""

    def get_queryset(self) -> Any:
        return history(self.instance) if self.instance.pk is not None else []


class AttemptInline(AttemptColumns, ReadOnlyMixin, admin.TabularInline):
    model = Attempt
    formset = HistoryFormSet
    extra = 0
    can_delete = False
    fields = ("number", "started_at", "duration", "outcome", "http_status", "error_text", "worker")
    readonly_fields = fields


@admin.register(Task)
class TaskAdmin(ReadOnlyMixin, TaskActions):
    # Six columns, so the last error is on screen at 1366 px beside the filters: the queue is a
    # filter, the dedupe key sits under the kind, due and finished share one column.
    list_display = ("id", "task_kind", "state", "tries", "created_at", "due_or_done", "error_line")
    list_filter = ("state", KindFilter, "queue", CreatedAgeFilter, FailureFilter)
    # Shows the search box; `get_search_results` decides how each field is matched.
    search_fields = ("id", "dedupe_key", "idempotency_key", "payload")
    search_help_text = (
        "Whole values: task id, dedupe key (or its part after the last colon), "
        "idempotency key, or any value in the payload (the id a task is about, say). "
        "Several values separated by spaces find each of them. A value the application "
        "itself knows (the id of what a task is about, say) is found at once; any other is "
        "looked for in every task, which takes a while on a big table."
    )
    ordering = ("-id",)
    list_per_page = 100
    # Counting a table of millions on every page load costs more than it tells.
    show_full_result_count = False
    actions = (
        "retry_now",
        "force_retry",
        "cancel_tasks",
        "pause_kinds",
        "resume_kinds",
        "rerun_succeeded",
    )
    inlines = (AttemptInline,)

    class Media:
        # Long errors wrap, wide tables scroll in their box: readable at 1366 px.
        css = {"all": ("outbox/admin.css",)}

    fieldsets = (
        (None, {"fields": ("id", "kind", "subject", "state", "queue", "attempts_used")}),
        ("Keys", {"fields": ("dedupe_key", "idempotency_key", "correlation_id", "trace")}),
        (
            "Times",
            {
                "fields": (
                    "created_at",
                    "available_at",
                    "updated_at",
                    "finished_at",
                    "lease_expires_at",
                    "leased_by",
                )
            },
        ),
        ("Data", {"fields": ("payload_pretty", "result_pretty", "last_error_text")}),
    )
    readonly_fields = (*fieldset_fields(fieldsets), "retry")

    def get_fieldsets(self, request: HttpRequest, obj: Task | None = None) -> Any:
        fieldsets = super().get_fieldsets(request, obj)
        if (
            obj is None
            or obj.state not in RETRYABLE_STATES
            or not self.has_retry_permission(request)
        ):
            return fieldsets
        (title, options), *rest = fieldsets
        return ((title, {**options, "fields": (*options["fields"], "retry")}), *rest)

    # Columns and fields ------------------------------------------------------------------

    @admin.display(description="attempts")
    def attempts_used(self, task: Task) -> str:
        return attempts_in_words(
            task.attempts, task.max_attempts, finished=task.state in FINISHED_STATES
        )

    @admin.display(description="kind", ordering="kind")
    def task_kind(self, task: Task) -> SafeString:
        """The kind, and under it the dedupe key (what the task is about)."""
        # A break allowed after each dot: `tickets.append_sheet_row` is one long word.
        kind = format_html_join(
            mark_safe("<wbr>"), "{}", ((part,) for part in _after_dots(task.kind))
        )
        if not task.dedupe_key:
            return kind
        return format_html('{}<br><small class="outbox-wrap">{}</small>', kind, task.dedupe_key)

    @admin.display(description="tries", ordering="attempts")
    def tries(self, task: Task) -> SafeString:
        """`7 tries`, the budget in its tooltip (the task's page says it in full)."""
        words = attempts_in_words(
            task.attempts, task.max_attempts, finished=task.state in FINISHED_STATES
        )
        return format_html('<span title="{}">{}</span>', words, task.attempts)

    @admin.display(description="due / finished", ordering="available_at")
    def due_or_done(self, task: Task) -> str:
        if task.finished_at is not None:
            return f"finished {date_format(localtime(task.finished_at), 'DATETIME_FORMAT')}"
        return f"due {date_format(localtime(task.available_at), 'DATETIME_FORMAT')}"

    @admin.display(description="last error")
    def error_line(self, task: Task) -> SafeString | str:
        return cut_line(selectors.error_summary(task.last_error), limit=120)

    @admin.display(description="about")
    def subject(self, task: Task) -> SafeString | str:
        """What the task is about (its handler's `label` value), linked to the domain's page."""
        try:
            handler = get_handler(task.kind)
        except UnknownTaskKind:
            return "-"
        value = handler.subject(task.payload)
        if value is None:
            return "-"
        url = subject_url(task.kind, value)
        text = f"{handler.label} {value}"
        return format_html('<a href="{}">{}</a>', url, text) if url else text

    @admin.display(description="retry")
    def retry(self, task: Task) -> SafeString:
        return retry_button(
            task.pk, back=reverse("admin:outbox_task_change", args=[task.pk]), label="Retry now"
        )

    @admin.display(description="trace")
    def trace(self, task: Task) -> SafeString | str:
        return trace_link(task.trace_context)

    @admin.display(description="payload")
    def payload_pretty(self, task: Task) -> SafeString:
        return pretty_json(task.payload)

    @admin.display(description="result")
    def result_pretty(self, task: Task) -> SafeString:
        return pretty_json(task.result)

    @admin.display(description="last error")
    def last_error_text(self, task: Task) -> SafeString | str:
        return folded_text(task.last_error, summary=selectors.error_summary(task.last_error))

    # Search ------------------------------------------------------------------------------

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Task], search_term: str
    ) -> tuple[QuerySet[Task], bool]:
        terms = search_term.split()
        if not terms:
            return queryset, False
        match = Q()
        for term in terms:
            match |= self.term_match(term)
        return queryset.filter(match), False

    @staticmethod
    def term_match(term: str) -> Q:
        """Whole-value matches only, so `t-1` does not also find `t-10`.

        A term the domain knows (a ticket id, a customer's email: `register_task_search`)
        matches the dedupe keys it names, on the unique index. Any other term is also looked
        for in the idempotency keys, the dedupe keys' last parts and the payloads, which no
        index serves: a scan of the table (about half a second at a million tasks).
        """
        match = Q(dedupe_key=term)
        if term.isdigit():
            match |= Q(id=int(term))
        keys = task_search_keys(term)
        if keys is not None:
            return match | Q(dedupe_key__in=keys)
        match |= (
            Q(dedupe_key__endswith=f":{term}")
            | Q(idempotency_key=term)
            # A JSON-encoded string, quotes included, is a whole value inside the payload.
            | Q(payload__icontains=json.dumps(term))
        )
        if json.dumps(term, ensure_ascii=False) != json.dumps(term):
            match |= Q(payload__icontains=json.dumps(term, ensure_ascii=False))
        return match

    # Permissions of the actions -----------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        dashboard = path(
            "dashboard/",
            self.admin_site.admin_view(self.dashboard_view),
            name="outbox_task_dashboard",
        )
        triage = path(
            "triage/", self.admin_site.admin_view(self.triage_view), name="outbox_task_triage"
        )
        retry_group = path(
            "triage/retry/",
            self.admin_site.admin_view(self.retry_group_view),
            name="outbox_task_retry_group",
        )
        retry_one = path(
            "<int:task_id>/retry/",
            self.admin_site.admin_view(self.retry_one_view),
            name="outbox_task_retry",
        )
        return [dashboard, triage, retry_group, retry_one, *super().get_urls()]

    def triage_view(self, request: HttpRequest) -> HttpResponse:
        return triage_view(self, request)

    def retry_group_view(self, request: HttpRequest) -> HttpResponse:
        return retry_group_view(self, request)

    def retry_one_view(self, request: HttpRequest, task_id: int) -> HttpResponse:
        return retry_one_view(self, request, task_id)

    def dashboard_view(self, request: HttpRequest) -> HttpResponse:
        return dashboard_view(self, request)
