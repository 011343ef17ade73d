from __future__ import annotations

import logging
import os
import random
import threading
from collections import Counter
from datetime import timedelta

import pytest
from django.core.checks import run_checks
from django.db import connection, transaction
from django.db.models.functions import Now
from django.test import override_settings

from outbox.errors import Defer, PermanentError, TransientError
from outbox.history import history
from outbox.models import Attempt, AttemptOutcome, RelayPass, Task, TaskState
from outbox.retry import RetryPolicy
from outbox.runtime.passes import run_pass, spawn_passes
from outbox.runtime.relay import Relay, draw_queue_order
from outbox.services import TaskSpec, enqueue_many, tasks_prune

pytestmark = pytest.mark.django_db


def make(kind: str = "test.record", n: int = 1, **options) -> list[int]:
    with transaction.atomic():
        return [t.id for t in enqueue_many([TaskSpec(kind=kind, **options) for _ in range(n)])]


def relay(**options) -> Relay:
    # A first retry within 20 s: a task that failed does not come back inside a short run.
    options.setdefault("policy", RetryPolicy(base_seconds=20.0, cap_seconds=100.0))
    options.setdefault("threads", 4)
    options.setdefault("batch_size", 50)
    return Relay(**options)


def seconds_until_due(task_id: int) -> float:
    due, now = Task.objects.annotate(now=Now()).values_list("available_at", "now").get(id=task_id)
    return (due - now).total_seconds()


def test_a_handler_gets_the_task_and_its_result_is_stored(recording_handler):
    calls = recording_handler(behaviour=lambda task: {"seen": task.payload["n"]})
    [task_id] = make(payload={"n": 7}, correlation_id="c-1")

    stats = relay().run_once()

    assert stats.succeeded == 1
    [call] = calls
    assert (call.id, call.payload, call.attempt, call.correlation_id) == (
        task_id,
        {"n": 7},
        1,
        "c-1",
    )
    assert call.idempotency_key == Task.objects.get().idempotency_key
    task = Task.objects.get()
    assert (task.state, task.result) == (TaskState.SUCCEEDED, {"seen": 7})
    # The success is on the task row, no Attempt row; its history reads it as before.
    assert not Attempt.objects.exists()
    [attempt] = history(task)
    assert (attempt.number, attempt.outcome, attempt.error) == (1, AttemptOutcome.SUCCEEDED, "")
    assert attempt.duration_ms >= 0
    assert attempt.worker


def test_a_transient_error_is_retried_within_the_backoff_bounds(recording_handler):
    def fail(task):
        raise TransientError("gateway answered 500", http_status=500)

    recording_handler(behaviour=fail)
    [task_id] = make()

    relay().run_once()

    task = Task.objects.get()
    assert (task.state, task.attempts, task.last_error) == (
        TaskState.PENDING,
        1,
        "gateway answered 500",
    )
    assert -1.0 <= seconds_until_due(task_id) <= 20.0  # full jitter in [0, 20 * 2**0]
    attempt = Attempt.objects.get()
    assert (attempt.outcome, attempt.http_status) == (AttemptOutcome.RETRY, 500)


def test_retry_after_named_by_the_api_is_honoured(recording_handler):
    def rate_limited(task):
        raise TransientError("429", http_status=429, retry_after=42)

    recording_handler(behaviour=rate_limited)
    [task_id] = make()

    relay().run_once()

    assert 37.0 <= seconds_until_due(task_id) <= 43.0


def test_transient_errors_stop_at_max_attempts_and_the_task_fails(recording_handler):
    def fail(task):
        raise TransientError(f"try {task.attempt} failed")

    calls = recording_handler(behaviour=fail, max_attempts=3)
    make()

    for _ in range(3):
        relay().run_once()
        Task.objects.filter(state=TaskState.PENDING).update(available_at=Now())
    relay().run_once()

    task = Task.objects.get()
    assert (task.state, task.attempts, task.last_error) == (TaskState.FAILED, 3, "try 3 failed")
    assert task.finished_at is not None
    assert len(calls) == 3
    assert list(Attempt.objects.values_list("outcome", flat=True)) == [
        AttemptOutcome.RETRY,
        AttemptOutcome.RETRY,
        AttemptOutcome.FAILED,
    ]


