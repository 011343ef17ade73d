"""A task's history of tries, the one way every reader gets it.

A try that did not succeed is an `Attempt` row. A success is kept on the task row
(`Task.succeeded_*`, its number `attempts`, its worker `leased_by`) and writes no row of its
own: the outcome's UPDATE is the only write a success makes. Readers (the admin's task and
ticket pages, `/api/tasks/{id}`, `/metrics`) see the same history as when every try was a
row: the Attempt rows in the order they were written, then the success rebuilt from the task
row as an unsaved `Attempt` (no `pk`), numbered where it happened.

A success is an Attempt row instead when it was recorded before migration 0011 (those rows
stay), or when its task was re-run: the re-run folds the success into a row first
(`outbox.services.fold_successes`), so the task row only ever holds the latest try.
"""

from __future__ import annotations

import enum
from typing import Final

from django.db.models import Count, Prefetch, QuerySet

from outbox.models import Attempt, AttemptOutcome, Task, TaskState

# The prefetched Attempt rows of a task, by id, when `with_history` read them.
_ROWS = "outbox_attempt_rows"


class SuccessOnTask(enum.Enum):
    """`previous_try`'s answer for a try that succeeded and is kept on the task row."""

    SUCCEEDED = "succeeded on the task row"


SUCCESS_ON_TASK: Final = SuccessOnTask.SUCCEEDED


def success_on_task(task: Task) -> Attempt | None:
    """The success the task row keeps, as an unsaved Attempt; None when it keeps none."""
    if task.state != TaskState.SUCCEEDED or task.succeeded_started_at is None:
        return None
    return Attempt(
        task_id=task.pk,
        number=task.attempts,
        started_at=task.succeeded_started_at,
        duration_ms=task.succeeded_duration_ms or 0.0,
        outcome=AttemptOutcome.SUCCEEDED,
        http_status=task.succeeded_http_status,
        error="",
        worker=task.leased_by,
    )


def with_history(tasks: QuerySet[Task]) -> QuerySet[Task]:
    """`tasks` with their Attempt rows read in one more query, for `history`."""
    return tasks.prefetch_related(
        Prefetch("attempt_set", queryset=Attempt.objects.order_by("id"), to_attr=_ROWS)
    )


def history(task: Task) -> list[Attempt]:
    """Every try of `task` in the order it happened, the success (if any) last.

    Rows by id, the order they were written (not `number`: tasks retried before the numbers
    kept counting started again from 1). One query unless `with_history` read them already.
    """
    rows: list[Attempt] | None = getattr(task, _ROWS, None)
    if rows is None:
        rows = list(Attempt.objects.filter(task_id=task.pk).order_by("id"))
        setattr(task, _ROWS, rows)
    success = success_on_task(task)
    return [*rows, success] if success is not None else list(rows)


def task_with_history(task_id: int) -> Task | None:
    """The task, its history ready for `history`; None when there is none. Two queries."""
    return with_history(Task.objects.filter(id=task_id)).first()


def previous_try(task_id: int, number: int) -> Attempt | SuccessOnTask | None:
    """What became of try `number` of a task: its Attempt row; `SUCCESS_ON_TASK` when that try
    is the success its task row keeps; None when it left nothing (its worker died, or lost
    the lease, mid-try: it vanished). One query, two when there is no row.
    """
    row = Attempt.objects.filter(task_id=task_id, number=number).order_by("-id").first()
    if row is not None:
        return row
    kept = Task.objects.filter(
        id=task_id,
        state=TaskState.SUCCEEDED,
        attempts=number,
        succeeded_started_at__isnull=False,
    ).exists()
    return SUCCESS_ON_TASK if kept else None


def tries_by_outcome(*, successes_on_tasks: int | None = None) -> dict[str, int]:
    """Tries per outcome, every outcome present, zero or not: the rows, plus the successes kept
    on task rows (counted here unless the caller has the number, `successes_on_tasks`)."""
    counts = dict.fromkeys(AttemptOutcome.values, 0)
    rows = Attempt.objects.order_by().values_list("outcome").annotate(n=Count("id"))
    for outcome, n in rows.values_list("outcome", "n"):
        counts[outcome] = n
    if successes_on_tasks is None:
        successes_on_tasks = Task.objects.filter(
            state=TaskState.SUCCEEDED, succeeded_started_at__isnull=False
        ).count()
    counts[AttemptOutcome.SUCCEEDED] += successes_on_tasks
    return counts
