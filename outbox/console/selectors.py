"""Reads of the outbox for operators: counts, lag, throughput, and the tasks a filter matches."""

from __future__ import annotations

import operator
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import reduce
from typing import Any

from django.db import connection
from django.db.models import (
    Case,
    CharField,
    Count,
    DurationField,
    ExpressionWrapper,
    F,
    Func,
    Max,
    Min,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    When,
)
from django.db.models.functions import Left, Now, TruncHour
from django.utils import timezone

from outbox.models import (
    Attempt,
    AttemptOutcome,
    Circuit,
    PausedKind,
    RelayPass,
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

CIRCUIT_CLOSED = "closed"
CIRCUIT_OPEN = "open"
CIRCUIT_PROBING = "probing"


@dataclass(frozen=True, slots=True)
class CircuitHealth:
    """A destination's circuit as an operator reads it."""

    destination: str
    state: str
    """closed; open (resting until `next_probe_at`); probing (the rest is over: the next call,
    or the one in flight, decides)."""
    down_since: datetime | None
    next_probe_at: datetime | None
    last_error: str
    opened_count: int

    @property
    def is_closed(self) -> bool:
        return self.state == CIRCUIT_CLOSED


def circuit_health(*, now: datetime | None = None) -> list[CircuitHealth]:
    """Every destination that ever had a circuit, by name; one query."""
    now = now or timezone.now()
    rows = []
    for circuit in Circuit.objects.order_by("name"):
        if circuit.opened_until is None:
            state = CIRCUIT_CLOSED
        elif circuit.opened_until > now:
            state = CIRCUIT_OPEN
        else:
            state = CIRCUIT_PROBING
        down_since = circuit.down_since
        if down_since is None and circuit.opened_until is not None:
            # A circuit opened before `down_since` existed: this rest's start.
            down_since = circuit.opened_until - timedelta(seconds=circuit.cooldown_seconds)
        rows.append(
            CircuitHealth(
                destination=circuit.name,
                state=state,
                down_since=None if state == CIRCUIT_CLOSED else down_since,
                next_probe_at=circuit.opened_until,
                last_error=circuit.last_error,
                opened_count=circuit.opened_count,
            )
        )
    return rows


@dataclass(frozen=True, slots=True)
class PassHealth:
    worker: str
    node: str
    started_at: datetime
    heartbeat_at: datetime
    stale: bool


@dataclass(frozen=True, slots=True)
class RelayHealth:
    passes: list[PassHealth]
    running_by_node: dict[str, int]
    """Tasks in state running per node (host:pid of `leased_by`)."""

    @property
    def live(self) -> int:
        return sum(1 for p in self.passes if not p.stale)

    @property
    def stale(self) -> int:
        return sum(1 for p in self.passes if p.stale)


def node_of(worker: str) -> str:
    """`host:pid` of a `host:pid:thread` worker name; anything else as it is."""
    parts = worker.split(":")
    return ":".join(parts[:2]) if len(parts) >= 3 else worker


def relay_health(*, stale_after: timedelta, now: datetime | None = None) -> RelayHealth:
    """The registered relay passes (stale: no heartbeat within `stale_after`) and the running
    tasks per node; two queries."""
    now = now or timezone.now()
    passes = [
        PassHealth(
            worker=row.worker,
            node=node_of(row.worker),
            started_at=row.started_at,
            heartbeat_at=row.heartbeat_at,
            stale=row.heartbeat_at < now - stale_after,
        )
        for row in RelayPass.objects.order_by("worker", "started_at")
    ]
    running: dict[str, int] = {}
    rows = Task.objects.running().order_by().values_list("leased_by").annotate(n=Count("id"))
    for leased_by, n in rows.values_list("leased_by", "n"):
        node = node_of(leased_by) or "(unknown)"
        running[node] = running.get(node, 0) + n
    return RelayHealth(passes=passes, running_by_node=dict(sorted(running.items())))


def relay_pass_counts(*, stale_after: timedelta) -> tuple[int, int]:
    """(live, stale) registered relay passes, by the database clock; one query."""
    fresh = Q(heartbeat_at__gte=Now() - stale_after)
    row = RelayPass.objects.aggregate(
        live=Count("id", filter=fresh), stale=Count("id", filter=~fresh)
    )
    return row["live"], row["stale"]


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