def test_a_permanent_error_fails_at_once_with_its_reason(recording_handler):
    def reject(task):
        raise PermanentError("400: unknown currency", http_status=400)

    calls = recording_handler(behaviour=reject)
    make()

    relay().run_once()
    Task.objects.update(available_at=Now())
    relay().run_once()

    task = Task.objects.get()
    assert (task.state, task.last_error) == (TaskState.FAILED, "400: unknown currency")
    assert len(calls) == 1


def test_an_unexpected_exception_is_retried_with_its_traceback_and_the_pass_goes_on(
    recording_handler,
):
    def buggy(task):
        if task.payload["n"] == 0:
            raise KeyError("missing_field")
        return None

    recording_handler(behaviour=buggy)
    make(payload={"n": 0})
    make(payload={"n": 1})

    stats = relay().run_once()

    assert (stats.succeeded, stats.retried) == (1, 1)
    failed = Task.objects.get(payload__n=0)
    assert failed.state == TaskState.PENDING
    assert "Traceback" in failed.last_error
    assert "KeyError: 'missing_field'" in failed.last_error


def test_a_crash_around_the_handler_is_retried_and_the_timed_pass_does_not_hang(
    recording_handler, monkeypatch
):
    # The relay's own code around a handler (its log line, say) raising for one task: that
    # task comes back as a retry with the traceback, and the pass neither waits for it
    # forever nor loses the others.
    from outbox.runtime import execution

    real_run_task = execution.run_task

    def run_task(task, **kwargs):
        if task.context.payload["n"] == 0:
            raise RuntimeError("the attempt's log line could not be written")
        return real_run_task(task, **kwargs)

    monkeypatch.setattr(execution, "run_task", run_task)
    recording_handler()
    for n in range(3):
        make(payload={"n": n})

    stats = relay(poll_seconds=0.01).run(seconds=0.5)

    assert (stats.succeeded, stats.retried) == (2, 1)
    crashed = Task.objects.get(payload__n=0)
    assert crashed.state == TaskState.PENDING
    assert "RuntimeError: the attempt's log line could not be written" in crashed.last_error


def test_a_deferred_task_waits_without_spending_an_attempt(recording_handler):
    def not_yet(task):
        raise Defer("the receipt is not issued yet", retry_after=30)

    recording_handler(behaviour=not_yet, max_attempts=1)
    [task_id] = make()

    relay().run_once()

    task = Task.objects.get()
    assert (task.state, task.attempts) == (TaskState.PENDING, 0)
    assert 25.0 <= seconds_until_due(task_id) <= 31.0


def test_a_deferral_is_not_logged_as_a_try_spent(recording_handler, caplog):
    def not_yet(task):
        raise Defer("circuit open", retry_after=30)

    recording_handler(behaviour=not_yet, max_attempts=30)
    make()

    with caplog.at_level(logging.WARNING, logger="outbox.attempts"):
        relay().run_once()

    [line] = [r.getMessage() for r in caplog.records if r.name == "outbox.attempts"]
    assert "attempt=deferred(not-a-try,0/30-spent)" in line
    assert "attempt=1/30" not in line


def test_a_kind_this_worker_does_not_know_waits_for_a_worker_that_does(recording_handler):
    # A rolling deploy: the task was enqueued by a newer release than this worker runs.
    recording_handler("test.gone")
    [task_id] = make("test.gone")
    from outbox import registry

    registry.unregister("test.gone")

    relay(policy=RetryPolicy(unknown_kind_seconds=60.0)).run_once()

    task = Task.objects.get()
    assert (task.state, task.attempts) == (TaskState.PENDING, 1)
    assert "no handler is registered" in task.last_error
    assert 55.0 <= seconds_until_due(task_id) <= 61.0


def test_a_kind_no_worker_ever_knows_fails_once_its_attempts_are_spent(recording_handler):
    recording_handler("test.gone")
    make("test.gone", max_attempts=2)
    from outbox import registry

    registry.unregister("test.gone")
    Task.objects.update(attempts=1)

    relay().run_once()

    task = Task.objects.get()
    assert task.state == TaskState.FAILED
    assert "no handler is registered" in task.last_error


def test_a_task_whose_lease_expired_on_every_try_fails_instead_of_looping(recording_handler):
    calls = recording_handler(max_attempts=2)
    make()
    Task.objects.update(attempts=2)  # two passes died holding it

    relay().run_once()

    task = Task.objects.get()
    assert task.state == TaskState.FAILED
    assert "lease expired" in task.last_error
    assert calls == []


