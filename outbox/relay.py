"""The relay: bounded passes, run by django-q2 workers, that claim tasks and run their handlers.

A pass claims batches, runs the handlers in a thread pool (the work is HTTP I/O), writes the
outcomes back in bulk, and waits for new work between claims (LISTEN/NOTIFY on PostgreSQL, a
short poll on SQLite). It stops claiming after PASS_SECONDS, finishes what it started and
returns, well inside django-q2's timeout; then it enqueues its successor. A pass that keeps
finding full batches starts another, up to MAX_PASSES over every cluster on the database.
"""

from __future__ import annotations

import logging
import os
import random
import select
import signal
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import Any, TypeVar

from django.db import connection, connections, transaction
from django.db.models.functions import Now

from outbox.claim import (
    DATABASE_TROUBLE,
    ClaimedTask,
    Outcome,
    claim_due_tasks,
    record_outcomes,
    release_leases,
    renew_leases,
)
from outbox.conf import outbox_settings
from outbox.correlation import correlation_scope
from outbox.errors import Cancel, Defer, LeaseLost, TaskError, UnknownTaskKind
from outbox.lease import holding
from outbox.models import AttemptOutcome, RelayPass
from outbox.registry import TaskContext, get_handler
from outbox.retry import RetryPolicy
from outbox.services import NOTIFY_CHANNEL
from outbox.shutdown import cluster_stopping
from outbox.storable import storable_text

T = TypeVar("T")
logger = logging.getLogger(__name__)
attempt_logger = logging.getLogger("outbox.attempts")

HEARTBEAT_SECONDS = 5.0
PASS_STALE_SECONDS = 20.0


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.current_thread().name}"


def draw_queue_order(weights: dict[str, int], rand: random.Random | None = None) -> list[str]:
    """A weighted lottery without replacement: heavy queues usually go first, none starves."""
    rand = rand or random.Random()
    queues = list(weights)
    shares = [weights[queue] for queue in queues]
    order: list[str] = []
    while queues:
        index = rand.choices(range(len(queues)), weights=shares)[0]
        order.append(queues.pop(index))
        shares.pop(index)
    return order


def run_task(
    task: ClaimedTask,
    *,
    policy: RetryPolicy,
    worker: str,
    unknown_kind_retry_seconds: float = 60.0,
) -> Outcome:
    """Run one handler and classify what happened. Never raises."""
    started_at = datetime.now(UTC)
    started = time.perf_counter()
    outcome = Outcome(
        task=task,
        outcome=AttemptOutcome.SUCCEEDED,
        started_at=started_at,
        duration_ms=0.0,
        worker=worker,
    )
    with correlation_scope(task.correlation_id), holding(task.lease):
        try:
            if task.lease.lost:
                raise LeaseLost("the pass gave the task up before its handler started")
            if task.attempt > task.max_attempts:
                # Only a lease that expired again and again gets here: its pass died each time.
                raise _LeaseExpiredTooOften(
                    f"attempt {task.attempt} exceeds max_attempts={task.max_attempts}: the "
                    "task's lease expired on every try (did the handler crash its worker?)"
                )
            handler = get_handler(task.kind)
            context = TaskContext(
                id=task.id,
                kind=task.kind,
                payload=task.payload,
                idempotency_key=task.idempotency_key,
                attempt=task.attempt,
                max_attempts=task.max_attempts,
                correlation_id=task.correlation_id,
                created_at=task.created_at,
            )
            outcome.result = handler.func(context)
        except Defer as exc:
            outcome.outcome = AttemptOutcome.RETRY
            outcome.retry_in = exc.retry_after if exc.retry_after is not None else 5.0
            outcome.deferred = True
            outcome.error = f"deferred: {exc}"
        except Cancel as exc:
            outcome.outcome = AttemptOutcome.CANCELED
            outcome.error = str(exc)
        except TaskError as exc:
            outcome.http_status = exc.http_status
            _fail(outcome, policy, str(exc), permanent=exc.permanent, retry_after=exc.retry_after)
        except LeaseLost as exc:
            outcome.outcome = AttemptOutcome.LEASE_LOST
            outcome.error = f"not started: {exc}"
        except UnknownTaskKind as exc:
            # A rolling deploy: this worker is older than the task. Put it back for one that
            # knows the kind; the attempt budget bounds the wait.
            logger.warning(
                "%s on %s; task %s goes back to wait for one that has", exc, worker, task.id
            )
            _fail(
                outcome,
                policy,
                f"{exc} on {worker}; waiting for a worker that has one",
                permanent=False,
                retry_after=unknown_kind_retry_seconds,
            )
        except _LeaseExpiredTooOften as exc:
            _fail(outcome, policy, str(exc), permanent=True)
        except Exception:
            # A bug in a handler is retried like a transient error, with its traceback kept.
            _fail(outcome, policy, traceback.format_exc(), permanent=False)
        outcome.duration_ms = (time.perf_counter() - started) * 1000
        _log_attempt(outcome)
    return outcome


