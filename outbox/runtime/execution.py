"""Running one handler: call it inside its task's scope and classify what happened.

`run_task` never raises: every way a handler can end (a result, an error it raised, a bug) is
an `Outcome` for `record_outcomes`. `HandlerPool` runs them on threads.
"""

from __future__ import annotations

import contextvars
import logging
import queue
import threading
import time
import traceback
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from django.db import connections
from django.db.backends.signals import connection_created

from outbox import tracing
from outbox.claim import ClaimedTask
from outbox.correlation import set_correlation_id
from outbox.errors import (
    NO_ANSWER,
    NOT_SENT,
    Cancel,
    Defer,
    LeaseLost,
    Misconfigured,
    TaskError,
    UnknownTaskKind,
)
from outbox.lease import hold
from outbox.models import Attempt, AttemptOutcome, AttemptReply
from outbox.outcomes import Outcome
from outbox.registry import TaskContext, get_handler
from outbox.retry import RetryPolicy
from outbox.storable import storable_text

# The relay's logger name, as before these modules were split out of it: operators filter on it.
logger = logging.getLogger("outbox.relay")
attempt_logger = logging.getLogger("outbox.attempts")


def run_task(task: ClaimedTask, *, policy: RetryPolicy, worker: str) -> Outcome:
    """Run one handler and classify what happened. Never raises.

    The handler runs in a copy of the caller's context, with the task's correlation id and
    lease set in it: what a handler sets in a context variable stays with its task, never
    reaching the next task its thread runs.
    """
    return contextvars.copy_context().run(_run_in_context, task, policy, worker)


def _run_in_context(task: ClaimedTask, policy: RetryPolicy, worker: str) -> Outcome:
    context = task.context
    set_correlation_id(context.correlation_id)
    hold(task.lease)
    span = tracing.start_process_span(context, task.trace_context, worker)
    started_at = datetime.now(UTC)
    started = time.perf_counter()
    outcome = Outcome(
        task=task,
        verdict=AttemptOutcome.SUCCEEDED,
        started_at=started_at,
        duration_ms=0.0,
        worker=worker,
    )
    settle: float | None = None
    try:
        if task.lease.lost:
            raise LeaseLost("the pass gave the task up before its handler started")
        if context.attempt > context.max_attempts:
            # Only a lease that expired again and again gets here: its pass died each time.
            raise _LeaseExpiredTooOften(
                f"attempt {context.attempt} exceeds max_attempts={context.max_attempts}: "
                "the task's lease expired on every try (did the handler crash its worker?)"
            )
        handler = get_handler(context.kind)
        settle = handler.settle()
        if settle is not None and context.attempt > 1:
            unsettled = previous_try_unsettled(context)
            if unsettled is not None:
                raise _Vanished(settle, recorded=unsettled != "vanished")
        outcome.result = handler.func(context)
    except _Vanished as exc:
        # Its write may still be in flight: wait for it to land, spending no try on the wait.
        outcome.vanished_try = None if exc.recorded else context.attempt - 1
        outcome.settle_until = started_at + timedelta(seconds=exc.settle)
        outcome.verdict = AttemptOutcome.RETRY
        outcome.retry_in = exc.settle
        outcome.deferred = True
        what = (
            "lost its lease after a call that got no answer"
            if exc.recorded
            else "ended without an outcome"
        )
        outcome.error = (
            f"waiting: try {context.attempt - 1} {what}, and a write it sent may land until "
            f"{_clock(outcome.settle_until)}; the next try starts then"
        )
    except Misconfigured as exc:
        # Not the task's fault: it waits, pending, spending no try, while the circuit rests.
        outcome.verdict = AttemptOutcome.RETRY
        outcome.retry_in = policy.defer_delay(exc.retry_after)
        outcome.deferred = True
        outcome.http_status = exc.http_status
        outcome.error = f"misconfigured: {exc}"
    except Defer as exc:
        outcome.verdict = AttemptOutcome.RETRY
        outcome.retry_in = policy.defer_delay(exc.retry_after)
        outcome.deferred = True
        outcome.error = f"deferred: {exc}"
    except Cancel as exc:
        outcome.verdict = AttemptOutcome.CANCELED
        outcome.error = str(exc)
    except TaskError as exc:
        outcome.http_status = exc.http_status
        outcome.reply = exc.reply
        _fail(
            outcome,
            policy,
            str(exc),
            permanent=exc.permanent,
            retry_after=exc.retry_after,
            settle=settle if exc.reply == NO_ANSWER else None,
        )
    except LeaseLost as exc:
        outcome.verdict = AttemptOutcome.LEASE_LOST
        outcome.reply = NOT_SENT
        outcome.error = f"not started: {exc}"
    except UnknownTaskKind as exc:
        # A rolling deploy: this worker is older than the task. Put it back for one that
        # knows the kind; the attempt budget bounds the wait.
        logger.warning("%s on %s; task %s goes back to wait for one that has", exc, worker, task.id)
        _fail(
            outcome,
            policy,
            f"{exc} on {worker}; waiting for a worker that has one",
            permanent=False,
            retry_after=policy.unknown_kind_seconds,
        )
    except _LeaseExpiredTooOften as exc:
        _fail(outcome, policy, str(exc), permanent=True)
    except Exception:
        # A bug in a handler is retried like a transient error, with its traceback kept.
        _fail(outcome, policy, traceback.format_exc(), permanent=False)
    outcome.duration_ms = (time.perf_counter() - started) * 1000
    if span is not None:
        tracing.end_process_span(span, outcome)
    _log_attempt(outcome)
    return outcome


