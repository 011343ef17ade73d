"""Which tasks: those a filter or a search matches, those waiting and why, the failing ones
grouped by error."""

from __future__ import annotations

import operator
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import reduce
from typing import Any

from django.db.models import (
    Case,
    Count,
    Max,
    Min,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    When,
)
from django.db.models.functions import Left
from django.utils import timezone

from outbox.console.selectors.counts import FAILED_OUTCOMES
from outbox.models import (
    Attempt,
    PausedKind,
    Task,
    TaskState,
)


def recent_http_statuses(*, days: int = 7) -> list[int]:
    """The HTTP statuses failed tries answered in the last `days`, ascending; one query on the
    failed tries' `started_at` index."""
    since = timezone.now() - timedelta(days=days)
    rows = (
        Attempt.objects.filter(
            outcome__in=FAILED_OUTCOMES, started_at__gte=since, http_status__isnull=False
        )
        .order_by()
        .values_list("http_status", flat=True)
        .distinct()
    )
    return sorted(status for status in rows if status is not None)


def paused_kinds() -> list[PausedKind]:
    return list(PausedKind.objects.order_by("kind"))


def tasks_matching(
    *,
    states: Sequence[str] = (),
    kinds: Sequence[str] = (),
    queues: Sequence[str] = (),
    task_ids: Sequence[int] = (),
    payload_values: dict[str, Sequence[str]] | None = None,
    created_since: datetime | None = None,
    created_until: datetime | None = None,
) -> QuerySet[Task]:
    """Tasks matching every filter given (an empty filter matches everything), by id.

    `payload_values` maps a payload key to the values it may hold: {"order": ["o-1", "o-2"]}.
    `created_until` is exclusive.
    """
    tasks = Task.objects.all()
    if states:
        tasks = tasks.filter(state__in=states)
    if kinds:
        tasks = tasks.filter(kind__in=kinds)
    if queues:
        tasks = tasks.filter(queue__in=queues)
    if task_ids:
        tasks = tasks.filter(id__in=task_ids)
    for key, values in (payload_values or {}).items():
        if values:
            any_value = reduce(operator.or_, (Q(**{f"payload__{key}": v}) for v in values))
            tasks = tasks.filter(any_value)
    if created_since is not None:
        tasks = tasks.filter(created_at__gte=created_since)
    if created_until is not None:
        tasks = tasks.filter(created_at__lt=created_until)
    return tasks.order_by("id")


def tasks_with_ids(ids: Sequence[int], *, states: Sequence[str]) -> QuerySet[Task]:
    """These tasks, only while they are still in one of `states`.

    Hand this to a service: its UPDATE then carries the state condition, so a task another
    operator changed meanwhile is skipped rather than changed twice.
    """
    return Task.objects.filter(id__in=ids, state__in=states)


def error_summary(error: str) -> str:
    """One line for a list: the first line of a message, the last line of a traceback."""
    lines = [line.strip() for line in error.strip().splitlines() if line.strip()]
    if not lines:
        return ""
    if lines[0].startswith("Traceback"):
        return lines[-1]
    return lines[0]


def describe_age(age: timedelta | None) -> str:
    """`2h 05m`, `4m 10s`, `12.3s`; "nothing is due" for None."""
    if age is None:
        return "nothing is due"
    seconds = max(age.total_seconds(), 0.0)
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours:02d}h"


# Health: destinations, relay passes, and what the waiting tasks wait for -------------------


@dataclass(frozen=True, slots=True)
class Waiting:
    """Pending tasks of one kind (or all kinds), split by what they wait for."""

    kind: str
    due: int
    """Due now: only a relay pass is missing."""
    retrying: int
    """Back off after an error (or a deferral, a rest of their circuit) until later."""
    scheduled: int
    """Enqueued for later, never tried."""
    oldest_created_at: datetime | None
    newest_error: str

    @property
    def total(self) -> int:
        return self.due + self.retrying + self.scheduled

    def oldest_age(self, now: datetime) -> timedelta | None:
        return None if self.oldest_created_at is None else now - self.oldest_created_at


def waiting_tasks(*, now: datetime | None = None) -> tuple[list[Waiting], Waiting]:
    """Pending tasks per kind (kinds with none left out) and over every kind.

    A retrying task is one that waits for a later `available_at` after an error (attempts
    spent, or an error kept by a deferral that spent none). Two queries whatever the number of
    kinds: each kind's newest error is a subquery of the first.
    """
    now = now or timezone.now()
    later = Q(available_at__gt=now)
    erred = Q(attempts__gt=0) | ~Q(last_error="")
    rows = (
        Task.objects.pending()
        .order_by()
        .values("kind")
        .annotate(
            due=Count("id", filter=~later),
            retrying=Count("id", filter=later & erred),
            scheduled=Count("id", filter=later & ~erred),
            oldest=Min("created_at"),
        )
        .annotate(newest_error=Subquery(_newest_errors.filter(kind=OuterRef("kind"))[:1]))
        .order_by("kind")
    )
    per_kind = []
    for row in rows:
        error = ""
        if row["retrying"] or row["due"]:
            error = error_summary(row["newest_error"] or "")
        per_kind.append(
            Waiting(
                kind=row["kind"],
                due=row["due"],
                retrying=row["retrying"],
                scheduled=row["scheduled"],
                oldest_created_at=row["oldest"],
                newest_error=error,
            )
        )
    oldest = [w.oldest_created_at for w in per_kind if w.oldest_created_at is not None]
    newest = _newest_error(Task.objects.pending()) if per_kind else ""
    total = Waiting(
        kind="",
        due=sum(w.due for w in per_kind),
        retrying=sum(w.retrying for w in per_kind),
        scheduled=sum(w.scheduled for w in per_kind),
        oldest_created_at=min(oldest) if oldest else None,
        newest_error=newest,
    )
    return per_kind, total


