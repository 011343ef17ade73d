"""What an operator does to tasks from the list: each action narrows, checks its own permission,
calls one service and says what it did."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse

from outbox.console import selectors
from outbox.models import PausedKind, Task, TaskState
from outbox.registry import force_retry_note, rerun_note
from outbox.services import (
    RETRYABLE_STATES,
    SettleWait,
    kind_pause,
    kind_resume,
    retried_note,
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
# A kind whose handler does not say what a forced retry risks.
UNSAID_FORCE_RETRY = (
    "Its handler does not say what a forced retry risks: a write of the last try may still "
    "land, and a try now may make the effect a second time."
)


def _chunks(ids: Sequence[int], size: int) -> Iterator[Sequence[int]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def _user_id(request: HttpRequest) -> int:
    pk = request.user.pk
    assert pk is not None, "admin views run for a logged-in staff user"
    return int(pk)


def started_by(request: HttpRequest) -> str:
    """Who an admin action's trace says started it."""
    return f"admin user {request.user.get_username()}"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


class TaskActions(admin.ModelAdmin):
    """The task list's actions and their confirmation pages, mixed into TaskAdmin."""

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
            service=lambda tasks: tasks_retry(tasks=tasks, started_by=started_by(request)),
            log_message="Retried now from the admin (fresh attempt budget).",
        )
        # The settle is kept: a task whose last try got no answer is due when its wait ends.
        waits = settle_waits(task_ids=ids)
        self.report(
            request,
            retried_note(changed, waits),
            changed,
            left,
            "were not failed or pending",
            level=messages.WARNING if waits else None,
        )

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
            service=lambda tasks: tasks_retry(
                tasks=tasks, skip_settle=True, started_by=started_by(request)
            ),
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
            service=lambda tasks: tasks_retry(
                tasks=tasks, include_succeeded=True, started_by=started_by(request)
            ),
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
        self,
        request: HttpRequest,
        done: str,
        changed: int,
        left: int,
        because: str,
        *,
        level: int | None = None,
    ) -> None:
        message = done
        if left:
            message += f" {_plural(left, 'selected task')} {because} and stayed as they were."
        if level is None:
            level = messages.SUCCESS if changed else messages.WARNING
        self.message_user(request, message, level)

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
        waiting = Task.objects.filter(id__in=[wait.task_id for wait in waits])
        context = {
            **self.admin_site.each_context(request),
            "title": "Retry at once, while a write may still land?",
            "opts": self.opts,
            "count": queryset.filter(state__in=RETRYABLE_STATES).count(),
            "waits": waits,
            "risks": [
                (kind, force_retry_note(kind) or UNSAID_FORCE_RETRY)
                for kind in self.selected_kinds(waiting)
            ],
            "selected": request.POST.getlist(ACTION_CHECKBOX_NAME),
            "select_across": request.POST.get("select_across", "0"),
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/outbox/task/force_retry_confirmation.html", context)

    # The dashboard -------------------------------------------------------------------------
