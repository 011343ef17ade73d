"""How many tasks, how late, how fast: the counts, lag and throughput of the dashboard and
/metrics."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connection
from django.db.models import (
    CharField,
    Count,
    DurationField,
    ExpressionWrapper,
    F,
    Func,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
)
from django.db.models.functions import Now, TruncHour
from django.utils import timezone

from outbox.models import (
    Attempt,
    AttemptOutcome,
    Task,
    TaskState,
)

# Attempts that did not succeed: the ones a dashboard counts as failures.
FAILED_OUTCOMES = (AttemptOutcome.RETRY, AttemptOutcome.FAILED)


@dataclass(frozen=True, slots=True)
class KindCounts:
    kind: str
    by_state: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.by_state.values())


@dataclass(frozen=True, slots=True)
class HourBucket:
    start: datetime
    succeeded: int
    failed: int


@dataclass(frozen=True, slots=True)
class LatencyHistogram:
    """Cumulative counts: `counts[i]` tasks took at most `bounds[i]` seconds."""

    bounds: tuple[float, ...]
    counts: tuple[int, ...]
    total: int
    sum_seconds: float


def task_counts_by_kind(*, succeeded: Mapping[str, int] | None = None) -> list[KindCounts]:
    """`task_counts`, without saying whether the successes were estimated."""
    return task_counts(succeeded=succeeded)[0]


def task_counts(*, succeeded: Mapping[str, int] | None = None) -> tuple[list[KindCounts], bool]:
    """Tasks per kind and state, kinds sorted by name; every state present, zero or not.

    The open and the failed or canceled tasks are counted exactly, each state from its own
    partial index, so the count costs what is open, not what ever finished. The succeeded
    column is `succeeded` when given (the dashboard passes the successes its chart counted in
    the last day), else `succeeded_by_kind()`: exact on a small table, the planner's estimate
    on a big one (PostgreSQL), where counting every success took 130 ms at 1,000,000 tasks.
    The flag says whether they are the estimate.
    """
    counts: dict[str, dict[str, int]] = {}
    estimated = False
    for kind, state, n in _unfinished_and_failed_counts():
        by_state = counts.setdefault(kind, dict.fromkeys(TaskState.values, 0))
        by_state[state] = n
    if succeeded is None:
        found = succeeded_by_kind(counts)
        succeeded, estimated = found.counts, found.estimated
    for kind, n in succeeded.items():
        if n:
            counts.setdefault(kind, dict.fromkeys(TaskState.values, 0))[TaskState.SUCCEEDED] = n
    return [KindCounts(kind=kind, by_state=counts[kind]) for kind in sorted(counts)], estimated


def _unfinished_and_failed_counts() -> list[tuple[str, str, int]]:
    # One query, a branch per partial index: `due` (pending), `lease` (running), and
    # `ended_badly` (failed, canceled). One `state IN (..)` over them all would read the table.
    branches = [
        Task.objects.filter(state=TaskState.PENDING),
        Task.objects.filter(state=TaskState.RUNNING),
        Task.objects.filter(state__in=[TaskState.FAILED, TaskState.CANCELED]),
    ]
    grouped = [
        rows.order_by().values_list("kind", "state").annotate(n=Count("*")) for rows in branches
    ]
    return list(grouped[0].union(*grouped[1:], all=True))


# Below this many rows (the planner's count) the successes are counted exactly: a scan of
# 20,000 rows is a few milliseconds.
EXACT_UP_TO = 20_000


@dataclass(frozen=True, slots=True)
class SucceededCounts:
    counts: dict[str, int]
    estimated: bool
    """True: the planner's estimate (PostgreSQL statistics, as of the table's last ANALYZE)."""


def succeeded_by_kind(other_states: Mapping[str, Mapping[str, int]]) -> SucceededCounts:
    """Succeeded tasks per kind: exact while the table is small (or on SQLite, which keeps no
    statistics); on a big PostgreSQL table, the planner's rows per kind (its most common
    values of `kind`, times its row count) less the other states' exact counts."""
    estimate = _planner_rows_by_kind() if connection.vendor == "postgresql" else None
    if estimate is None:
        rows = Task.objects.filter(state=TaskState.SUCCEEDED).order_by().values_list("kind")
        return SucceededCounts(dict(rows.annotate(n=Count("*"))), estimated=False)
    counts = {
        kind: max(round(rows) - sum(other_states.get(kind, {}).values()), 0)
        for kind, rows in estimate.items()
    }
    return SucceededCounts(counts, estimated=True)