class _LeaseExpiredTooOften(Exception):
    pass


def _fail(
    outcome: Outcome,
    policy: RetryPolicy,
    error: str,
    *,
    permanent: bool,
    retry_after: float | None = None,
) -> None:
    task = outcome.task
    outcome.error = storable_text(error)
    delay = policy.next_delay(
        attempt=task.attempt,
        max_attempts=task.max_attempts,
        permanent=permanent,
        retry_after=retry_after,
    )
    if delay is None:
        outcome.outcome = AttemptOutcome.FAILED
    else:
        outcome.outcome = AttemptOutcome.RETRY
        outcome.retry_in = delay


def _log_attempt(outcome: Outcome) -> None:
    task = outcome.task
    level = logging.INFO if outcome.outcome == AttemptOutcome.SUCCEEDED else logging.WARNING
    if not attempt_logger.isEnabledFor(level):
        return
    ticket_id = task.payload.get("ticket_id", "-") if isinstance(task.payload, dict) else "-"
    first_line = outcome.error.strip().splitlines()[-1] if outcome.error else ""
    attempt_logger.log(
        level,
        "task=%s kind=%s ticket=%s attempt=%s/%s outcome=%s status=%s duration_ms=%.1f %s",
        task.id,
        task.kind,
        ticket_id,
        task.attempt,
        task.max_attempts,
        outcome.outcome,
        outcome.http_status if outcome.http_status is not None else "-",
        outcome.duration_ms,
        first_line,
        extra={
            "correlation_id": task.correlation_id or "-",
            "task_id": task.id,
            "kind": task.kind,
            "ticket_id": ticket_id,
            "outcome": str(outcome.outcome),
            "duration_ms": round(outcome.duration_ms, 1),
        },
    )


@dataclass(slots=True)
class PassStats:
    claimed: int = 0
    succeeded: int = 0
    retried: int = 0
    failed: int = 0
    lease_lost: int = 0
    released: int = 0
    saw_backlog: bool = False

    def add(self, outcomes: Sequence[Outcome], lost: set[int]) -> None:
        for item in outcomes:
            if item.task.id in lost:
                self.lease_lost += 1
            elif item.outcome == AttemptOutcome.SUCCEEDED:
                self.succeeded += 1
            elif item.outcome == AttemptOutcome.RETRY:
                self.retried += 1
            else:
                self.failed += 1


