"""Leases held while handlers run, calls refused when a lease cannot outlive them, and
outcomes that reach the database whatever an API answered."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime

import pytest
from django.db import OperationalError, connection, connections, transaction
from django.db.models.functions import Now
from django.test import override_settings

from outbox.claim import claim_due_tasks, renew_leases
from outbox.errors import LeaseLost, TransientError, ValueTooLong
from outbox.lease import Lease, before_external_call, holding
from outbox.models import Attempt, AttemptOutcome, Task, TaskState
from outbox.outcomes import Outcome, record_outcomes
from outbox.runtime.relay import Relay
from outbox.services import TaskSpec, enqueue, enqueue_many
from tests.conftest import tries

pytestmark = pytest.mark.django_db


def make(kind: str = "test.record", n: int = 1) -> list[int]:
    with transaction.atomic():
        return [t.id for t in enqueue_many([TaskSpec(kind=kind) for _ in range(n)])]


def claim(worker: str = "w1", lease: float = 12.0):
    return claim_due_tasks(limit=10, worker=worker, lease_seconds=lease, queue_order=["default"])


def expire(task_id: int) -> None:
    Task.objects.filter(id=task_id).update(lease_expires_at=Now())


def taken_over():
    """One task claimed by w1, its lease expired, then claimed by w2: (id, w1's, w2's)."""
    [task_id] = make()
    [stale] = claim(worker="w1")
    expire(task_id)
    [owner] = claim(worker="w2")
    return task_id, stale, owner


def seconds_left(task_id: int) -> float:
    expires, now = (
        Task.objects.annotate(now=Now()).values_list("lease_expires_at", "now").get(id=task_id)
    )
    assert expires is not None
    return (expires - now).total_seconds()


def test_a_renewed_lease_is_not_taken_by_another_worker(recording_handler):
    recording_handler()
    [task_id] = make()
    [held] = claim(lease=12.0)
    expire(task_id)  # the handler has run as long as the lease

    assert renew_leases([held]) == set()

    assert seconds_left(task_id) > 10.0
    assert claim(worker="w2") == []
    assert not held.lease.lost


def test_a_lease_another_worker_took_is_not_renewed_and_its_handler_is_told(recording_handler):
    recording_handler()
    task_id, stale, fresh = taken_over()

    assert renew_leases([stale]) == {task_id}

    assert stale.lease.lost
    row = Task.objects.get(id=task_id)
    assert (row.lease_token, row.leased_by) == (fresh.lease_token, "w2")


def test_a_handler_whose_lease_was_lost_does_not_start_its_call(recording_handler):
    called: list[int] = []

    def call_the_api(task):
        before_external_call()
        called.append(task.id)

    recording_handler(behaviour=call_the_api)
    [task_id] = make()
    [task] = claim()
    task.lease.lose()

    from outbox.retry import RetryPolicy
    from outbox.runtime.execution import run_task

    outcome = run_task(task, policy=RetryPolicy(), worker="w1")
    record_outcomes([outcome])

    assert called == []
    attempt = Attempt.objects.get(task_id=task_id)
    assert attempt.outcome == AttemptOutcome.LEASE_LOST
    assert "not started" in attempt.error
    assert Task.objects.get(id=task_id).state == TaskState.PENDING


def test_a_call_does_not_start_when_the_lease_would_expire_before_its_deadline():
    short = Lease.starting(uuid.uuid4(), 1.2, time.monotonic())

    with holding(short), pytest.raises(LeaseLost, match="too little"):
        before_external_call(limit=8.0)


@override_settings(OUTBOX={"CALL_SECONDS": 8.0})
def test_a_calls_deadline_ends_before_its_lease_does():
    lease = Lease.starting(uuid.uuid4(), 5.0, time.monotonic())

    with holding(lease):
        budget = before_external_call()

    assert 3.0 < budget <= 4.0  # the lease's 5 s, less the safety margin; not the 8 s limit
    assert before_external_call() == 8.0  # outside a handler: the configured limit


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_thread_gives_its_database_connection_back_before_a_call():
    # With more handler threads than pooled connections, one held across a network wait
    # makes another thread wait for a connection. (SQLite's in-memory test database cannot
    # be closed; a file database is.)
    Task.objects.exists()
    assert connection.connection is not None

    with transaction.atomic():
        before_external_call()
        assert connection.connection is not None, "a transaction's connection is kept"
    before_external_call()

    assert connection.connection is None


@pytest.mark.django_db(transaction=True)
def test_a_stale_holders_success_is_labelled_lease_lost_even_after_the_owner_succeeded(
    recording_handler,
):
    recording_handler()
    task_id, stale, owner = taken_over()
    now = datetime.now(UTC)

    assert record_outcomes([Outcome(owner, AttemptOutcome.SUCCEEDED, now, 1.0, "w2")]) == set()
    lost = record_outcomes([Outcome(stale, AttemptOutcome.SUCCEEDED, now, 1.0, "w1")])

    assert lost == {task_id}
    # The refused success is a row (it is not a success); the owner's stays on the task row,
    # and the history shows it last, at its number.
    assert list(Attempt.objects.values_list("worker", "number", "outcome")) == [
        ("w1", 1, AttemptOutcome.LEASE_LOST)
    ]
    assert tries(task_id) == [
        ("w1", 1, AttemptOutcome.LEASE_LOST),
        ("w2", 2, AttemptOutcome.SUCCEEDED),
    ]


GARBAGE = "<html>\x00 502 Bad Gateway \udce9\ud800 upstream reset\x00</html>"


@pytest.mark.django_db(transaction=True)
def test_an_error_page_with_nul_and_bad_bytes_is_stored_beside_its_batchs_successes(
    recording_handler,
):
    def answer_garbage(task):
        if task.payload["n"] == 1:
            raise TransientError(GARBAGE, http_status=502)
        return {"echo": "fine\x00"}

    recording_handler(behaviour=answer_garbage)
    with transaction.atomic():
        ids = [enqueue("test.record", {"n": n}).id for n in range(3)]

    stats = Relay(threads=3, batch_size=10).run_once()

    assert (stats.succeeded, stats.retried) == (2, 1)
    rows = {t.id: t for t in Task.objects.all()}
    garbled = rows[ids[1]]
    assert garbled.state == TaskState.PENDING
    assert "502 Bad Gateway" in garbled.last_error
    assert "\x00" not in garbled.last_error
    assert garbled.last_error.encode("utf-8")  # valid UTF-8 on both databases
    assert rows[ids[0]].result == {"echo": "fine\ufffd"}
    # The failed try is a row; the two successes are on their task rows.
    assert Attempt.objects.get().task_id == ids[1]
    assert [len(tries(pk)) for pk in ids] == [1, 1, 1]


@pytest.mark.django_db(transaction=True)
def test_an_outcome_that_cannot_be_stored_does_not_take_its_batch_with_it(recording_handler):
    def answer(task):
        return {"unstorable": object()} if task.payload["n"] == 1 else {"ok": True}

    recording_handler(behaviour=answer)
    with transaction.atomic():
        ids = [enqueue("test.record", {"n": n}).id for n in range(3)]

    Relay(threads=3, batch_size=10).run_once()

    rows = {t.id: t for t in Task.objects.all()}
    assert {row.state for row in rows.values()} == {TaskState.SUCCEEDED}
    assert rows[ids[0]].result == rows[ids[2]].result == {"ok": True}
    assert rows[ids[1]].result is None
    # The poisoned success was written alone, its result dropped, and its Attempt row says so;
    # the other two are on their task rows. Each task's history is its one success.
    poisoned = Attempt.objects.get()
    assert (poisoned.task_id, poisoned.outcome) == (ids[1], AttemptOutcome.SUCCEEDED)
    assert "could not be stored" in poisoned.error
    assert [tries(pk, "outcome") for pk in ids] == [[(AttemptOutcome.SUCCEEDED,)]] * 3


@pytest.mark.django_db(transaction=True)
def test_a_pass_keeps_the_lease_of_a_handler_slower_than_the_lease(recording_handler):
    taken_by_others: list[int] = []
    release = threading.Event()

    def slow(task):
        # Another worker tries to take the task while this handler is still running.
        for _ in range(6):
            time.sleep(0.25)
            taken_by_others.extend(t.id for t in claim(worker="other"))
        release.set()
        return {"done": True}

    recording_handler(behaviour=slow)
    make()
    relay = Relay(threads=2, batch_size=10, lease_seconds=0.6, renew_seconds=0.1)

    stats = relay.run(seconds=0.2, until_idle=True)

    assert release.is_set()
    assert taken_by_others == []
    assert (stats.succeeded, stats.lease_lost) == (1, 0)


def test_an_over_long_dedupe_key_is_refused_on_both_databases(recording_handler):
    recording_handler()
    prefix = "x" * 320

    with pytest.raises(ValueTooLong, match="dedupe_key is 321 characters"), transaction.atomic():
        enqueue("test.record", dedupe_key=prefix + "a")

    assert Task.objects.count() == 0


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_more_handler_threads_than_pooled_connections_never_wait_on_each_others_calls(
    recording_handler,
):
    from django.conf import settings

    pool_size = settings.DATABASES["default"]["OPTIONS"]["pool"]["max_size"]
    threads = pool_size * 2
    # Every handler must be inside its "network call" at the same moment. If a thread kept
    # its connection across the call, only `pool_size` of them could get there: the rest
    # would wait for a connection, and the barrier would break.
    in_call = threading.Barrier(threads, timeout=20)

    def read_call_read(task):
        Task.objects.filter(id=task.id).exists()
        before_external_call()
        in_call.wait()
        return {"seen": Task.objects.filter(id=task.id).exists()}

    recording_handler(behaviour=read_call_read)
    make(n=threads)

    stats = Relay(threads=threads, batch_size=threads).run_once()

    assert stats.succeeded == threads


@pytest.mark.django_db(transaction=True)
def test_a_refused_stale_write_is_counted_and_logged_as_lease_lost(recording_handler, caplog):
    from outbox.runtime.relay import PassStats

    recording_handler()
    task_id, stale, owner = taken_over()
    now = datetime.now(UTC)
    record_outcomes([Outcome(owner, AttemptOutcome.SUCCEEDED, now, 1.0, "w2")])
    stats = PassStats()

    Relay()._flush([Outcome(stale, AttemptOutcome.SUCCEEDED, now, 1.0, "w1")], stats)

    assert (stats.succeeded, stats.lease_lost) == (0, 1)
    assert f"outcome=lease_lost tasks={task_id}" in caplog.text


def test_a_stale_success_and_the_owners_in_one_flush_are_each_labelled_by_their_lease(
    recording_handler,
):
    # The same task twice in one batch of outcomes: the attempt whose lease expired, and the
    # one that took the task over. Only the owner's write lands; the labels say which was which.
    recording_handler()
    task_id, stale, owner = taken_over()
    now = datetime.now(UTC)

    record_outcomes(
        [
            Outcome(stale, AttemptOutcome.SUCCEEDED, now, 1.0, "w1"),
            Outcome(owner, AttemptOutcome.SUCCEEDED, now, 1.0, "w2"),
        ]
    )

    assert tries(task_id) == [
        ("w1", 1, AttemptOutcome.LEASE_LOST),
        ("w2", 2, AttemptOutcome.SUCCEEDED),
    ]
    assert Task.objects.get(id=task_id).state == TaskState.SUCCEEDED


@pytest.mark.parametrize("with_another_task", [False, True])
@pytest.mark.django_db(transaction=True)
def test_a_pass_that_claims_its_own_expired_task_again_loses_no_outcome(
    recording_handler, with_another_task
):
    # The pass's renewals failed for longer than the lease (an outage), so its next claim
    # takes the same task again while the first attempt still runs. Keyed by task id, the
    # second entry overwrote the first: an outcome went missing or the pass crashed.
    second_started, second_done = threading.Event(), threading.Event()

    def first_outcome_written(task_id: int) -> bool:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                if Attempt.objects.filter(task_id=task_id, number=1).exists():  # lease_lost
                    return True
            except OperationalError:
                # SQLite's shared-cache test database locks a table while the pass writes
                # to it, with no busy wait: this probe of the test's, not the pass, asks again.
                pass
            second_done.wait(0.01)
        return False

    def behaviour(task):
        if task.payload.get("slow"):
            # Still in flight when both attempts of the other task have ended.
            assert second_done.wait(5)
            return {}
        if task.attempt == 1:
            Task.objects.filter(id=task.id).update(lease_expires_at=Now())
            assert second_started.wait(5)
            return {"attempt": 1}
        second_started.set()
        # The first attempt ends and is recorded while this one is still running.
        assert first_outcome_written(task.id)
        second_done.set()
        return {"attempt": 2}

    recording_handler(behaviour=behaviour)
    with transaction.atomic():
        [task] = enqueue_many([TaskSpec(kind="test.record")])
        if with_another_task:
            enqueue_many([TaskSpec(kind="test.record", payload={"slow": True})])

    stats = Relay(threads=4, batch_size=50, poll_seconds=0.01).run(seconds=1.5)

    assert (stats.succeeded, stats.lease_lost) == (2 if with_another_task else 1, 1)
    assert tries(task.id, "number", "outcome") == [
        (1, AttemptOutcome.LEASE_LOST),
        (2, AttemptOutcome.SUCCEEDED),
    ]
    assert set(Task.objects.values_list("state", flat=True)) == {TaskState.SUCCEEDED}


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_handler_thread_gives_back_the_connection_its_handler_opened(recording_handler):
    # A handler that reads the database and makes no external call: its thread must still
    # give the connection back when the task ends, or a pass of many threads would hold one
    # pooled connection per thread. (The pool's threads only close what they opened.)
    wrappers = []

    def read(task):
        Task.objects.filter(id=task.id).exists()
        wrappers.append(connections["default"])  # this thread's own, not the proxy
        return {}

    recording_handler(behaviour=read)
    make(n=6)

    stats = Relay(threads=3, batch_size=6).run_once()

    assert stats.succeeded == 6
    assert len(wrappers) == 6
    assert all(wrapper.connection is None for wrapper in wrappers)


def test_what_a_handler_sets_in_a_context_variable_stays_with_its_task(recording_handler):
    # One thread runs both tasks: the second must not see what the first one's handler set.
    import contextvars

    from outbox.correlation import get_correlation_id
    from outbox.lease import current_lease

    probe: contextvars.ContextVar[str] = contextvars.ContextVar("probe", default="unset")
    seen = []

    def handle(task):
        seen.append((probe.get(), get_correlation_id(), current_lease() is not None))
        probe.set(f"set by task {task.id}")
        return {}

    recording_handler(behaviour=handle)
    with transaction.atomic():
        enqueue_many([TaskSpec(kind="test.record", correlation_id=f"c{n}") for n in (1, 2)])

    stats = Relay(threads=1, batch_size=2).run_once()

    assert stats.succeeded == 2
    assert seen == [("unset", "c1", True), ("unset", "c2", True)]
    assert probe.get() == "unset"
    assert get_correlation_id() == ""
