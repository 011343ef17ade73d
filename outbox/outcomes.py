"""Write-back: a claimed task's outcome, recorded in bulk and fenced by its lease token.

A success is kept on the task row; every other try (a refused success too) is an Attempt row.
Every write matches the lease token of the claim, so a pass that lost its lease cannot overwrite
the new owner's work: its outcome is refused and its Attempt says so.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import (
    Case,
    CharField,
    DateTimeField,
    ExpressionWrapper,
    F,
    Field,
    FloatField,
    JSONField,
    SmallIntegerField,
    Value,
    When,
)
from django.db.models.functions import Now

from outbox.claim import DATABASE_TROUBLE, ClaimedTask, _table
from outbox.models import Attempt, AttemptOutcome, AttemptReply, Task, TaskState
from outbox.sql import field_of, insert_rows, server_binding_cursor, unnest_arrays
from outbox.storable import storable_json, storable_text

logger = logging.getLogger("outbox.claim")


@dataclass(slots=True)
class Outcome:
    """What happened to one claimed task, written back in bulk by `record_outcomes`."""

    task: ClaimedTask
    verdict: AttemptOutcome
    started_at: datetime
    duration_ms: float
    worker: str
    result: Any = None
    error: str = ""
    http_status: int | None = None
    retry_in: float | None = None
    deferred: bool = False
    # Whether the API answered the try's call (outbox.errors: ANSWERED, NO_ANSWER, NOT_SENT).
    reply: str = ""
    # No try starts before this: a write of this try (or of a vanished one) may still land.
    settle_until: datetime | None = None
    # The number of an earlier try found to have vanished (no outcome of its own): recorded
    # with this outcome as a try that got no answer.
    vanished_try: int | None = None


def _owned(task: ClaimedTask) -> Any:
    return Task.objects.filter(id=task.id, lease_token=task.lease_token, state=TaskState.RUNNING)


def record_outcomes(outcomes: list[Outcome]) -> set[int]:
    """Write outcomes in one transaction, fenced by lease token: a success on its task row,
    every other try (a refused success too) as an Attempt row.

    Returns the ids whose lease was lost: their writes were refused and their Attempt says so.
    Text and results are made storable first. If the batch still cannot be written for a
    reason other than a lost database, each outcome is written on its own, so one poisoned
    outcome cannot take the others with it. A lost database raises; in that case the outcomes
    already written have been removed from `outcomes`, and the caller keeps the rest.
    """
    if not outcomes:
        return set()
    for item in outcomes:
        item.error = storable_text(item.error)
        item.result = storable_json(item.result)
    try:
        lost = _record(outcomes)
    except DATABASE_TROUBLE:
        raise
    except Exception:
        logger.exception("could not record %d outcomes together; recording each", len(outcomes))
    else:
        outcomes.clear()
        return lost
    lost = set()
    while outcomes:
        item = outcomes[0]
        try:
            lost |= _record_one_isolated(item)
        except DATABASE_TROUBLE:
            raise
        del outcomes[0]
    return lost


def _record_one_isolated(item: Outcome) -> set[int]:
    try:
        return _record([item])
    except DATABASE_TROUBLE:
        raise
    except Exception as exc:
        logger.exception("the outcome of task %s could not be stored", item.task.id)
        problem = storable_text(f"{exc.__class__.__name__}: {exc}", limit=500)
    # Keep what happened (the outcome); drop what could not be stored (the result, the text).
    fallback = replace(
        item,
        result=None,
        error=f"the outcome could not be stored as reported ({problem}); "
        f"first line: {storable_text(item.error.splitlines()[0] if item.error else '', 300)}",
    )
    try:
        return _record([fallback])
    except DATABASE_TROUBLE:
        raise
    except Exception:
        logger.exception("task %s is left to its lease: its outcome cannot be stored", item.task.id)
        return set()


def _record(outcomes: Sequence[Outcome]) -> set[int]:
    if connection.vendor == "postgresql" and all(_plain_success(item) for item in outcomes):
        return _record_successes_in_one_statement(outcomes)
    # By (task id, lease token): a stale attempt and the owner's can be in one batch.
    lost: set[tuple[int, uuid.UUID]] = set()
    with transaction.atomic():
        succeeded = [o for o in outcomes if o.verdict == AttemptOutcome.SUCCEEDED]
        lost |= _record_successes(succeeded)
        for item in outcomes:
            if item.verdict == AttemptOutcome.SUCCEEDED:
                continue
            if not _record_failure(item):
                lost.add((item.task.id, item.task.lease_token))
        # A deferral is not a try (nothing was called): it leaves no Attempt row. Neither does
        # a success that was written: it stays on its task row. A refused one is a row, and so
        # is one that carries a note (`_per_task`).
        rows = [
            {
                "task_id": item.task.id,
                "number": item.task.context.attempt,
                "started_at": item.started_at,
                "duration_ms": item.duration_ms,
                "outcome": str(
                    AttemptOutcome.LEASE_LOST
                    if (item.task.id, item.task.lease_token) in lost
                    else item.verdict
                ),
                "http_status": item.http_status,
                "error": item.error,
                "worker": item.worker[:200],
                "reply": item.reply,
            }
            for item in outcomes
            if not item.deferred
            and (
                item.verdict != AttemptOutcome.SUCCEEDED
                or bool(item.error)
                or (item.task.id, item.task.lease_token) in lost
            )
        ]
        # A try found vanished is written once, by the pass that still owns the task.
        rows += [
            _vanished_row(item)
            for item in outcomes
            if item.vanished_try is not None and (item.task.id, item.task.lease_token) not in lost
        ]
        insert_rows(Attempt, rows)
    return {task_id for task_id, _ in lost}


def _vanished_row(item: Outcome) -> dict[str, Any]:
    return {
        "task_id": item.task.id,
        "number": item.vanished_try,
        # Its own start is unknown (nothing of it was written): the time it was found.
        "started_at": item.started_at,
        "duration_ms": 0.0,
        "outcome": str(AttemptOutcome.LEASE_LOST),
        "http_status": None,
        "error": storable_text(
            f"try {item.vanished_try} ended without an outcome: its worker stopped or lost the "
            "task mid-try, so whether the API answered is unknown (found at the next try)"
        ),
        "worker": "",
        "reply": str(AttemptReply.NO_ANSWER),
    }


def _plain_success(item: Outcome) -> bool:
    return (
        item.verdict == AttemptOutcome.SUCCEEDED
        and not item.deferred
        and not item.error
        and item.http_status is None
    )


def _record_successes_in_one_statement(outcomes: Sequence[Outcome]) -> set[int]:
    """PostgreSQL, the common batch (successes only, from any claims): one statement, the
    tasks' fenced UPDATE, which keeps each success on its task row, and an Attempt row only
    for a success that was refused (`lease_lost`: its lease is no longer ours), in a
    data-modifying CTE. One round trip, and one row write per success: the Attempt INSERT a
    success used to make was a third of the database's writes per task."""
    table = _table()
    attempts = connection.ops.quote_name(Attempt._meta.db_table)
    types, arrays = unnest_arrays(
        [
            (field_of(Attempt, "task"), [item.task.id for item in outcomes]),
            (field_of(Attempt, "number"), [item.task.context.attempt for item in outcomes]),
            (field_of(Attempt, "started_at"), [item.started_at for item in outcomes]),
            (field_of(Attempt, "duration_ms"), [item.duration_ms for item in outcomes]),
            (field_of(Attempt, "worker"), [item.worker[:200] for item in outcomes]),
            (field_of(Task, "result"), [item.result for item in outcomes]),
            (field_of(Task, "lease_token"), [item.task.lease_token for item in outcomes]),
        ]
    )
    sql = (
        f"WITH r AS (SELECT * FROM unnest({types}) "
        "AS r(task_id, number, started_at, duration_ms, worker, result, token)), "
        f"done AS (UPDATE {table} AS t SET state = %s, result = r.result, last_error = '', "
        "lease_expires_at = NULL, finished_at = STATEMENT_TIMESTAMP(), "
        "updated_at = STATEMENT_TIMESTAMP(), succeeded_started_at = r.started_at, "
        "succeeded_duration_ms = r.duration_ms, succeeded_http_status = NULL, "
        # The worker that ran the try (its pass's name, as the claim wrote it, in practice).
        "leased_by = r.worker FROM r "
        "WHERE t.id = r.task_id AND t.lease_token = r.token AND t.state = %s "
        "RETURNING t.id, t.lease_token), "
        f"refused AS (INSERT INTO {attempts} "
        "(task_id, number, started_at, duration_ms, outcome, http_status, error, worker) "
        "SELECT r.task_id, r.number, r.started_at, r.duration_ms, %s, NULL, '', r.worker "
        "FROM r WHERE NOT EXISTS "
        "(SELECT 1 FROM done WHERE done.id = r.task_id AND done.lease_token = r.token) "
        "RETURNING task_id) "
        # Only the refused ones come back: usually none.
        "SELECT task_id FROM refused"
    )
    params = [
        *arrays,
        str(TaskState.SUCCEEDED),
        str(TaskState.RUNNING),
        str(AttemptOutcome.LEASE_LOST),
    ]
    with server_binding_cursor() as cursor:
        cursor.execute(sql, params)
        return {task_id for (task_id,) in cursor.fetchall()}