# The pending tasks' errors, newest first: `waiting_tasks` takes each kind's first.
_newest_errors = (
    Task.objects.pending()
    .exclude(last_error="")
    .order_by("-updated_at", "-id")
    .values("last_error")
)


def _newest_error(tasks: QuerySet[Task]) -> str:
    error = (
        tasks.exclude(last_error="")
        .order_by("-updated_at", "-id")
        .values_list("last_error", flat=True)
        .first()
    )
    return error_summary(error or "")


# Failure triage --------------------------------------------------------------------------

# Failing tasks: dead ones, and waiting ones that have already been tried (retrying).
FAILING = Q(state=TaskState.FAILED) | Q(state=TaskState.PENDING, attempts__gt=0)
# Enough of an error to find its summary line; a traceback's last line may sit further down.
_ERROR_READ_CHARS = 4000
_ID_LIKE = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"  # a UUID
    r"|\b(?=[0-9a-f]*[0-9])[0-9a-f]{12,}\b"  # a hex key or hash
    r"|\b[A-Za-z]+-\d[\w-]*"  # an id like t-104 or R-000012
    r"|\d+(?:\.\d+)?",  # any other number
    re.IGNORECASE,
)


@dataclass(slots=True)
class FailureGroup:
    """Failing tasks of one kind that fail the same way."""

    kind: str
    signature: str
    count: int
    oldest: datetime
    newest: datetime
    failed: int
    retrying: int
    # The newest task's error, summarised: what the signature stands for, in full words.
    example: str = ""


def error_signature(error: str, http_status: int | None) -> str:
    """What a failure looks like with its particulars removed, so alike failures group.

    The HTTP status of the newest attempt when there is one (`HTTP 503`); else the error's
    summary line with ids and numbers replaced by `#`.
    """
    if http_status is not None:
        return f"HTTP {http_status}"
    line = error_summary(error)
    return _ID_LIKE.sub("#", line)[:200] or "(no error text)"


def _failing_rows(kinds: Sequence[str] = ()) -> QuerySet[Task, tuple[Any, ...]]:
    # The newest attempt by MAX(id) over the task's attempts (its foreign-key index), then its
    # status by primary key. Not ORDER BY id DESC LIMIT 1: PostgreSQL may answer that by
    # walking the whole attempts table backwards for every task (52 s at 20,000 tasks).
    newest_id = Subquery(
        Attempt.objects.filter(task=OuterRef("pk"))
        .order_by()
        .values("task")
        .annotate(newest=Max("id"))
        .values("newest")
    )
    newest_status = Subquery(
        Attempt.objects.filter(id=OuterRef("newest_attempt")).values("http_status")
    )
    tasks = Task.objects.filter(FAILING)
    if kinds:
        tasks = tasks.filter(kind__in=kinds)
    # A task grouped by its HTTP status needs only an example's worth of its error: on a bad
    # day that is most of them, and their errors are not read whole.
    error_head = Case(
        When(status__isnull=False, then=Left("last_error", 300)),
        default=Left("last_error", _ERROR_READ_CHARS),
    )
    return (
        tasks.order_by()
        .annotate(newest_attempt=newest_id)
        .annotate(status=newest_status)
        .annotate(error_head=error_head)
        .values_list("id", "kind", "state", "created_at", "error_head", "status")
    )


def failure_groups() -> list[FailureGroup]:
    """Failing tasks grouped by kind and error signature, biggest group first. One query."""
    groups: dict[tuple[str, str], FailureGroup] = {}
    for _id, kind, state, created_at, error, status in _failing_rows():
        signature = error_signature(error or "", status)
        group = groups.get((kind, signature))
        if group is None:
            group = groups[(kind, signature)] = FailureGroup(
                kind, signature, 0, created_at, created_at, 0, 0
            )
        group.count += 1
        group.oldest = min(group.oldest, created_at)
        if created_at >= group.newest or not group.example:
            group.example = error_summary(error or "")[:300]
        group.newest = max(group.newest, created_at)
        if state == TaskState.FAILED:
            group.failed += 1
        else:
            group.retrying += 1
    return sorted(groups.values(), key=lambda g: (-g.count, g.kind, g.signature))


def failure_group_ids(*, kind: str | None, signature: str) -> list[int]:
    """The ids of the failing tasks (of `kind`, when given) whose signature is `signature`."""
    rows = _failing_rows([kind] if kind else [])
    return sorted(
        pk
        for pk, _k, _s, _c, error, status in rows
        if error_signature(error or "", status) == signature
    )
