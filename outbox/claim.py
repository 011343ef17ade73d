"""Claim and lease: the SQL the relay runs to take tasks, by the database's clock.

A claim is one statement: it takes due tasks (and running tasks whose lease expired), marks
them running with a fresh lease token, and returns them. Every later write about a task
matches that token (outbox.outcomes writes the outcomes back), so a pass that lost its lease
cannot overwrite the new owner's work.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.db import InterfaceError, OperationalError, connection, transaction
from django.db.models import (
    F,
)
from django.db.models.functions import Now
from django.utils.dateparse import parse_datetime

from outbox import tracing
from outbox.lease import Lease
from outbox.models import PausedKind, Task, TaskState
from outbox.registry import TaskContext
from outbox.sql import db_now_sql, server_binding_cursor

# What a restart of the database or a killed connection raises: not the outcome's fault, so it
# is not isolated; the caller keeps the outcomes and writes them once the database is back.
DATABASE_TROUBLE = (OperationalError, InterfaceError)


@dataclass(slots=True, eq=False)
class ClaimedTask:
    """A task this pass holds: what its handler gets, and the lease that fences its writes.

    Compared and hashed by identity: one claim of a task is one attempt. The same task claimed
    twice (its first lease ran out) is two of them, each with its own lease.
    """

    context: TaskContext
    lease: Lease
    # The stored W3C trace context (outbox.tracing), read only by a process that traces.
    trace_context: Any = None

    @property
    def id(self) -> int:
        return self.context.id

    @property
    def lease_token(self) -> uuid.UUID:
        return self.lease.token


# A lease's end by the database's clock, from one parameter (`_lease_param`), per database.
_LEASE_EXPIRY_SQL = {
    True: "STATEMENT_TIMESTAMP() + %s * interval '1 second'",
    False: "STRFTIME('%%Y-%%m-%%d %%H:%%M:%%f', 'NOW', %s)",
}


def _lease_param(seconds: float, postgres: bool) -> Any:
    return seconds if postgres else f"+{seconds:.3f} seconds"


def _token_param(token: uuid.UUID, postgres: bool) -> Any:
    return token if postgres else token.hex


def _table() -> str:
    return connection.ops.quote_name(Task._meta.db_table)


def claim_due_tasks(
    *, limit: int, worker: str, lease_seconds: float, queue_order: Sequence[str]
) -> list[ClaimedTask]:
    """Lease up to `limit` due tasks, queues taken in `queue_order`, oldest first in each."""
    token = uuid.uuid4()
    postgres = connection.vendor == "postgresql"
    now = db_now_sql()
    lock = " FOR UPDATE SKIP LOCKED" if postgres else ""
    table = _table()
    paused = connection.ops.quote_name(PausedKind._meta.db_table)
    not_paused = f"kind NOT IN (SELECT kind FROM {paused})"
    # Expired leases first (a crashed pass's tasks), then each queue in the order drawn.
    parts = [
        f"SELECT id FROM (SELECT id FROM {table} WHERE state = 'running' "
        f"AND lease_expires_at <= {now} AND {not_paused} "
        f"ORDER BY lease_expires_at LIMIT %s{lock}) AS expired"
    ]
    params: list[Any] = [limit]
    for index, queue in enumerate(queue_order):
        parts.append(
            f"SELECT id FROM (SELECT id FROM {table} WHERE state = 'pending' AND queue = %s "
            f"AND available_at <= {now} AND {not_paused} "
            f"ORDER BY available_at LIMIT %s{lock}) AS q{index}"
        )
        params += [queue, limit]
    # On PostgreSQL the outer LIMIT stops the Append early, so no more rows than needed are
    # locked; SQLite holds the database write lock for the whole statement instead.
    candidates = f"SELECT id FROM ({' UNION ALL '.join(parts)}) AS candidates LIMIT %s"
    # PostgreSQL: `id = ANY(ARRAY(..))` runs the candidates once and fetches each row by its
    # primary key. `id IN (..)` let the planner hash-join them against a sequential scan of
    # the whole table: half of a claim's time with 30,000 tasks waiting, and growing with them.
    chosen = f"id = ANY(ARRAY({candidates}))" if postgres else f"id IN ({candidates})"
    sql = (
        f"UPDATE {table} SET state = 'running', attempts = attempts + 1, lease_token = %s, "
        f"lease_expires_at = {_LEASE_EXPIRY_SQL[postgres]}, leased_by = %s, updated_at = {now} "
        f"WHERE {chosen} "
        "RETURNING id, kind, payload, idempotency_key, attempts, max_attempts, "
        "correlation_id, created_at"
    )
    if tracing.tracer() is not None:
        # Only a process that traces reads the stored context: for the others the statement
        # and its rows are what they were before tracing existed.
        sql += ", trace_context"
    all_params = [
        _token_param(token, postgres),
        _lease_param(lease_seconds, postgres),
        worker[:200],
        *params,
        limit,
    ]
    # The lease is reckoned from before the statement is sent: never later than the database's
    # own start, so the local estimate cannot outlive the row.
    sent_at = time.monotonic()
    # One statement is its own transaction on PostgreSQL: BEGIN and COMMIT would be two more
    # round trips per claim. SQLite takes its write lock up front in a transaction (BEGIN
    # IMMEDIATE), where a statement that reads before it writes could be refused instead.
    if postgres:
        # Bound on the server and answered in binary: psycopg's C loaders read the rows, where
        # Django reads a text timestamptz in Python (a third of a no-op drain's Python time).
        # Not prepared: Django connects with psycopg's prepare_threshold=None, so a pooler
        # in transaction mode needs nothing special.
        with server_binding_cursor(binary=True) as cursor:
            cursor.execute(sql, all_params)
            rows = cursor.fetchall()
    else:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, all_params)
            rows = [
                (pk, kind, json.loads(payload), *rest[:4], _as_aware(rest[4]), *rest[5:])
                for pk, kind, payload, *rest in cursor.fetchall()
            ]
    claimed = []
    for pk, kind, payload, key, attempts, max_attempts, correlation_id, created_at, *more in rows:
        claimed.append(
            ClaimedTask(
                context=TaskContext(
                    id=pk,
                    kind=kind,
                    payload=payload,
                    idempotency_key=key,
                    attempt=attempts,
                    max_attempts=max_attempts,
                    correlation_id=correlation_id,
                    created_at=created_at,
                ),
                # One Lease per task: a task can be lost alone (an operator's action, say).
                lease=Lease.starting(token, lease_seconds, sent_at),
                trace_context=_trace_context(more[0]) if more else None,
            )
        )
    claimed.sort(key=lambda task: task.id)
    return claimed


def renew_leases(tasks: Sequence[ClaimedTask]) -> set[int]:
    """Extend the leases of tasks whose handlers still run, fenced by their tokens.

    Returns the ids that are no longer ours; their `Lease` is marked lost, so their handlers
    start no further external call.
    """
    if not tasks:
        return set()
    postgres = connection.vendor == "postgresql"
    table = _table()
    by_lease: dict[tuple[uuid.UUID, float], list[ClaimedTask]] = {}
    for task in tasks:
        by_lease.setdefault((task.lease_token, task.lease.seconds), []).append(task)
    kept: set[int] = set()
    sent_at = time.monotonic()
    with transaction.atomic(), connection.cursor() as cursor:
        for (token, seconds), group in by_lease.items():
            ids = [task.id for task in group]
            marks = ", ".join(["%s"] * len(ids))
            cursor.execute(
                f"UPDATE {table} SET lease_expires_at = {_LEASE_EXPIRY_SQL[postgres]} "
                f"WHERE id IN ({marks}) AND lease_token = %s AND state = 'running' RETURNING id",
                [_lease_param(seconds, postgres), *ids, _token_param(token, postgres)],
            )
            kept.update(row[0] for row in cursor.fetchall())
    lost = set()
    for task in tasks:
        if task.id in kept:
            task.lease.renewed(sent_at)
        else:
            task.lease.lose()
            lost.add(task.id)
    return lost


def _trace_context(value: Any) -> Any:
    # SQLite returns the JSON text; PostgreSQL's binary rows, the value.
    return json.loads(value) if isinstance(value, str) else value


def _as_aware(value: Any) -> datetime | None:
    parsed = value if value is None or isinstance(value, datetime) else parse_datetime(str(value))
    if parsed is not None and parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def release_leases(tasks: Sequence[ClaimedTask]) -> int:
    """Give back tasks that were claimed but never started; their attempt is not spent."""
    released = 0
    by_token: dict[uuid.UUID, list[int]] = {}
    for task in tasks:
        by_token.setdefault(task.lease_token, []).append(task.id)
    with transaction.atomic():
        for token, ids in by_token.items():
            released += Task.objects.filter(
                id__in=ids, lease_token=token, state=TaskState.RUNNING
            ).update(
                state=TaskState.PENDING,
                attempts=F("attempts") - 1,
                lease_token=None,
                lease_expires_at=None,
                updated_at=Now(),
            )
    return released