@dataclass(kw_only=True)
class Relay:
    """Claims and runs tasks. Tests call `run_once`/`drain`; django-q2 runs `run`."""

    batch_size: int = 200
    threads: int = 32
    lease_seconds: float = 12.0
    renew_seconds: float = 2.0
    poll_seconds: float = 0.05
    max_task_seconds: float = 15.0
    unknown_kind_retry_seconds: float = 60.0
    queue_weights: dict[str, int] = field(
        default_factory=lambda: {"critical": 6, "default": 3, "low": 1}
    )
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    worker: str = field(default_factory=worker_name)
    stop_event: threading.Event = field(default_factory=threading.Event)
    # Set once a stopping pass has given back what it had not started.
    wound_down: threading.Event = field(default_factory=threading.Event)
    on_backlog: Callable[[], None] | None = None
    rand: random.Random = field(default_factory=random.Random)

    @classmethod
    def from_settings(cls, **overrides: Any) -> Relay:
        conf = outbox_settings()
        options: dict[str, Any] = {
            "batch_size": conf.batch_size,
            "threads": conf.threads,
            "lease_seconds": conf.lease_seconds,
            "renew_seconds": conf.renew_seconds,
            "poll_seconds": conf.poll_seconds,
            "max_task_seconds": conf.max_task_seconds,
            "unknown_kind_retry_seconds": conf.unknown_kind_retry_seconds,
            "queue_weights": dict(conf.queue_weights),
            "policy": RetryPolicy(
                base_seconds=conf.backoff_base_seconds, cap_seconds=conf.backoff_cap_seconds
            ),
        }
        options.update(overrides)
        return cls(**options)

    def claim(self, limit: int) -> list[ClaimedTask]:
        return claim_due_tasks(
            limit=limit,
            worker=self.worker,
            lease_seconds=self.lease_seconds,
            queue_order=draw_queue_order(self.queue_weights, self.rand),
        )

    def _execute(self, pool: _HandlerPool, task: ClaimedTask) -> Outcome:
        return pool.run(
            task,
            policy=self.policy,
            worker=self.worker,
            unknown_kind_retry_seconds=self.unknown_kind_retry_seconds,
        )

    def run_once(self, *, limit: int | None = None) -> PassStats:
        """Claim one batch, run it to the end, record it. Deterministic: no waiting."""
        stats = PassStats()
        tasks = self.claim(limit or self.batch_size)
        stats.claimed = len(tasks)
        if not tasks:
            return stats
        with _HandlerPool(min(self.threads, len(tasks))) as pool:
            outcomes = list(pool.map(lambda t: self._execute(pool, t), tasks))
        batch = list(outcomes)
        stats.add(batch, record_outcomes(outcomes))
        return stats

    def drain(self, *, max_batches: int = 1000) -> PassStats:
        """Run batches until none is due (tasks retrying later stay pending)."""
        total = PassStats()
        for _ in range(max_batches):
            stats = self.run_once()
            if not stats.claimed:
                break
            for name in ("claimed", "succeeded", "retried", "failed", "lease_lost"):
                setattr(total, name, getattr(total, name) + getattr(stats, name))
        return total

    def run(
        self,
        *,
        seconds: float,
        heartbeat: Callable[[], None] | None = None,
        until_idle: bool = False,
    ) -> PassStats:
        """Claim and run for `seconds`, keeping the pool busy; then finish and return.

        While handlers run, their leases are renewed every `renew_seconds`. On stop (SIGTERM)
        it stops claiming, finishes the attempts already running, and gives back the leases
        of tasks it claimed but had not started.
        """
        stats = PassStats()
        claim_until = time.monotonic() + seconds
        inflight: dict[Future[Outcome], ClaimedTask] = {}
        done: list[Outcome] = []
        last_flush = last_beat = last_renew = time.monotonic()
        low_water = max(1, self.batch_size // 2)
        pool = _HandlerPool(self.threads)
        abandoned = False
        claiming_ended: float | None = None
        try:
            with _Waiter(self.poll_seconds) as waiter:
                while True:
                    now = time.monotonic()
                    if cluster_stopping():
                        self.stop_event.set()
                    claiming = now < claim_until and not self.stop_event.is_set()
                    if not claiming and claiming_ended is None:
                        claiming_ended = now
                    tasks = []
                    if claiming and len(inflight) < low_water:
                        try:
                            tasks = self.claim(self.batch_size - len(inflight))
                        except DATABASE_TROUBLE:
                            self._database_trouble("claim")
                        stats.claimed += len(tasks)
                        if len(tasks) == self.batch_size - len(inflight):
                            stats.saw_backlog = True
                            if self.on_backlog is not None:
                                self.on_backlog()
                        for task in tasks:
                            inflight[pool.submit(self._execute, pool, task)] = task
                    if now - last_renew >= self.renew_seconds:
                        # Outcomes not yet written hold their leases too: an expired one would
                        # let another pass run the task again.
                        self._renew([*inflight.values(), *(o.task for o in done)], stats)
                        last_renew = now
                    if heartbeat is not None and now - last_beat > HEARTBEAT_SECONDS:
                        try:
                            heartbeat()
                        except DATABASE_TROUBLE:
                            self._database_trouble("heartbeat")
                        last_beat = now
                    if not inflight:
                        self._flush(done, stats)
                        if not claiming or (until_idle and not tasks and not done):
                            self.wound_down.set()
                            break
                        waiter.wait(min(claim_until - now, 1.0), self.stop_event)
                        continue
                    if not claiming and not self.wound_down.is_set():
                        self._give_back_unstarted(inflight, stats)
                        self.wound_down.set()
                    finished, _ = wait(inflight, timeout=0.05, return_when=FIRST_COMPLETED)
                    for future in finished:
                        del inflight[future]
                        done.append(future.result())
                    if (
                        len(done) >= low_water
                        or not inflight
                        or time.monotonic() - last_flush > 0.05
                    ):
                        self._flush(done, stats)
                        last_flush = time.monotonic()
                    if (
                        claiming_ended is not None
                        and time.monotonic() > claiming_ended + self.max_task_seconds
                    ):
                        # Handlers stuck outside their calls' deadlines (a bug): no further
                        # call may start, and whatever call is in flight ends by its deadline,
                        # before the unrenewed lease lets another pass take the task.
                        for task in inflight.values():
                            task.lease.lose()
                        logger.error(
                            "relay pass abandons %d stuck attempts (tasks %s); their leases "
                            "expire and other passes take them again",
                            len(inflight),
                            ", ".join(str(task.id) for task in inflight.values()),
                        )
                        abandoned = True
                        break
        finally:
            pool.shutdown(wait=not abandoned, cancel_futures=True)
            self._flush_before(done, stats, time.monotonic() + self.max_task_seconds)
        return stats

    def _renew(self, tasks: list[ClaimedTask], stats: PassStats) -> None:
        if not tasks:
            return
        try:
            lost = renew_leases(tasks)
        except DATABASE_TROUBLE:
            # Not renewed: the local estimates run down, and handlers stop starting calls
            # before the leases can expire.
            self._database_trouble("renewing leases")
            return
        if lost:
            logger.warning(
                "relay pass lost the leases of tasks %s; their handlers start no further call",
                ", ".join(str(task_id) for task_id in sorted(lost)),
            )

    def _flush(self, done: list[Outcome], stats: PassStats) -> bool:
        """Record finished attempts; on a database outage keep them for the next try."""
        if not done:
            return True
        batch = list(done)
        try:
            lost = record_outcomes(done)
        except DATABASE_TROUBLE:
            # Outcomes written one by one before the outage have left `done`.
            stats.add(batch[: len(batch) - len(done)], set())
            self._database_trouble(f"recording {len(done)} outcomes")
            return False
        stats.add(batch, lost)
        if lost:
            attempt_logger.warning(
                "outcome=lease_lost tasks=%s: another pass owned them when their outcomes were "
                "written; the writes were refused",
                ",".join(str(task_id) for task_id in sorted(lost)),
                extra={"outcome": "lease_lost"},
            )
        return True

    def _flush_before(self, done: list[Outcome], stats: PassStats, deadline: float) -> None:
        # Outcomes not written are not lost work, but their tasks would run again once their
        # leases expire: keep trying while the leases still hold.
        while not self._flush(done, stats) and time.monotonic() < deadline:
            time.sleep(0.5)
        if done:
            logger.error("%d outcomes not recorded; their tasks will run again", len(done))

    def _database_trouble(self, doing: str) -> None:
        logger.warning("database unavailable while %s; retrying", doing, exc_info=True)
        connection.close()
        self.stop_event.wait(0.5)

    def _give_back_unstarted(
        self, inflight: dict[Future[Outcome], ClaimedTask], stats: PassStats
    ) -> None:
        unstarted = [task for future, task in list(inflight.items()) if future.cancel()]
        if not unstarted:
            return
        for future in [f for f in inflight if f.cancelled()]:
            del inflight[future]
        stats.released += release_leases(unstarted)


class _HandlerPool(ThreadPoolExecutor):
    """Handler threads that give their database connection back after every task.

    A handler may use the ORM; holding a connection per thread would cost a cluster one
    connection per thread. Closed after each task, it goes back to the process's pool
    (PostgreSQL) or is reopened cheaply (SQLite).
    """

    def run(
        self,
        task: ClaimedTask,
        *,
        policy: RetryPolicy,
        worker: str,
        unknown_kind_retry_seconds: float,
    ) -> Outcome:
        try:
            return run_task(
                task,
                policy=policy,
                worker=worker,
                unknown_kind_retry_seconds=unknown_kind_retry_seconds,
            )
        finally:
            for conn in connections.all(initialized_only=True):
                conn.close()


class _Waiter:
    """Sleeps until new work is committed: LISTEN on PostgreSQL, a short poll on SQLite."""

    def __init__(self, poll_seconds: float) -> None:
        self.poll_seconds = poll_seconds
        self.conn: Any = None

    def __enter__(self) -> _Waiter:
        if connection.vendor == "postgresql":
            try:
                import psycopg

                params = connection.get_connection_params()
                params.pop("cursor_factory", None)
                params.pop("context", None)
                self.conn = psycopg.connect(**params, autocommit=True)
                self.conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
            except Exception:
                logger.exception("LISTEN failed; the relay polls instead")
                self.conn = None
        return self

    def __exit__(self, *exc: object) -> None:
        if self.conn is not None:
            self.conn.close()

    def wait(self, timeout: float, stop_event: threading.Event) -> None:
        if timeout <= 0:
            return
        if self.conn is None:
            stop_event.wait(min(timeout, self.poll_seconds))
            return
        # Retries and scheduled tasks become due without a NOTIFY: wake at least every 0.25s.
        timeout = min(timeout, 0.25)
        try:
            ready, _, _ = select.select([self.conn.fileno()], [], [], timeout)
            if ready:
                for _ in self.conn.notifies(timeout=0, stop_after=0):
                    pass
        except Exception:
            logger.exception("LISTEN connection broke; the relay polls instead")
            self.conn.close()
            self.conn = None


# django-q2 entry points -------------------------------------------------------------------


def run_pass(pass_id: str | None = None) -> dict[str, Any]:
    """One bounded relay pass; the django-q2 task that keeps the outbox drained."""
    conf = outbox_settings()
    me = _retrying(lambda: _register_pass(pass_id))
    if me is None:
        return {"skipped": "enough passes are running"}
    relay = Relay.from_settings(on_backlog=_spawn_on_backlog())
    stats = PassStats()
    try:
        with _stop_on_signals(relay.stop_event):
            stats = relay.run(seconds=conf.pass_seconds, heartbeat=lambda: _beat(me))
    finally:
        try:
            _retrying(lambda: _hand_over(me, relay.stop_event.is_set(), stats.saw_backlog))
        except DATABASE_TROUBLE:
            # The minute schedule and the next worker start bring the relay back.
            logger.exception("could not hand over to the next relay pass")
    return {
        "claimed": stats.claimed,
        "succeeded": stats.succeeded,
        "retried": stats.retried,
        "failed": stats.failed,
        "lease_lost": stats.lease_lost,
        "released": stats.released,
    }


def _retrying(action: Callable[[], T], *, tries: int = 5) -> T:
    """Run a short database action, riding out a killed connection or a restart."""
    for attempt in range(1, tries + 1):
        try:
            return action()
        except DATABASE_TROUBLE:
            if attempt == tries:
                raise
            logger.warning("database unavailable; trying again", exc_info=True)
            connection.close()
            time.sleep(0.5 * attempt)
    raise AssertionError("unreachable")


def _hand_over(me: uuid.UUID, stopping: bool, saw_backlog: bool) -> None:
    RelayPass.objects.filter(id=me).delete()
    if not stopping and (saw_backlog or _live_passes() < 1):
        spawn_passes(1)


def _register_pass(pass_id: str | None) -> uuid.UUID | None:
    with transaction.atomic():
        _lock_pass_table()
        if pass_id is not None and RelayPass.objects.filter(id=pass_id).update(
            heartbeat_at=Now(), worker=worker_name()
        ):
            return uuid.UUID(pass_id)
        if _live_passes() >= outbox_settings().max_passes:
            return None
        return RelayPass.objects.create(worker=worker_name()).id


def _beat(pass_id: uuid.UUID) -> None:
    RelayPass.objects.filter(id=pass_id).update(heartbeat_at=Now())


def _live_passes() -> int:
    cutoff = Now() - timedelta(seconds=PASS_STALE_SECONDS)
    return RelayPass.objects.filter(heartbeat_at__gte=cutoff).count()


def _lock_pass_table() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext('outbox_relay_pass'))")