def _record_successes(outcomes: Sequence[Outcome]) -> set[tuple[int, uuid.UUID]]:
    lost: set[tuple[int, uuid.UUID]] = set()
    by_token: dict[uuid.UUID, list[Outcome]] = {}
    for item in outcomes:
        by_token.setdefault(item.task.lease_token, []).append(item)
    result_field = JSONField()
    for token, group in by_token.items():
        ids = [item.task.id for item in group]
        with_result = [item for item in group if item.result is not None]
        result: Any = None
        if with_result:
            result = Case(
                *[
                    When(id=item.task.id, then=Value(item.result, output_field=result_field))
                    for item in with_result
                ],
                default=Value(None, output_field=result_field),
                output_field=result_field,
            )
        # The token stays on the row: it names the lease that finished the task, so a stale
        # holder's refused success can be told from the owner's.
        updated = Task.objects.filter(
            id__in=ids, lease_token=token, state=TaskState.RUNNING
        ).update(
            state=TaskState.SUCCEEDED,
            result=result,
            last_error="",
            lease_expires_at=None,
            finished_at=Now(),
            updated_at=Now(),
            # The try itself, on the task row (outbox.history reads it back as an attempt).
            succeeded_started_at=_per_task(group, "started_at", DateTimeField()),
            succeeded_duration_ms=_per_task(group, "duration_ms", FloatField()),
            succeeded_http_status=_per_task(group, "http_status", SmallIntegerField()),
            leased_by=_per_task(group, "worker", CharField(), keep_with_note=True),
        )
        if updated != len(ids):
            # Rare: find out which leases were lost, so their attempts are labelled honestly.
            ours = set(
                Task.objects.filter(
                    id__in=ids, state=TaskState.SUCCEEDED, lease_token=token
                ).values_list("id", flat=True)
            )
            lost |= {(task_id, token) for task_id in set(ids) - ours}
    return lost