def _planner_rows_by_kind() -> dict[str, float] | None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.reltuples, s.most_common_vals::text::text[], s.most_common_freqs "
            "FROM pg_class c LEFT JOIN pg_stats s ON s.schemaname = current_schema() "
            "AND s.tablename = c.relname AND s.attname = 'kind' "
            "WHERE c.oid = %s::regclass",
            [Task._meta.db_table],
        )
        row = cursor.fetchone()
    if row is None or row[0] < EXACT_UP_TO or row[1] is None:
        return None
    total, kinds, freqs = row
    return {kind: total * freq for kind, freq in zip(kinds, freqs, strict=True)}


def state_totals(counts: Iterable[KindCounts]) -> dict[str, int]:
    totals = dict.fromkeys(TaskState.values, 0)
    for row in counts:
        for state, n in row.by_state.items():
            totals[state] += n
    return totals


def oldest_due_task_age() -> timedelta | None:
    """How long the longest-waiting due task has been due (database clock); None when none is.

    Measured from `available_at`, not `created_at`: a task scheduled for later or backing off
    is not late until it is due, so this is the relay's lag.
    """
    age = ExpressionWrapper(Now() - F("available_at"), output_field=DurationField())
    return (
        Task.objects.due()
        .order_by("available_at")
        .annotate(age=age)
        .values_list("age", flat=True)
        .first()
    )


def delivery_latency(
    *, bounds: Sequence[float], window: timedelta, now: datetime | None = None
) -> LatencyHistogram:
    """Enqueue-to-success time (`finished_at - created_at`) of the tasks that succeeded in the
    last `window`, as a cumulative histogram over `bounds` (seconds, ascending).

    One aggregate query: the database counts each bucket, reading only the window's rows
    through the `finished_at` index, however big the table is.
    """
    if list(bounds) != sorted(bounds):
        raise ValueError("bounds must be ascending")
    now = now or timezone.now()
    latency = ExpressionWrapper(F("finished_at") - F("created_at"), output_field=DurationField())
    # The state test sits in the aggregates, not the WHERE: with only the time range there,
    # the `finished_at` index is the one way in (an equality on state would tempt the planner
    # into the state index, which holds every task that ever succeeded).
    succeeded = Q(state=TaskState.SUCCEEDED)
    buckets = {
        f"le_{index}": Count("id", filter=succeeded & Q(latency__lte=timedelta(seconds=bound)))
        for index, bound in enumerate(bounds)
    }
    row = (
        Task.objects.filter(finished_at__gt=now - window)
        .annotate(latency=latency)
        .aggregate(
            total=Count("id", filter=succeeded),
            latency_sum=Sum("latency", filter=succeeded),
            **buckets,
        )
    )
    latency_sum: timedelta | None = row["latency_sum"]
    return LatencyHistogram(
        bounds=tuple(bounds),
        counts=tuple(row[f"le_{index}"] for index in range(len(bounds))),
        total=row["total"],
        sum_seconds=latency_sum.total_seconds() if latency_sum is not None else 0.0,
    )


def succeeded_per_minute(*, minutes: int = 5, now: datetime | None = None) -> float:
    """Tasks that succeeded in the last `minutes`, per minute (by `finished_at`)."""
    if minutes <= 0:
        raise ValueError("minutes must be positive")
    now = now or timezone.now()
    done = Task.objects.filter(
        state=TaskState.SUCCEEDED, finished_at__gt=now - timedelta(minutes=minutes)
    ).count()
    return done / minutes