def test_the_queue_lottery_puts_every_queue_first_in_proportion_to_its_weight():
    rand = random.Random(1)
    weights = {"critical": 6, "default": 3, "low": 1}

    firsts = Counter(draw_queue_order(weights, rand)[0] for _ in range(10000))

    assert 5500 < firsts["critical"] < 6500
    assert 2500 < firsts["default"] < 3500
    assert 700 < firsts["low"] < 1300


def test_a_low_task_runs_under_a_steady_flood_of_critical_ones(recording_handler):
    recording_handler("test.critical", queue="critical")
    low_calls = recording_handler("test.low", queue="low")
    make("test.low")
    runner = relay(batch_size=5, rand=random.Random(3))

    for _ in range(60):
        make("test.critical", n=5)  # more critical work arrives than one batch takes
        runner.run_once()
        if low_calls:
            break

    assert len(low_calls) == 1
    assert Task.objects.filter(kind="test.critical", state=TaskState.PENDING).exists()


def five_slow_tasks(recording_handler) -> tuple[threading.Event, threading.Event]:
    """Five tasks whose handler sets `started` and runs until `release` is set."""
    started, release = threading.Event(), threading.Event()

    def slow(task):
        started.set()
        release.wait(10)
        return {"done": task.payload["n"]}

    recording_handler(behaviour=slow)
    for n in range(5):
        make(payload={"n": n})
    return started, release


def test_stop_finishes_running_attempts_and_gives_back_unstarted_leases(recording_handler):
    started, release = five_slow_tasks(recording_handler)
    runner = Relay(threads=1, batch_size=5, poll_seconds=0.01)

    def stop_when_running() -> None:
        started.wait(10)
        runner.stop_event.set()
        runner.wound_down.wait(10)
        release.set()

    stopper = threading.Thread(target=stop_when_running)
    stopper.start()
    stats = runner.run(seconds=30)
    stopper.join()

    assert (stats.claimed, stats.succeeded, stats.released) == (5, 1, 4)
    states = Counter(Task.objects.values_list("state", "attempts"))
    assert states == {(TaskState.SUCCEEDED, 1): 1, (TaskState.PENDING, 0): 4}


def test_a_timed_pass_drains_everything_then_returns(recording_handler):
    calls = recording_handler()
    make(n=120)

    stats = Relay(threads=4, batch_size=50, poll_seconds=0.01).run(seconds=0.5)

    assert stats.succeeded == 120
    assert len(calls) == 120
    assert Task.objects.filter(state=TaskState.SUCCEEDED).count() == 120


def test_prune_removes_finished_tasks_older_than_the_retention_with_their_attempts(
    recording_handler,
):
    recording_handler()
    old, recent, waiting = make(n=3)
    relay().run_once()
    Task.objects.filter(id=waiting).update(state=TaskState.PENDING, finished_at=None)
    Task.objects.filter(id=old).update(finished_at=Now() - timedelta(days=31))

    pruned = tasks_prune(older_than=timedelta(days=30))

    assert pruned == 1
    assert set(Task.objects.values_list("id", flat=True)) == {recent, waiting}
    assert not Attempt.objects.filter(task_id=old).exists()


@pytest.mark.parametrize(
    ("q_cluster", "outbox", "error_id"),
    [
        ({"timeout": 90, "retry": 90, "workers": 4}, {}, "outbox.E002"),
        ({"retry": 90, "workers": 4}, {}, "outbox.E001"),
        ({"timeout": 30, "retry": 90, "workers": 4}, {"PASS_SECONDS": 20}, "outbox.E003"),
        ({"timeout": 60, "retry": 90, "workers": 4}, {"LEASE_SECONDS": 9}, "outbox.E004"),
        ({"timeout": 60, "retry": 90, "workers": 4}, {"CALL_SECONDS": 0.1}, "outbox.E006"),
        ({"timeout": 60, "retry": 90, "workers": 3}, {"MAX_PASSES": 3}, "outbox.E005"),
    ],
)
def test_the_system_check_refuses_timings_that_would_run_a_pass_twice(q_cluster, outbox, error_id):
    with override_settings(Q_CLUSTER=q_cluster, OUTBOX=outbox):
        errors = run_checks()

    assert error_id in [error.id for error in errors]


