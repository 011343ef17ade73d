"""Failure triage: failing tasks grouped by kind and error signature, each group retried at once.

A bad day is a few groups of alike failures (`tickets.issue_receipt` / `HTTP 503`), not
thousands of tasks; this page names them, links each to the task list filtered to it, and
retries one group with a single button.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme

from outbox.console import selectors
from outbox.console.actions import started_by
from outbox.services import RETRYABLE_STATES, retried_note, settle_waits, tasks_retry

if TYPE_CHECKING:
    from outbox.console.actions import TaskActions

FAILURE_PARAM = "failure"


class FailureFilter(admin.SimpleListFilter):
    """`?failure=<signature>`: the failing tasks that fail this way (the triage page links it).

    Offered only while in use: listing every signature would cost the list a scan of every
    failing task on each load.
    """

    title = "failure"
    parameter_name = FAILURE_PARAM

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        value = self.value()
        return [(value, value)] if value else []

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if not value:
            return queryset
        kind = request.GET.get("kind") or None
        return queryset.filter(id__in=selectors.failure_group_ids(kind=kind, signature=value))


def group_list_url(kind: str, signature: str) -> str:
    query = urlencode({"kind": kind, FAILURE_PARAM: signature})
    return f"{reverse('admin:outbox_task_changelist')}?{query}"


def triage_view(model_admin: TaskActions, request: HttpRequest) -> HttpResponse:
    """The page TaskAdmin serves at `triage/` (URL name `admin:outbox_task_triage`)."""
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    groups = selectors.failure_groups()
    context = {
        **model_admin.admin_site.each_context(request),
        "title": "Failure triage",
        "opts": model_admin.opts,
        "groups": [(group, group_list_url(group.kind, group.signature)) for group in groups],
        "total": sum(group.count for group in groups),
        "can_retry": model_admin.has_retry_permission(request),
    }
    return TemplateResponse(request, "admin/outbox/task/triage.html", context)


def retry_group_view(model_admin: TaskActions, request: HttpRequest) -> HttpResponse:
    """Retry exactly one triage group's tasks still failed or waiting; log each one.

    Back to `next` (the dashboard's button sends its own address), else to the triage page.
    """
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    if not model_admin.has_retry_permission(request):
        raise PermissionDenied
    kind = request.POST.get("kind", "")
    signature = request.POST.get("signature", "")
    if not kind or not signature:
        model_admin.message_user(request, "No group was named.", messages.ERROR)
        return HttpResponseRedirect(reverse("admin:outbox_task_triage"))
    ids = selectors.failure_group_ids(kind=kind, signature=signature)
    changed, _left = model_admin.apply_to_task_ids(
        request,
        ids,
        states=RETRYABLE_STATES,
        service=lambda tasks: tasks_retry(tasks=tasks, started_by=started_by(request)),
        log_message=f"Retried from failure triage ({kind} / {signature}).",
    )
    waits = settle_waits(task_ids=ids)
    model_admin.message_user(
        request,
        # Led by the number: the admin capitalises a message's first letter, and a kind's.
        retried_note(changed, waits, what=f"of {kind} / {signature}"),
        messages.WARNING if waits or not changed else messages.SUCCESS,
    )
    return HttpResponseRedirect(_next_or(request, reverse("admin:outbox_task_triage")))


def retry_one_view(model_admin: TaskActions, request: HttpRequest, task_id: int) -> HttpResponse:
    """The retry button of one task (its page, its ticket's page); back to `next`."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    if not model_admin.has_retry_permission(request):
        raise PermissionDenied
    changed, _left = model_admin.apply_to_task_ids(
        request,
        [task_id],
        states=RETRYABLE_STATES,
        service=lambda tasks: tasks_retry(tasks=tasks, started_by=started_by(request)),
        log_message="Retried now from the admin (fresh attempt budget).",
    )
    if changed:
        waits = settle_waits(task_ids=[task_id])
        model_admin.message_user(
            request,
            retried_note(changed, waits),
            messages.WARNING if waits else messages.SUCCESS,
        )
    else:
        model_admin.message_user(
            request,
            f"Task {task_id} was not failed or waiting and stayed as it was.",
            messages.WARNING,
        )
    return HttpResponseRedirect(
        _next_or(request, reverse("admin:outbox_task_change", args=[task_id]))
    )


def _next_or(request: HttpRequest, default: str) -> str:
    """The POSTed `next` when it is a page of this site, else `default`."""
    back = request.POST.get("next", "")
    if back and url_has_allowed_host_and_scheme(
        back, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return back
    return default
