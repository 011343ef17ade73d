"""Writes to the outbox: enqueue inside the caller's transaction, and the operators' actions."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import F, QuerySet
from django.db.models.functions import Coalesce, Greatest, Now
from django.utils import timezone

from outbox import retention, tracing
from outbox.conf import outbox_settings
from outbox.errors import NotInTransaction, OutboxError, UnknownTaskKind
from outbox.models import (
    FINISHED_STATES,
    Attempt,
    AttemptOutcome,
    AttemptReply,
    PausedKind,
    Queue,
    Task,
    TaskState,
    new_idempotency_key,
)
from outbox.registry import get_handler
from outbox.sql import Retraced, insert_ignoring_conflicts

logger = logging.getLogger(__name__)

NOTIFY_CHANNEL = "outbox_task"


def wake_relay() -> None:
    """Tell waiting relay passes there is work (PostgreSQL; SQLite passes poll).

    NOTIFY is transactional: it is delivered at commit, never for work that rolled back.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"NOTIFY {NOTIFY_CHANNEL}")


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """One task to enqueue. `dedupe_key` makes a second enqueue of the same effect a no-op."""

    kind: str
    payload: dict[str, Any] = field(default_factory=dict)
    dedupe_key: str | None = None
    queue: str | None = None
    run_after: datetime | None = None
    max_attempts: int | None = None
    correlation_id: str = ""
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class EnqueuedTask:
    id: int
    kind: str
    dedupe_key: str | None


def enqueue(
    kind: str,
    payload: dict[str, Any] | None = None,
    *,
    dedupe_key: str | None = None,
    queue: str | None = None,
    run_after: datetime | None = None,
    max_attempts: int | None = None,
    correlation_id: str = "",
    idempotency_key: str | None = None,
) -> EnqueuedTask | None:
    """Add one task in the current transaction; None when its dedupe key already exists."""
    created = enqueue_many(
        [
            TaskSpec(
                kind=kind,
                payload=payload or {},
                dedupe_key=dedupe_key,
                queue=queue,
                run_after=run_after,
                max_attempts=max_attempts,
                correlation_id=correlation_id,
                idempotency_key=idempotency_key,
            )
        ]
    )
    return created[0] if created else None


def enqueue_many(specs: Sequence[TaskSpec]) -> list[EnqueuedTask]:
    """Add tasks in the current transaction in one statement; skip known dedupe keys.

    Returns the tasks created now, in the order given. Runs only inside a transaction, so the
    tasks commit or roll back with the facts that caused them.
    """
    if not connection.in_atomic_block:
        raise NotInTransaction(
            "enqueue() must run inside transaction.atomic(), with the writes that cause the "
            "tasks; outside one a task could be committed without its cause, or lost."
        )
    if not specs:
        return []
    rows = [_row_for(spec) for spec in specs]
    tracer = tracing.tracer()
    if tracer is None:
        created = _insert_ignoring_duplicates(rows)
    else:
        with tracing.send_span(tracer, len(rows)) as carrier:
            for row in rows:
                row["trace_context"] = carrier
            created = _insert_ignoring_duplicates(rows)
    if created:
        wake_relay()
    by_key = {task_key: task for task_key, task in created}
    return [by_key[row["idempotency_key"]] for row in rows if row["idempotency_key"] in by_key]


def attempt_budget(kind: str) -> int:
    """How many tries a task of `kind` gets: its handler's max_attempts or the default."""
    try:
        budget = get_handler(kind).max_attempts
    except UnknownTaskKind:
        budget = None
    return budget or outbox_settings().default_max_attempts