def hourly_activity(*, hours: int = 24, now: datetime | None = None) -> list[HourBucket]:
    """Succeeded tasks and failed attempts per hour, oldest first; the last bucket is this hour.

    A task counts in the hour it finished; a failure is an attempt that ended in a retry or a
    dead task, in the hour it started.
    """
    now = now or timezone.now()
    return total_buckets(hourly_activity_by_kind(hours=hours, now=now), hours=hours, now=now)


def hourly_activity_by_kind(
    *, hours: int = 24, now: datetime | None = None
) -> dict[str, list[HourBucket]]:
    """`hourly_activity` for each kind that had any, by kind name; two queries in all."""
    start = _first_hour(hours, now)
    succeeded = _per_hour(
        Task.objects.filter(state=TaskState.SUCCEEDED, finished_at__gte=start),
        "finished_at",
        "kind",
    )
    # Each failed attempt's kind by its task's primary key, one lookup per attempt of the
    # window: with a join, PostgreSQL hashes the whole task table instead (100 ms at 1,000,000
    # tasks against 10 ms for 5,000 failed attempts).
    task_kind = Subquery(Task.objects.filter(pk=OuterRef("task_id")).values("kind")[:1])
    failed = _per_hour(
        Attempt.objects.filter(outcome__in=FAILED_OUTCOMES, started_at__gte=start).annotate(
            task_kind=task_kind
        ),
        "started_at",
        "task_kind",
    )
    kinds = sorted({kind for kind, _ in succeeded} | {kind for kind, _ in failed})
    return {
        kind: [
            HourBucket(
                start=hour,
                succeeded=succeeded.get((kind, hour), 0),
                failed=failed.get((kind, hour), 0),
            )
            for hour in _hours(start, hours)
        ]
        for kind in kinds
    }


def total_buckets(
    by_kind: dict[str, list[HourBucket]], *, hours: int = 24, now: datetime | None = None
) -> list[HourBucket]:
    """Every kind's buckets added up, hour by hour (all hours, even without any kind)."""
    start = _first_hour(hours, now)
    totals = []
    for index, hour in enumerate(_hours(start, hours)):
        rows = [buckets[index] for buckets in by_kind.values()]
        totals.append(
            HourBucket(
                start=hour,
                succeeded=sum(b.succeeded for b in rows),
                failed=sum(b.failed for b in rows),
            )
        )
    return totals


def _first_hour(hours: int, now: datetime | None) -> datetime:
    now = (now or timezone.now()).astimezone(UTC)
    # Hours in UTC, so a zone with a half-hour offset cannot shift the buckets.
    this_hour = now.replace(minute=0, second=0, microsecond=0)
    return this_hour - timedelta(hours=hours - 1)


def _hours(start: datetime, hours: int) -> list[datetime]:
    return [start + timedelta(hours=index) for index in range(hours)]


def _per_hour(rows: QuerySet[Any], field: str, kind: str) -> dict[tuple[str, datetime], int]:
    if connection.vendor == "sqlite":
        return _per_hour_sqlite(rows, field, kind)
    grouped = (
        rows.order_by()
        .annotate(hour=TruncHour(field, tzinfo=UTC))
        .values_list(kind, "hour")
        .annotate(n=Count("id"))
        .values_list(kind, "hour", "n")
    )
    return {(k, hour): n for k, hour, n in grouped}


class _SQLiteHour(Func):
    """SQLite's own hour truncation of a stored UTC time. Django's TruncHour calls back into
    Python for every row there: 0.7 s of the dashboard with 140,000 tasks in its window."""

    # Stored as text, 'YYYY-MM-DD HH:MM:SS[.ffffff]' in UTC: the hour is its first 13 characters.
    template = "SUBSTR(%(expressions)s, 1, 13) || ':00:00'"
    output_field = CharField()


def _per_hour_sqlite(rows: QuerySet[Any], field: str, kind: str) -> dict[tuple[str, datetime], int]:
    grouped = (
        rows.order_by()
        .annotate(hour=_SQLiteHour(F(field)))
        .values_list(kind, "hour")
        .annotate(n=Count("id"))
        .values_list(kind, "hour", "n")
    )
    return {(k, datetime.fromisoformat(hour).replace(tzinfo=UTC)): n for k, hour, n in grouped}
