"""The other outbox pages: attempts, paused kinds, relay passes; django-q2's own pages hidden."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from outbox.console import selectors
from outbox.console.admin.filters import HttpStatusFilter
from outbox.console.admin.tasks import TaskAdmin
from outbox.console.admin_mixins import (
    AttemptColumns,
    ReadOnlyMixin,
)
from outbox.console.health import PASS_STALE
from outbox.models import Attempt, PausedKind, RelayPass, Task


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