def _row_for(spec: TaskSpec) -> dict[str, Any]:
    handler = get_handler(spec.kind)
    queue = spec.queue or handler.queue
    if queue not in Queue.values:
        raise OutboxError(f"queue {queue!r} is not one of {Queue.values}")
    max_attempts = spec.max_attempts or attempt_budget(spec.kind)
    return {
        "kind": spec.kind,
        "payload": spec.payload,
        "dedupe_key": spec.dedupe_key,
        "idempotency_key": spec.idempotency_key or new_idempotency_key(),
        "queue": queue,
        "state": TaskState.PENDING.value,
        "attempts": 0,
        "max_attempts": max_attempts,
        "available_at": spec.run_after,
        "leased_by": "",
        "last_error": "",
        "correlation_id": spec.correlation_id,
    }


def _insert_ignoring_duplicates(rows: list[dict[str, Any]]) -> list[tuple[str, EnqueuedTask]]:
    # The unique index, not a read before the write, decides: two concurrent intakes cannot
    # both enqueue one effect.
    returned = insert_ignoring_conflicts(
        Task,
        rows,
        conflict_field="dedupe_key",
        returning=["id", "kind", "dedupe_key", "idempotency_key"],
        db_now_if_null=("available_at",),
    )
    return [(key, EnqueuedTask(id=pk, kind=kind, dedupe_key=dk)) for pk, kind, dk, key in returned]


# Operators' actions. Each narrows to the states it applies to and returns how many it changed.

RETRYABLE_STATES = (TaskState.FAILED, TaskState.PENDING)


@transaction.atomic
def tasks_retry(
    *,
    tasks: QuerySet[Task],
    include_succeeded: bool = False,
    skip_settle: bool = False,
    started_by: str = "",
) -> int:
    """Make failed, waiting or canceled tasks due now with a fresh attempt budget.

    The idempotency key stays. Callers narrow `tasks` to the states they mean (the admin's
    "Retry now" to failed and pending, `replay_tasks` to its --state): this function only
    refuses the states it must. `include_succeeded` runs succeeded tasks again too (its own
    permission in the admin).
    A running task is left alone: its lease owner is still working on it.
    A task whose last unanswered try may still have a write in flight (`settle_until` ahead)
    becomes due when that wait ends, not now: a retry must not outrun the write it would
    duplicate. `skip_settle` makes it due now all the same (its own permission in the admin).
    In a process that traces, the retry is a span saying who `started_by` is, linked to the
    tasks' traces, and their next tries are its children (outbox.tracing).
    """
    states = [*RETRYABLE_STATES, TaskState.CANCELED]
    if include_succeeded:
        states.append(TaskState.SUCCEEDED)
    narrowed = tasks.filter(state__in=states)
    if include_succeeded:
        fold_successes(narrowed)
    tracer = tracing.tracer()
    if tracer is None:
        return _retry_by_kind(narrowed, skip_settle=skip_settle)
    carriers = narrowed.filter(trace_context__isnull=False).values_list("trace_context", flat=True)
    with tracing.retry_span(
        tracer, started_by=started_by, carriers=carriers[: tracing.MAX_LINKS]
    ) as traceparent:
        retraced = {} if traceparent is None else {"trace_context": Retraced(traceparent)}
        changed = _retry_by_kind(narrowed, skip_settle=skip_settle, **retraced)
        tracing.annotate({"outbox.task.count": changed})
        return changed


def _retry_by_kind(narrowed: QuerySet[Task], *, skip_settle: bool, **more: Any) -> int:
    changed = 0
    # Attempt numbers keep counting (a handler can tell a first try from a later one, and
    # the history stays in order); the budget grows by the kind's full allowance instead.
    for kind in narrowed.order_by().values_list("kind", flat=True).distinct():
        # The state condition sits in the UPDATE itself: two replays at once requeue once.
        changed += narrowed.filter(kind=kind).update(
            state=TaskState.PENDING,
            max_attempts=F("attempts") + attempt_budget(kind),
            available_at=Now() if skip_settle else Greatest(Now(), Coalesce("settle_until", Now())),
            **({"settle_until": None} if skip_settle else {}),
            finished_at=None,
            lease_token=None,
            lease_expires_at=None,
            updated_at=Now(),
            **more,
        )
    if changed:
        wake_relay()
    return changed