def test_the_system_check_accepts_the_default_settings():
    assert [e.id for e in run_checks() if e.id.startswith("outbox.")] == []


def test_spawn_never_starts_more_passes_than_the_limit():
    from django_q.models import OrmQ

    with override_settings(OUTBOX={"MAX_PASSES": 2}):
        assert spawn_passes(5) == 2
        assert spawn_passes(1) == 0

    assert RelayPass.objects.count() == 2
    assert OrmQ.objects.count() == 2


def test_the_passes_of_a_killed_cluster_on_this_host_leave_room_at_once():
    # Two clusters killed on this host leave pass records with fresh heartbeats: counted as
    # live, the replacement cluster would start no pass until they went stale and the minute
    # schedule ran. A record of a live process, or of another host, is kept.
    import socket
    import subprocess
    import sys

    from django_q.models import OrmQ

    from outbox.runtime.passes import keep_passes_alive

    ended = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    dead_pid = int(ended.stdout)
    host = socket.gethostname()
    RelayPass.objects.create(worker=f"{host}:{dead_pid}:Thread-1")
    RelayPass.objects.create(worker=f"{host}:{dead_pid}:Thread-2")
    alive = RelayPass.objects.create(worker=f"{host}:{os.getpid()}:MainThread")
    elsewhere = RelayPass.objects.create(worker=f"other-host:{dead_pid}:Thread-1")

    with override_settings(OUTBOX={"MAX_PASSES": 3}):
        assert keep_passes_alive() == 0  # two live passes: one is enough for the keeper
        assert spawn_passes(3) == 1

    workers = set(RelayPass.objects.values_list("worker", flat=True))
    assert workers == {alive.worker, elsewhere.worker, "(queued)"}
    assert OrmQ.objects.count() == 1


def test_a_killed_worker_not_yet_reaped_counts_as_ended(recording_handler):
    # The bad day's crash: two clusters SIGKILLed, two started at once on the same host.
    # The killed workers were zombies (their parent died with them) and signal 0 still
    # reached them: their passes counted as live, and the new clusters started none for
    # 30 s, until the minute schedule.
    import socket
    import subprocess
    import time

    from outbox.runtime.passes import keep_passes_alive

    child = subprocess.Popen(["sleep", "60"])
    try:
        child.kill()  # and not reaped until child.wait() below: a zombie
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with open(f"/proc/{child.pid}/stat", "rb") as stat:
                if b") Z " in stat.read():
                    break
            time.sleep(0.01)
        RelayPass.objects.create(worker=f"{socket.gethostname()}:{child.pid}:Thread-1")

        with override_settings(OUTBOX={"MAX_PASSES": 1}):
            assert keep_passes_alive() == 1
    finally:
        child.wait()

    assert list(RelayPass.objects.values_list("worker", flat=True)) == ["(queued)"]


def test_a_pass_beyond_the_limit_returns_at_once(recording_handler):
    with override_settings(OUTBOX={"MAX_PASSES": 1}):
        spawn_passes(1)
        result = run_pass()

    assert result == {"skipped": "enough passes are running"}


@pytest.mark.django_db(transaction=True)
def test_a_pass_runs_tasks_and_chains_its_successor(recording_handler):
    from django_q.models import OrmQ

    calls = recording_handler()
    make(n=3)

    with override_settings(OUTBOX={"PASS_SECONDS": 1.0, "POLL_SECONDS": 0.01}):
        result = run_pass()

    assert result["succeeded"] == 3
    assert len(calls) == 3
    assert OrmQ.objects.count() == 1  # its successor is queued for the cluster
    assert RelayPass.objects.get().worker == "(queued)"


def test_database_vendor_is_one_we_support():
    assert connection.vendor in {"sqlite", "postgresql"}


def test_migrations_schedule_the_keeper_and_the_prune():
    from django_q.models import Schedule

    schedules = dict(Schedule.objects.values_list("func", "minutes"))

    assert schedules["outbox.runtime.passes.keep_passes_alive"] == 1
    assert "outbox.services.prune_finished_tasks" in schedules