class _LeaseExpiredTooOften(Exception):
    pass


class _Vanished(Exception):
    def __init__(self, settle: float, *, recorded: bool) -> None:
        super().__init__(settle)
        self.settle = settle
        self.recorded = recorded


def previous_try_unsettled(context: TaskContext) -> str | None:
    """Why the try before this one may still have a write in flight nobody waited for, or None.

    "vanished": it left no outcome of its own (its worker died mid-try, or the pass that ran it
    lost the task and has not written its outcome yet). "refused": its outcome was refused (a
    lost lease) after a call that got no answer, so no settle was written for it. A try whose
    outcome was recorded with no answer set the task's `settle_until` itself, and a wait set
    after a try started (`settle_until` past its start) covers it.
    """
    previous = (
        Attempt.objects.filter(task_id=context.id, number=context.attempt - 1)
        .values_list("outcome", "reply", "started_at", "task__settle_until")
        .first()
    )
    if previous is None:
        return "vanished"
    outcome, reply, started_at, settle_until = previous
    # A blank reply on a lost lease is a row from before replies were kept: unknown, so wait.
    if outcome != AttemptOutcome.LEASE_LOST or reply not in (AttemptReply.NO_ANSWER, ""):
        return None
    if settle_until is not None and settle_until >= started_at:
        return None
    return "refused"