def fold_successes(tasks: QuerySet[Task]) -> int:
    """Write the success each of these succeeded tasks keeps on its row as an Attempt row, and
    clear it from the row: before a re-run, so the next success (kept on the row in its turn)
    does not overwrite it, and the history keeps every try at its number. In the caller's
    transaction; the rows are locked first, so two re-runs at once fold a success once."""
    rows = list(
        tasks.filter(state=TaskState.SUCCEEDED, succeeded_started_at__isnull=False)
        .select_for_update()
        .values_list(
            "id",
            "attempts",
            "succeeded_started_at",
            "succeeded_duration_ms",
            "succeeded_http_status",
            "leased_by",
        )
    )
    if not rows:
        return 0
    Attempt.objects.bulk_create(
        Attempt(
            task_id=pk,
            number=number,
            started_at=started_at,
            duration_ms=duration_ms or 0.0,
            outcome=AttemptOutcome.SUCCEEDED,
            http_status=http_status,
            worker=worker,
        )
        for pk, number, started_at, duration_ms, http_status, worker in rows
        if started_at is not None  # the filter above; for the type checker
    )
    Task.objects.filter(id__in=[row[0] for row in rows]).update(
        succeeded_started_at=None, succeeded_duration_ms=None, succeeded_http_status=None
    )
    return len(rows)


@transaction.atomic
def settle_waits(*, task_ids: Sequence[int]) -> list[SettleWait]:
    """The tasks among `task_ids` still waiting for a write of an unanswered try to land,
    soonest first: what an operator who just retried them should be told."""
    waiting = list(
        Task.objects.filter(id__in=task_ids, settle_until__gt=Now())
        .order_by("settle_until", "id")
        .values_list("id", "settle_until")
    )
    unanswered = dict(
        Attempt.objects.filter(
            task_id__in=[task_id for task_id, _ in waiting], reply=AttemptReply.NO_ANSWER
        )
        .order_by("task_id", "number")
        .values_list("task_id", "number")
    )
    return [
        SettleWait(task_id=task_id, until=until, try_number=unanswered.get(task_id))
        for task_id, until in waiting
        if until is not None
    ]


@dataclass(frozen=True, slots=True)
class SettleWait:
    task_id: int
    until: datetime
    try_number: int | None

    def due_at(self) -> str:
        """`12:04:10 UTC`."""
        return self.until.astimezone(UTC).strftime("%H:%M:%S UTC")

    def risk(self) -> str:
        """`a write of try 3 may still land`."""
        which = f"try {self.try_number}" if self.try_number else "an unanswered try"
        return f"a write of {which} may still land"

    def describe(self) -> str:
        """`task 12 is due at 12:04:10 UTC: a write of try 3 may still land`."""
        return f"task {self.task_id} is due at {self.due_at()}: {self.risk()}"


def settle_note(waits: Sequence[SettleWait], *, shown: int = 5) -> str:
    """One sentence for an operator's message; "" when nothing waits."""
    if not waits:
        return ""
    return f"{len(waits)} wait for a write in flight before they run: {_listed(waits, shown)}."


def _listed(waits: Sequence[SettleWait], shown: int) -> str:
    listed = "; ".join(wait.describe() for wait in waits[:shown])
    more = f"; and {len(waits) - shown} more" if len(waits) > shown else ""
    return listed + more