@pytest.mark.django_db(transaction=True)
def test_outcomes_survive_a_database_outage_while_they_are_recorded(recording_handler, monkeypatch):
    from django.db import OperationalError

    from outbox.runtime import relay as relay_module

    calls = recording_handler()
    make(n=5)
    real = relay_module.record_outcomes
    failures = iter([True, True])

    def flaky(outcomes):
        if next(failures, False):
            raise OperationalError("terminating connection due to administrator command")
        return real(outcomes)

    monkeypatch.setattr(relay_module, "record_outcomes", flaky)

    stats = Relay(threads=2, batch_size=10, poll_seconds=0.01).run(seconds=0.3)

    assert stats.succeeded == 5
    assert len(calls) == 5  # recorded late, never run twice
    assert Task.objects.filter(state=TaskState.SUCCEEDED).count() == 5
    # Each success recorded once: one try in each history, no Attempt row.
    assert [len(history(task)) for task in Task.objects.all()] == [1] * 5
    assert not Attempt.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_claim_that_hits_a_database_outage_is_retried(recording_handler, monkeypatch):
    from django.db import OperationalError

    calls = recording_handler()
    make(n=3)
    runner = Relay(threads=2, batch_size=10, poll_seconds=0.01)
    real = runner.claim
    failures = iter([True])

    def flaky(limit):
        if next(failures, False):
            raise OperationalError("server closed the connection unexpectedly")
        return real(limit)

    monkeypatch.setattr(runner, "claim", flaky)

    stats = runner.run(seconds=1.0)

    assert stats.succeeded == 3
    assert len(calls) == 3


@pytest.mark.parametrize("module", ["outbox.relay", "outbox.passes"])
def test_a_pass_queued_under_an_old_dotted_path_still_runs(module):
    # django-q2 pickles a queued task's dotted path; tasks queued before a move name
    # outbox.relay or outbox.passes, and must still run after a deploy.
    from django.utils.module_loading import import_string

    from outbox.runtime import passes

    assert import_string(f"{module}.keep_passes_alive") is passes.keep_passes_alive
    assert import_string(f"{module}.run_pass") is passes.run_pass
    with override_settings(OUTBOX={"AUTOSTART": False}):
        assert import_string(f"{module}.keep_passes_alive")() == 0
    with override_settings(OUTBOX={"PASS_SECONDS": 1.0, "POLL_SECONDS": 0.01}):
        assert import_string(f"{module}.run_pass")()["claimed"] == 0


def test_the_schedule_migrations_rewrite_each_old_dotted_path_and_back():
    from importlib import import_module

    from django.apps import apps
    from django_q.models import Schedule

    into_passes = import_module("outbox.migrations.0005_schedules_in_passes")
    into_runtime = import_module("outbox.migrations.0013_schedules_in_runtime")
    keeper = Schedule.objects.get(name="outbox-keep-relay-alive")
    assert keeper.func == "outbox.runtime.passes.keep_passes_alive"

    into_runtime.backwards(apps, None)
    into_passes.backwards(apps, None)
    keeper.refresh_from_db()
    assert keeper.func == "outbox.relay.keep_passes_alive"

    into_passes.forwards(apps, None)
    keeper.refresh_from_db()
    assert keeper.func == "outbox.passes.keep_passes_alive"
    into_runtime.forwards(apps, None)
    keeper.refresh_from_db()
    assert keeper.func == "outbox.runtime.passes.keep_passes_alive"


@pytest.mark.postgres
def test_the_waiter_listens_once_its_connection_is_open(postgres_only):
    # LISTEN is opened on a thread while the first claim runs (a wait before then polls); once
    # open, the pass waits on it, or an idle pass would only notice work on its 0.25 s timer.
    from outbox.runtime.waiter import Waiter
    from outbox.services import NOTIFY_CHANNEL

    stop = threading.Event()
    with Waiter(poll_seconds=0.05) as waiter:
        opening = waiter._opening
        assert opening is not None, "opened on a thread, beside the first claim"
        opening.join(10)
        waiter.wait(0.01, stop)
        channels = [row[0] for row in waiter.conn.execute("SELECT pg_listening_channels()")]
    assert waiter.conn is None, "closed with the pass"

    assert channels == [NOTIFY_CHANNEL]