def _per_task(
    group: Sequence[Outcome], name: str, field: Field[Any, Any], *, keep_with_note: bool = False
) -> Any:
    """One value per task of `group` in one UPDATE: the value itself when they all share it."""
    # A success with a note (stored alone, its result dropped: `_record_one_isolated`) keeps
    # its Attempt row, the note in it, as before; its task row keeps no try.
    values = {
        item.task.id: None if item.error and not keep_with_note else getattr(item, name)
        for item in group
    }
    if name == "worker":  # as the Attempt row's column, `leased_by` holds 200 characters
        values = {task_id: str(value)[:200] for task_id, value in values.items()}
    if len(set(values.values())) == 1:
        return Value(next(iter(values.values())), output_field=field)
    return Case(
        *[
            When(id=task_id, then=Value(value, output_field=field))
            for task_id, value in values.items()
        ],
        default=Value(None, output_field=field),
        output_field=field,
    )


def _record_failure(item: Outcome) -> bool:
    if item.verdict == AttemptOutcome.LEASE_LOST:
        # The handler stopped before its call (LeaseLost): nothing happened; due again now,
        # for whichever pass holds it next.
        updated = _owned(item.task).update(
            state=TaskState.PENDING,
            available_at=Now(),
            last_error=item.error,
            lease_token=None,
            lease_expires_at=None,
            updated_at=Now(),
        )
        return bool(updated)
    if item.verdict == AttemptOutcome.RETRY and item.retry_in is not None:
        available_at = ExpressionWrapper(
            Now() + Value(_seconds(item.retry_in)), output_field=DateTimeField()
        )
        updated = _owned(item.task).update(
            state=TaskState.PENDING,
            attempts=F("attempts") - 1 if item.deferred else F("attempts"),
            available_at=available_at,
            last_error=item.error,
            lease_token=None,
            lease_expires_at=None,
            updated_at=Now(),
            **_settle(item),
        )
    else:
        final = TaskState.CANCELED if item.verdict == AttemptOutcome.CANCELED else TaskState.FAILED
        updated = _owned(item.task).update(
            state=final,
            last_error=item.error,
            lease_token=None,
            lease_expires_at=None,
            finished_at=Now(),
            updated_at=Now(),
            **_settle(item),
        )
    return bool(updated)


def _settle(item: Outcome) -> dict[str, Any]:
    # Written only when a try got no answer: the column is not rewritten for nothing.
    return {} if item.settle_until is None else {"settle_until": item.settle_until}


def _seconds(seconds: float) -> timedelta:
    return timedelta(seconds=seconds)
