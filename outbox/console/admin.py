"""The outbox in the Django admin: tasks are read-only; each action narrows, calls one service.

Nobody edits or deletes a task here. Operators retry, cancel, re-run and pause through actions
that each need their own permission; `prune_outbox` deletes finished tasks.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry
from django.db import transaction
from django.db.models import Q, QuerySet
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe
from django.utils.timezone import localtime

from outbox.console import selectors
from outbox.console.admin_mixins import (
    AttemptColumns,
    ReadOnlyMixin,
    attempts_in_words,
    cut_line,
    fieldset_fields,
    folded_text,
    pretty_json,
    retry_button,
)
from outbox.console.dashboard import dashboard_view
from outbox.console.health import PASS_STALE
from outbox.console.links import subject_url
from outbox.console.triage import FailureFilter, retry_group_view, retry_one_view, triage_view
from outbox.errors import UnknownTaskKind
from outbox.history import history
from outbox.models import FINISHED_STATES, Attempt, PausedKind, RelayPass, Task, TaskState
from outbox.registry import get_handler, registered_kinds, rerun_note
from outbox.services import (
    RETRYABLE_STATES,
    SettleWait,
    kind_pause,
    kind_resume,
    settle_note,
    settle_waits,
    tasks_cancel,
    tasks_retry,
)

ACTION_CHUNK = 500
CANCELABLE = (TaskState.PENDING,)
RERUNNABLE = (TaskState.SUCCEEDED,)
# A kind whose handler does not say what a re-run does.
UNSAID_RERUN = (
    "Its handler does not say what a second run does: an API that honours the idempotency "
    "key answers as the first time; one that does not may do the effect twice."
)


def _chunks(ids: Sequence[int], size: int) -> Iterator[Sequence[int]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def _user_id(request: HttpRequest) -> int:
    pk = request.user.pk
    assert pk is not None, "admin views run for a logged-in staff user"
    return int(pk)


def _after_dots(text: str) -> list[str]:
    parts = text.split(".")
    return [part + "." for part in parts[:-1]] + parts[-1:]


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


class CreatedAgeFilter(admin.SimpleListFilter):
    title = "created"
    parameter_name = "created"

    WINDOWS = {
        "hour": timedelta(hours=1),
        "day": timedelta(days=1),
        "week": timedelta(weeks=1),
    }

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [
            ("hour", "In the last hour"),
            ("day", "In the last day"),
            ("week", "In the last week"),
            ("older", "More than a week ago"),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        now = timezone.now()
        if value in self.WINDOWS:
            return queryset.filter(created_at__gte=now - self.WINDOWS[value])
        if value == "older":
            return queryset.filter(created_at__lt=now - self.WINDOWS["week"])
        return queryset


class KindFilter(admin.SimpleListFilter):
    """The task kinds this process has handlers for, and any other kind still open or ended
    badly: read from the registry and the partial indexes, not `SELECT DISTINCT kind` over
    every task that ever ran (200 ms a page load at 1,000,000 tasks)."""

    title = "kind"
    parameter_name = "kind"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        kinds = set(registered_kinds())
        kinds.update(row.kind for row in selectors.task_counts_by_kind(succeeded={}))
        return [(kind, kind) for kind in sorted(kinds)]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        return queryset.filter(kind=value) if value else queryset


class HttpStatusFilter(admin.SimpleListFilter):
    """HTTP statuses of the failed tries of the last week (the partial `started_at` index):
    not `SELECT DISTINCT http_status` over every attempt kept. The parameter is the one
    Django's own filter used, so links to it still work."""

    title = "HTTP status"
    parameter_name = "http_status__exact"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(str(status), str(status)) for status in selectors.recent_http_statuses()]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        return queryset.filter(http_status=int(value)) if value and value.isdigit() else queryset


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
class TaskAdmin(ReadOnlyMixin, admin.ModelAdmin):
    # Six columns, so the last error is on screen at 1366 px beside the filters: the queue is a
    # filter, the dedupe key sits under the kind, due and finished share one column.
    list_display = ("id", "task_kind", "state", "tries", "created_at", "due_or_done", "error_line")
    list_filter = ("state", KindFilter, "queue", CreatedAgeFilter, FailureFilter)
    # Shows the search box; `get_search_results` decides how each field is matched.
    search_fields = ("id", "dedupe_key", "idempotency_key", "payload")
    search_help_text = (
        "Whole values: task id, dedupe key (or its part after the last colon), "
        "idempotency key, or any value in the payload (the id a task is about, say). "
        "Several values separated by spaces find each of them."
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
        ("Keys", {"fields": ("dedupe_key", "idempotency_key", "correlation_id")}),
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
        """Whole-value matches only, so `t-1` does not also find `t-10`."""
        match = (
            Q(dedupe_key=term)
            | Q(dedupe_key__endswith=f":{term}")
            | Q(idempotency_key=term)
            # A JSON-encoded string, quotes included, is a whole value inside the payload.
            | Q(payload__icontains=json.dumps(term))
        )
        if json.dumps(term, ensure_ascii=False) != json.dumps(term):
            match |= Q(payload__icontains=json.dumps(term, ensure_ascii=False))
        if term.isdigit():
            match |= Q(id=int(term))
        return match

    # Permissions of the actions -----------------------------------------------------------

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("outbox.retry_task")

    def has_cancel_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("outbox.cancel_task")

    def has_rerun_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("outbox.rerun_task")

    def has_pause_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("outbox.pause_kind")

    def has_force_retry_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("outbox.force_retry_task")

    # Actions -------------------------------------------------------------------------------

    @admin.action(description="Retry now (failed or waiting tasks)", permissions=["retry"])
    def retry_now(self, request: HttpRequest, queryset: QuerySet[Task]) -> None:
        # Listed first: the selection's filters (state=failed, say) no longer match after.
        ids = list(queryset.order_by().values_list("id", flat=True))
        changed, left = self.apply_to_task_ids(
            request,
            ids,
            states=RETRYABLE_STATES,
            service=lambda tasks: tasks_retry(tasks=tasks),
            log_message="Retried now from the admin (fresh attempt budget).",
        )
        self.report(
            request,
            f"{_plural(changed, 'task')} due now with a fresh attempt budget.",
            changed,
            left,
            "were not failed or pending",
        )
        waiting = settle_note(settle_waits(task_ids=ids))
        if waiting:
            self.message_user(request, f"Not at once: {waiting}", messages.WARNING)

    @admin.action(
        description="Retry at once, not waiting for writes in flight…", permissions=["force_retry"]
    )
    def force_retry(
        self, request: HttpRequest, queryset: QuerySet[Task]
    ) -> TemplateResponse | None:
        ids = list(queryset.filter(state__in=RETRYABLE_STATES).values_list("id", flat=True))
        waits = settle_waits(task_ids=ids)
        if request.POST.get("post") != "yes":
            return self.force_retry_confirmation(request, queryset, waits)
        changed, left = self.apply_to_tasks(
            request,
            queryset,
            states=RETRYABLE_STATES,
            service=lambda tasks: tasks_retry(tasks=tasks, skip_settle=True),
            log_message=(
                "Retried at once from the admin, not waiting for a write in flight: "
                + (settle_note(waits) or "no write was in flight.")
            ),
        )
        self.report(
            request,
            f"{_plural(changed, 'task')} due now with a fresh attempt budget, without waiting "
            "for writes in flight.",
            changed,
            left,
            "were not failed or pending",
        )
        return None

    @admin.action(description="Cancel (waiting tasks)", permissions=["cancel"])
    def cancel_tasks(self, request: HttpRequest, queryset: QuerySet[Task]) -> None:
        user = request.user.get_username()
        changed, left = self.apply_to_tasks(
            request,
            queryset,
            states=CANCELABLE,
            service=lambda tasks: tasks_cancel(tasks=tasks, reason=f"canceled by {user}"),
            log_message="Canceled from the admin.",
        )
        self.report(
            request, f"{_plural(changed, 'task')} canceled.", changed, left, "were not pending"
        )

    @admin.action(description="Re-run succeeded tasks…", permissions=["rerun"])
    def rerun_succeeded(
        self, request: HttpRequest, queryset: QuerySet[Task]
    ) -> TemplateResponse | None:
        if request.POST.get("post") != "yes":
            return self.rerun_confirmation(request, queryset)
        changed, left = self.apply_to_tasks(
            request,
            queryset,
            states=RERUNNABLE,
            service=lambda tasks: tasks_retry(tasks=tasks, include_succeeded=True),
            log_message="Re-run from the admin: the succeeded task runs again.",
        )
        self.report(
            request,
            f"{_plural(changed, 'succeeded task')} will run again.",
            changed,
            left,
            "had not succeeded",
        )
        return None

    @admin.action(description="Pause the kinds of the selected tasks", permissions=["pause"])
    def pause_kinds(self, request: HttpRequest, queryset: QuerySet[Task]) -> None:
        kinds = self.selected_kinds(queryset)
        by = request.user.get_username()
        paused = [kind for kind in kinds if kind_pause(kind=kind, by=by)]
        if paused:
            LogEntry.objects.log_actions(
                user_id=_user_id(request),
                queryset=list(PausedKind.objects.filter(kind__in=paused)),
                action_flag=ADDITION,
                change_message="Paused from the task list.",
            )
        message = f"Paused: {', '.join(paused)}." if paused else "No kind was paused."
        if len(paused) < len(kinds):
            message += f" Already paused: {', '.join(sorted(set(kinds) - set(paused)))}."
        self.message_user(request, message, messages.SUCCESS if paused else messages.WARNING)

    @admin.action(description="Resume the kinds of the selected tasks", permissions=["pause"])
    def resume_kinds(self, request: HttpRequest, queryset: QuerySet[Task]) -> None:
        self.resume(request, self.selected_kinds(queryset))

    # Helpers shared by the actions --------------------------------------------------------

    @staticmethod
    def selected_kinds(queryset: QuerySet[Task]) -> list[str]:
        return sorted(set(queryset.order_by().values_list("kind", flat=True).distinct()))

    def resume(self, request: HttpRequest, kinds: Sequence[str]) -> None:
        paused = list(PausedKind.objects.filter(kind__in=kinds))
        resumed = [row for row in paused if kind_resume(kind=row.kind)]
        if resumed:
            LogEntry.objects.log_actions(
                user_id=_user_id(request),
                queryset=resumed,
                action_flag=DELETION,
                change_message="Resumed.",
            )
        names = ", ".join(row.kind for row in resumed)
        message = f"Resumed: {names}." if resumed else "None of these kinds was paused."
        self.message_user(request, message, messages.SUCCESS if resumed else messages.WARNING)

    def apply_to_tasks(
        self,
        request: HttpRequest,
        queryset: QuerySet[Task],
        *,
        states: Sequence[str],
        service: Callable[[QuerySet[Task]], int],
        log_message: str,
    ) -> tuple[int, int]:
        """Run `service` on the selected tasks still in `states`; log each one it changed.

        Returns (changed, left alone). Each chunk locks its rows first, so the log names
        exactly the tasks the service changed, even with a relay or another operator at work.
        """
        selected = list(queryset.order_by().values_list("id", flat=True))
        return self.apply_to_task_ids(
            request, selected, states=states, service=service, log_message=log_message
        )

    def apply_to_task_ids(
        self,
        request: HttpRequest,
        selected: Sequence[int],
        *,
        states: Sequence[str],
        service: Callable[[QuerySet[Task]], int],
        log_message: str,
    ) -> tuple[int, int]:
        """`apply_to_tasks` for tasks named by id (a triage group, one task's retry button)."""
        changed = 0
        for chunk in _chunks(selected, ACTION_CHUNK):
            with transaction.atomic():
                locked = list(
                    selectors.tasks_with_ids(chunk, states=states)
                    .select_for_update()
                    .values_list("id", flat=True)
                )
                if not locked:
                    continue
                changed += service(selectors.tasks_with_ids(locked, states=states))
                LogEntry.objects.log_actions(
                    user_id=_user_id(request),
                    queryset=Task.objects.filter(id__in=locked).only("id", "kind", "state"),
                    action_flag=CHANGE,
                    change_message=log_message,
                )
        return changed, len(selected) - changed

    def report(
        self, request: HttpRequest, done: str, changed: int, left: int, because: str
    ) -> None:
        message = done
        if left:
            message += f" {_plural(left, 'selected task')} {because} and stayed as they were."
        self.message_user(request, message, messages.SUCCESS if changed else messages.WARNING)

    def rerun_confirmation(
        self, request: HttpRequest, queryset: QuerySet[Task]
    ) -> TemplateResponse:
        succeeded = queryset.filter(state__in=RERUNNABLE).order_by("id")
        count = succeeded.count()
        context = {
            **self.admin_site.each_context(request),
            "title": "Run succeeded tasks again?",
            "opts": self.opts,
            "count": count,
            "left_alone": queryset.count() - count,
            "sample": succeeded[:100],
            "kinds": [
                (kind, rerun_note(kind) or UNSAID_RERUN) for kind in self.selected_kinds(succeeded)
            ],
            "selected": request.POST.getlist(ACTION_CHECKBOX_NAME),
            "select_across": request.POST.get("select_across", "0"),
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/outbox/task/rerun_confirmation.html", context)

    def force_retry_confirmation(
        self, request: HttpRequest, queryset: QuerySet[Task], waits: Sequence[SettleWait]
    ) -> TemplateResponse:
        context = {
            **self.admin_site.each_context(request),
            "title": "Retry at once, while a write may still land?",
            "opts": self.opts,
            "count": queryset.filter(state__in=RETRYABLE_STATES).count(),
            "waits": waits,
            "selected": request.POST.getlist(ACTION_CHECKBOX_NAME),
            "select_across": request.POST.get("select_across", "0"),
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/outbox/task/force_retry_confirmation.html", context)

    # The dashboard -------------------------------------------------------------------------

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


@admin.register(Attempt)
class AttemptAdmin(AttemptColumns, ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("id", "task_link", "number", "started_at", "duration", "outcome", "http_status")
    list_filter = ("outcome", HttpStatusFilter)
    search_fields = ("task__id__exact",)
    search_help_text = "Task id."
    ordering = ("-id",)
    show_full_result_count = False
    list_select_related = ("task",)

    class Media:
        css = {"all": ("outbox/admin.css",)}

    fields = (
        "task_link",
        "number",
        "started_at",
        "duration",
        "outcome",
        "http_status",
        "worker",
        "error_text",
    )
    readonly_fields = fields

    @admin.display(description="task")
    def task_link(self, attempt: Attempt) -> SafeString:
        url = reverse("admin:outbox_task_change", args=[attempt.task_id])
        return format_html('<a href="{}">{}</a>', url, attempt.task)


@admin.register(PausedKind)
class PausedKindAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("kind", "paused_at", "paused_by")
    ordering = ("kind",)
    actions = ("resume_selected",)

    def has_pause_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("outbox.pause_kind")

    @admin.action(description="Resume the selected kinds", permissions=["pause"])
    def resume_selected(self, request: HttpRequest, queryset: QuerySet[PausedKind]) -> None:
        task_admin = self.admin_site.get_model_admin(Task)
        assert isinstance(task_admin, TaskAdmin)
        task_admin.resume(request, [row.kind for row in queryset])


# Operations: relay passes, django-q2's own pages, the index ----------------------------------
# (kept in one block at the end: the task admin above changes for other reasons)


@admin.register(RelayPass)
class RelayPassAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """The relay passes registered now, so a dead node shows as stale rather than silence."""

    list_display = ("worker", "node", "liveness", "started_at", "heartbeat_at")
    ordering = ("worker", "started_at")
    fields = ("id", "worker", "node", "liveness", "started_at", "heartbeat_at")
    readonly_fields = fields

    @admin.display(description="node (host:pid)")
    def node(self, relay_pass: RelayPass) -> str:
        return selectors.node_of(relay_pass.worker)

    @admin.display(description="state")
    def liveness(self, relay_pass: RelayPass) -> str:
        if relay_pass.heartbeat_at < timezone.now() - PASS_STALE:
            return "stale (no heartbeat lately: its worker died or hangs)"
        return "live"


def _hide_django_q_admin() -> None:
    """One place for tasks: django-q2's pages list relay passes as its own "tasks", and its
    Schedule page lets a superuser delete the schedules that keep the relay alive."""
    # Imported here first (its registrations run now) so they can be undone; autodiscover
    # then finds the module already imported and registers nothing again.
    from django_q import admin as _django_q_admin  # noqa: F401
    from django_q.models import Failure, OrmQ, Schedule, Success

    for model in (Success, Failure, Schedule, OrmQ):
        if admin.site.is_registered(model):
            admin.site.unregister(model)


_hide_django_q_admin()
# The index leads with the dashboard.
admin.site.index_template = "admin/outbox/index.html"