@pytest.mark.django_db(transaction=True)
def test_a_stop_during_a_database_blip_still_records_the_running_attempt(
    recording_handler, monkeypatch
):
    # SIGTERM, and the database drops the connection as the pass gives back what it had not
    # started: those leases are left to expire, but the attempt that was running finishes and
    # its success is written, not lost with the pass.
    from django.db import OperationalError

    from outbox.runtime import relay as relay_module

    started, release = five_slow_tasks(recording_handler)

    def release_leases(tasks):
        release.set()
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(relay_module, "release_leases", release_leases)
    runner = Relay(threads=1, batch_size=5, poll_seconds=0.01)

    def stop_when_running() -> None:
        started.wait(10)
        runner.stop_event.set()

    stopper = threading.Thread(target=stop_when_running)
    stopper.start()
    stats = runner.run(seconds=30)
    stopper.join()

    assert stats.succeeded == 1
    states = Counter(Task.objects.values_list("state", "attempts"))
    assert states == {(TaskState.SUCCEEDED, 1): 1, (TaskState.RUNNING, 1): 4}


def test_a_handler_that_calls_sys_exit_gets_an_outcome_and_its_thread_goes_on(
    recording_handler,
):
    def exits(task):
        if task.payload["n"] == 0:
            raise SystemExit(3)
        return None

    recording_handler(behaviour=exits)
    for n in range(3):
        make(payload={"n": n})

    stats = relay(threads=1, poll_seconds=0.01).run(seconds=0.5)

    assert (stats.succeeded, stats.retried) == (2, 1)
    assert "SystemExit: 3" in Task.objects.get(payload__n=0).last_error


def test_a_log_line_that_cannot_be_written_does_not_turn_a_success_into_a_retry(
    recording_handler, monkeypatch, caplog
):
    # The attempt's log line reads the task's subject after the handler returned: a failure
    # there must not make a done effect run again.
    from outbox import registry

    def broken(self, payload):
        raise ValueError("unreadable subject")

    calls = recording_handler(label="ticket_id")
    monkeypatch.setattr(registry.Handler, "subject", broken)
    make(payload={"ticket_id": "t-1"})

    with caplog.at_level(logging.INFO, logger="outbox.attempts"):
        stats = relay().run_once()

    assert (stats.succeeded, stats.retried) == (1, 0)
    assert len(calls) == 1
    assert Task.objects.get().state == TaskState.SUCCEEDED


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_prune_leaves_alone_a_task_an_operator_is_retrying_at_that_moment(
    postgres_only, recording_handler
):
    # The attempts' foreign key is not checked by the database: a task deleted under a retry
    # would leave its next attempt without a task. Prune skips a row another transaction holds,
    # and checks again that what it deletes is still finished.
    recording_handler()
    old, other = make(n=2)
    relay().run_once()
    Task.objects.filter(id__in=[old, other]).update(finished_at=Now() - timedelta(days=31))
    holding, release = threading.Event(), threading.Event()

    def retry_in_progress() -> None:
        try:
            with transaction.atomic():
                list(Task.objects.select_for_update().filter(id=old))
                holding.set()
                release.wait(10)
                Task.objects.filter(id=old).update(state=TaskState.PENDING, finished_at=None)
        finally:
            connection.close()

    operator = threading.Thread(target=retry_in_progress)
    operator.start()
    assert holding.wait(10)
    try:
        pruned = tasks_prune(older_than=timedelta(days=30))
    finally:
        release.set()
        operator.join(10)

    assert pruned == 1
    assert set(Task.objects.values_list("id", flat=True)) == {old}
    kept = Task.objects.get(id=old)
    assert kept.state == TaskState.PENDING
    # Its try is kept with it: the success is on the task row, which prune left alone.
    assert kept.succeeded_started_at is not None


def test_a_busy_pass_does_not_claim_again_after_every_outcome(recording_handler):
    import time

    recording_handler(behaviour=lambda task: time.sleep(0.005))
    make(n=20)
    runner = relay(threads=2, batch_size=100, poll_seconds=5.0)
    claims: list[int] = []
    claim = runner.claim

    def counted(limit: int) -> list:
        claimed = claim(limit)
        claims.append(len(claimed))
        return claimed

    runner.claim = counted
    stats = runner.run(seconds=5.0, until_idle=True)

    assert stats.succeeded == 20
    # The first claim took all 20; with no NOTIFY and no poll due, the next claim waits for
    # the pass to be idle. Claiming after each outcome made 17 claims that found nothing.
    assert claims[0] == 20
    assert len(claims) <= 3, claims