def retried_note(
    changed: int,
    waits: Sequence[SettleWait],
    *,
    what: str = "",
    done: str = "retried",
    shown: int = 5,
) -> str:
    """What an operator's retry of `changed` tasks did, `waits` being those of them still
    waiting for a write in flight (`settle_waits` after the retry): how many are due now and
    how many wait, and until when.

    `3 tasks retried with a fresh attempt budget: 2 due now, 1 due at 12:04:10 UTC (task 12: a
    write of try 3 may still land).` With nothing waiting: `3 tasks due now with a fresh
    attempt budget.` `what` follows the count (`of tickets.issue_receipt / HTTP 503`).
    """
    tasks = f"{changed} task{'' if changed == 1 else 's'}" + (f" {what}" if what else "")
    if not waits:
        return f"{tasks} due now with a fresh attempt budget."
    due_now = max(changed - len(waits), 0)
    if len(waits) == 1:
        wait = waits[0]
        when = f"due at {wait.due_at()} (task {wait.task_id}: {wait.risk()})"
        said = f"{due_now} due now, 1 {when}" if due_now else f"{when}, not now"
    else:
        said = (
            f"{due_now or 'none'} due now, {len(waits)} wait for a write in flight "
            f"({_listed(waits, shown)})"
        )
    return f"{tasks} {done} with a fresh attempt budget: {said}."


def tasks_cancel(*, tasks: QuerySet[Task], reason: str = "canceled by an operator") -> int:
    """Cancel tasks that have not finished and are not running right now."""
    return tasks.filter(state=TaskState.PENDING).update(
        state=TaskState.CANCELED,
        finished_at=Now(),
        last_error=reason,
        updated_at=Now(),
    )


def kind_pause(*, kind: str, by: str = "") -> bool:
    """Stop claiming tasks of `kind`; returns False when it was already paused."""
    _, created = PausedKind.objects.get_or_create(kind=kind, defaults={"paused_by": by})
    return created


def kind_resume(*, kind: str) -> bool:
    """Claim tasks of `kind` again; returns False when it was not paused."""
    deleted, _ = PausedKind.objects.filter(kind=kind).delete()
    if deleted:
        wake_relay()
    return bool(deleted)


def finished_before(*, older_than: timedelta) -> QuerySet[Task]:
    return Task.objects.filter(state__in=FINISHED_STATES, finished_at__lt=Now() - older_than)


def tasks_prune(*, older_than: timedelta | None = None, chunk: int = 5000) -> int:
    """Delete finished tasks (and their attempts) that finished before the retention window."""
    if older_than is None:
        older_than = timedelta(days=outbox_settings().retention_days)
    total = 0
    while True:
        # Small chunks keep each transaction short on a table the relay is writing to. Listed
        # and locked in the transaction that deletes them: a task an operator retries at this
        # moment is either deleted first (the retry finds nothing) or no longer finished, and
        # kept with its attempts; it is never run again without its task row.
        with transaction.atomic():
            ids = list(
                finished_before(older_than=older_than)
                .select_for_update(skip_locked=True)
                .values_list("id", flat=True)[:chunk]
            )
            if not ids:
                return total
            Attempt.objects.filter(task_id__in=ids).delete()
            total += Task.objects.filter(id__in=ids).delete()[1].get("outbox.Task", 0)


def prune_finished_tasks() -> int:
    """The django-q2 schedule's entry point: the tasks, then every app's retention hook."""
    older_than = timedelta(days=outbox_settings().retention_days)
    cutoff = timezone.now() - older_than
    pruned = tasks_prune(older_than=older_than)
    logger.info("pruned %d finished tasks", pruned)
    for label, rows in retention.run_hooks(cutoff):
        logger.info("pruned %d %s", rows, label)
    return pruned


__all__ = [
    "EnqueuedTask",
    "TaskSpec",
    "enqueue",
    "enqueue_many",
    "kind_pause",
    "kind_resume",
    "settle_note",
    "settle_waits",
    "tasks_cancel",
    "tasks_prune",
    "tasks_retry",
]


def tasks_with_dedupe_keys(keys: Sequence[str]) -> list[Task]:
    """The tasks holding these dedupe keys (the unique index), by id."""
    if not keys:
        return []
    return list(Task.objects.filter(dedupe_key__in=keys).order_by("id"))