def spawn_passes(count: int) -> int:
    """Enqueue up to `count` passes on the django-q2 broker, never beyond MAX_PASSES live."""
    from django_q.tasks import async_task

    with transaction.atomic():
        _lock_pass_table()
        RelayPass.objects.filter(
            heartbeat_at__lt=Now() - timedelta(seconds=PASS_STALE_SECONDS)
        ).delete()
        room = outbox_settings().max_passes - _live_passes()
        reserved = [RelayPass.objects.create(worker="(queued)") for _ in range(min(count, room))]
    for reservation in reserved:
        async_task(
            "outbox.relay.run_pass",
            str(reservation.id),
            task_name=f"outbox-relay-pass-{reservation.id}",
        )
    return len(reserved)


def _spawn_on_backlog() -> Callable[[], None]:
    last = 0.0

    def spawn() -> None:
        nonlocal last
        now = time.monotonic()
        if now - last < 2.0:
            return
        last = now
        try:
            spawn_passes(1)
        except Exception:
            logger.exception("could not start another relay pass")

    return spawn


def keep_passes_alive() -> int:
    """The minute schedule: make sure at least one pass runs (after a crash, say)."""
    if not outbox_settings().autostart:
        return 0
    return spawn_passes(max(0, 1 - _live_passes()))


@contextmanager
def _stop_on_signals(stop_event: threading.Event) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: FrameType | None) -> None:
        logger.warning("relay pass got signal %s: finishing in-flight attempts", signum)
        stop_event.set()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