def _clock(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%H:%M:%S UTC")


def _fail(
    outcome: Outcome,
    policy: RetryPolicy,
    error: str,
    *,
    permanent: bool,
    retry_after: float | None = None,
    settle: float | None = None,
) -> None:
    """Set the outcome of a try that failed: retried after its backoff, or dead.

    `settle` (seconds) is for a try whose call got no answer, of a kind that waits for its
    writes to land: the next try is due at the later of the backoff and the try's start plus
    `settle`, never their sum, and no operator's retry brings it forward.
    """
    context = outcome.task.context
    delay = policy.next_delay(
        attempt=context.attempt,
        max_attempts=context.max_attempts,
        permanent=permanent,
        retry_after=retry_after,
    )
    if settle:
        outcome.settle_until = outcome.started_at + timedelta(seconds=settle)
        if delay is not None:
            waited = (datetime.now(UTC) - outcome.started_at).total_seconds()
            if settle - waited > delay:
                delay = settle - waited
                error = (
                    f"{error}; no answer: a write of this try may land until "
                    f"{_clock(outcome.settle_until)}, so the next try waits until then"
                )
    outcome.error = storable_text(error)
    if delay is None:
        outcome.verdict = AttemptOutcome.FAILED
    else:
        outcome.verdict = AttemptOutcome.RETRY
        outcome.retry_in = delay


def _subject(context_kind: str, payload: object) -> str | None:
    try:
        return get_handler(context_kind).subject(payload)
    except UnknownTaskKind:
        return None
    except Exception:
        # Only for the log line: a subject that cannot be read must not turn the attempt's
        # outcome (a success, say) into a crash.
        logger.warning("could not read the subject of a %s task", context_kind, exc_info=True)
        return None


def _log_attempt(outcome: Outcome) -> None:
    context = outcome.task.context
    level = logging.INFO if outcome.verdict == AttemptOutcome.SUCCEEDED else logging.WARNING
    if not attempt_logger.isEnabledFor(level):
        return
    subject = _subject(context.kind, context.payload)
    first_line = outcome.error.strip().splitlines()[-1] if outcome.error else ""
    if outcome.deferred:
        # A deferral (an open circuit, say) gives the try back: `attempt=6/30` would read as
        # a sixth try spent. Say how many tries are spent so far instead.
        attempt = f"deferred(not-a-try,{context.attempt - 1}/{context.max_attempts}-spent)"
    else:
        attempt = f"{context.attempt}/{context.max_attempts}"
    attempt_logger.log(
        level,
        "task=%s kind=%s subject=%s attempt=%s outcome=%s status=%s duration_ms=%.1f %s",
        context.id,
        context.kind,
        subject if subject is not None else "-",
        attempt,
        outcome.verdict,
        outcome.http_status if outcome.http_status is not None else "-",
        outcome.duration_ms,
        first_line,
        extra={
            "correlation_id": context.correlation_id or "-",
            "task_id": context.id,
            "kind": context.kind,
            "subject": subject,
            "outcome": str(outcome.verdict),
            "duration_ms": round(outcome.duration_ms, 1),
        },
    )


def _crashed(task: ClaimedTask, *, policy: RetryPolicy, worker: str) -> Outcome:
    """The outcome of a `run_task` that raised after all (a bug in the relay's own code around
    the handler): retried like a handler's bug, never lost from its pass."""
    outcome = Outcome(
        task=task,
        verdict=AttemptOutcome.RETRY,
        started_at=datetime.now(UTC),
        duration_ms=0.0,
        worker=worker,
    )
    _fail(outcome, policy, traceback.format_exc(), permanent=False)
    return outcome


# Whether this thread has opened a database connection since it last closed its connections.
_opened = threading.local()


def _note_connection(sender: object, **kwargs: object) -> None:
    _opened.flag = True


# Every connection (a pool checkout on PostgreSQL) is opened through `connect()`, which sends it.
connection_created.connect(_note_connection, dispatch_uid="outbox.execution.note_connection")


def close_thread_connections() -> None:
    """Give back the database connections this thread opened (to the pool, on PostgreSQL).

    A thread that opened none since the last call pays one flag check. Asking Django for the
    thread's connections costs more (an exception inside asgiref for each alias never used on
    the thread): for handlers that never touch the database it was 7% of a no-op drain.
    """
    if not getattr(_opened, "flag", False):
        return
    for conn in connections.all(initialized_only=True):
        conn.close()
    _opened.flag = False


class HandlerPool:
    """Handler threads fed from one queue, their outcomes handed back on another.

    `submit_many` queues a claim's tasks; `results` returns the outcomes finished so far. A pass
    hands over thousands of tasks a second: a `concurrent.futures` Future per task (with its
    Condition and lock), and waiting on all of them at once, was 15% of a no-op drain.

    A handler may use the ORM; holding a connection per thread would cost a cluster one
    connection per thread. Closed after each task, it goes back to the process's pool
    (PostgreSQL) or is reopened cheaply (SQLite). Threads start as work arrives, up to
    `threads`; they are daemons, so a stuck handler a pass abandoned does not hold its
    process at exit.
    """

    def __init__(self, threads: int, *, policy: RetryPolicy, worker: str) -> None:
        self._size = max(1, threads)
        self._policy = policy
        self._worker = worker
        self._todo: queue.SimpleQueue[ClaimedTask | None] = queue.SimpleQueue()
        # Finished outcomes, and the tasks submitted whose outcome is not finished yet.
        self._finished = threading.Condition(threading.Lock())
        self._done: list[Outcome] = []
        self._unfinished = 0
        self._wake_below = 0
        self._idle = 0  # threads back at the queue with nothing taken yet (under _finished)
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> HandlerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown(wait=True)

    def submit_many(self, tasks: Sequence[ClaimedTask]) -> None:
        """Queue a claim's tasks at once: one lock for the lot, not one per task (a pass
        submitting task by task spent more of its time here than its threads spent running
        no-op handlers)."""
        if not tasks:
            return
        with self._finished:
            self._unfinished += len(tasks)
            # Threads that finished a task and went back to the queue take these first.
            waiting = min(self._idle, len(tasks))
            self._idle -= waiting
        for task in tasks:
            self._todo.put(task)
        for _ in range(min(len(tasks) - waiting, self._size - len(self._threads))):
            thread = threading.Thread(
                target=self._work,
                name=f"outbox-handler-{len(self._threads)}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)

    def results(self, timeout: float, *, unfinished_below: int | None = None) -> list[Outcome]:
        """The outcomes finished since the last call.

        Waits up to `timeout` for the first one; with `unfinished_below`, until fewer tasks
        than that are unfinished (time to claim more). A pass waking for every outcome took
        the GIL from its handler threads 1,800 times a second on an HTTP drain.
        """
        below = self._size * 1_000_000 if unfinished_below is None else unfinished_below
        with self._finished:
            self._wake_below = below
            self._finished.wait_for(lambda: self._done and self._unfinished < below, timeout)
            found, self._done = self._done, []
        return found

    def take_unstarted(self) -> list[ClaimedTask]:
        """Take back the tasks no thread has started: none of them will run here."""
        taken: list[ClaimedTask] = []
        stops = 0
        while True:
            try:
                item = self._todo.get_nowait()
            except queue.Empty:
                break
            if item is None:
                stops += 1
            else:
                taken.append(item)
        for _ in range(stops):
            self._todo.put(None)
        with self._finished:
            self._unfinished -= len(taken)
        return taken

    def shutdown(self, *, wait: bool) -> None:
        """Stop the threads once the queued tasks are done (`take_unstarted` first to drop them)."""
        for _ in self._threads:
            self._todo.put(None)
        if wait:
            for thread in self._threads:
                thread.join()

    def run_all(self, tasks: list[ClaimedTask]) -> list[Outcome]:
        """Run `tasks` to the end; their outcomes, in no particular order."""
        self.submit_many(tasks)
        outcomes: list[Outcome] = []
        while len(outcomes) < len(tasks):
            outcomes.extend(self.results(timeout=1.0, unfinished_below=1))
        return outcomes

    def _work(self) -> None:
        while True:
            task = self._todo.get()
            if task is None:
                return
            try:
                outcome = run_task(task, policy=self._policy, worker=self._worker)
            except BaseException:
                # Even SystemExit from a handler: the pass must get an outcome for every task
                # it handed over, and the thread goes on serving the pool.
                outcome = _crashed(task, policy=self._policy, worker=self._worker)
            try:
                close_thread_connections()
            except Exception:
                logger.warning("a handler thread could not close its connection", exc_info=True)
            with self._finished:
                self._done.append(outcome)
                self._unfinished -= 1
                self._idle += 1
                if self._unfinished < self._wake_below:
                    self._finished.notify()
