from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection, transaction
from django.db.models.functions import Now

from outbox.claim import claim_due_tasks, release_leases
from outbox.models import Attempt, AttemptOutcome, Task, TaskState
from outbox.outcomes import Outcome, record_outcomes
from outbox.services import TaskSpec, enqueue_many, kind_pause, kind_resume
from tests.conftest import tries

pytestmark = pytest.mark.django_db
ORDER = ["critical", "default", "low"]


def make(kind: str = "test.record", n: int = 1, **options) -> list[int]:
    with transaction.atomic():
        return [t.id for t in enqueue_many([TaskSpec(kind=kind, **options) for _ in range(n)])]


def claim(limit: int = 100, worker: str = "w1", lease: float = 30.0, order=ORDER):
    return claim_due_tasks(limit=limit, worker=worker, lease_seconds=lease, queue_order=order)


def outcome(task, kind=AttemptOutcome.SUCCEEDED, **fields) -> Outcome:
    return Outcome(
        task=task,
        verdict=kind,
        started_at=datetime.now(UTC),
        duration_ms=1.0,
        worker="w",
        **fields,
    )


def expire_leases() -> None:
    Task.objects.filter(state=TaskState.RUNNING).update(
        lease_expires_at=Now() - timedelta(seconds=1)
    )


def db_now():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT "
            + (
                "STATEMENT_TIMESTAMP()"
                if connection.vendor == "postgresql"
                else "STRFTIME('%Y-%m-%d %H:%M:%f', 'NOW')"
            )
        )
        value = cursor.fetchone()[0]
    if isinstance(value, str):
        value = datetime.fromisoformat(value).replace(tzinfo=UTC)
    return value


def test_a_claim_leases_due_tasks_with_one_fresh_token(recording_handler):
    recording_handler()
    ids = make(n=3)

    claimed = claim(worker="host:1")

    assert [t.id for t in claimed] == ids
    assert len({t.lease_token for t in claimed}) == 1
    assert all(t.context.attempt == 1 for t in claimed)
    rows = Task.objects.all()
    assert {(r.state, r.leased_by, r.lease_token) for r in rows} == {
        (TaskState.RUNNING, "host:1", claimed[0].lease_token)
    }


def test_a_claim_takes_no_more_than_its_limit(recording_handler):
    recording_handler()
    make(n=5)

    assert len(claim(limit=2)) == 2
    assert len(claim(limit=10)) == 3
    assert claim() == []


def test_the_lease_is_computed_with_the_database_clock(recording_handler):
    recording_handler()
    make()

    claim(lease=120.0)

    expires = Task.objects.get().lease_expires_at
    assert abs((expires - db_now()).total_seconds() - 120.0) < 5.0


def test_a_task_scheduled_for_later_is_not_claimed_until_due(recording_handler):
    recording_handler()
    make(run_after=datetime.now(UTC) + timedelta(hours=1))

    assert claim() == []

    Task.objects.update(available_at=Now())
    assert len(claim()) == 1


def test_a_running_task_is_not_claimed_again_while_its_lease_holds(recording_handler):
    recording_handler()
    make()
    claim(worker="w1")

    assert claim(worker="w2") == []


def test_an_expired_lease_is_claimed_again_with_a_new_token(recording_handler):
    recording_handler()
    make()
    first = claim(worker="w1")[0]
    expire_leases()

    second = claim(worker="w2")[0]

    assert second.id == first.id
    assert second.lease_token != first.lease_token
    assert second.context.attempt == 2
    assert second.context.idempotency_key == first.context.idempotency_key


def test_a_stale_worker_cannot_complete_a_reclaimed_task(recording_handler):
    recording_handler()
    make()
    stale = claim(worker="w1")[0]
    expire_leases()
    fresh = claim(worker="w2")[0]

    lost = record_outcomes([outcome(stale, result={"by": "stale"})])

    assert lost == {stale.id}
    task = Task.objects.get()
    assert (task.state, task.lease_token, task.result) == (
        TaskState.RUNNING,
        fresh.lease_token,
        None,
    )
    assert Attempt.objects.get().outcome == AttemptOutcome.LEASE_LOST


def test_a_stale_worker_cannot_fail_or_reschedule_a_reclaimed_task(recording_handler):
    recording_handler()
    make(n=2)
    stale = claim(worker="w1")
    expire_leases()
    claim(worker="w2")

    lost = record_outcomes(
        [
            outcome(stale[0], AttemptOutcome.FAILED, error="boom"),
            outcome(stale[1], AttemptOutcome.RETRY, error="later", retry_in=10.0),
        ]
    )

    assert lost == {stale[0].id, stale[1].id}
    assert set(Task.objects.values_list("state", "last_error")) == {(TaskState.RUNNING, "")}


def test_the_owner_records_success_on_the_task_row_and_writes_no_attempt(recording_handler):
    recording_handler()
    make(n=2)
    tasks = claim()

    written = [outcome(tasks[0], result={"number": "R-1"}), outcome(tasks[1], result=None)]
    started = {item.task.id: item.started_at for item in written}
    lost = record_outcomes(written)

    assert lost == set()
    rows = {t.id: t for t in Task.objects.all()}
    assert rows[tasks[0].id].result == {"number": "R-1"}
    assert rows[tasks[1].id].result is None
    assert all(r.state == TaskState.SUCCEEDED and r.finished_at for r in rows.values())
    # The token stays: it names the lease that finished the task.
    assert all(r.lease_token == tasks[0].lease_token for r in rows.values())
    assert all(r.lease_expires_at is None for r in rows.values())
    # The try is on the task row (what its Attempt row held), and no Attempt row is written.
    assert not Attempt.objects.exists()
    assert {r.id: r.succeeded_started_at for r in rows.values()} == started
    assert {r.succeeded_duration_ms for r in rows.values()} == {1.0}
    assert [tries(t.id) for t in tasks] == [[("w", 1, AttemptOutcome.SUCCEEDED)]] * 2


def test_a_retry_is_scheduled_with_the_database_clock(recording_handler):
    recording_handler()
    make()
    task = claim()[0]

    record_outcomes([outcome(task, AttemptOutcome.RETRY, error="500", retry_in=30.0)])

    row = Task.objects.get()
    assert row.state == TaskState.PENDING
    assert abs((row.available_at - db_now()).total_seconds() - 30.0) < 5.0
    assert row.last_error == "500"
    assert claim() == []


def test_a_released_lease_gives_the_attempt_back(recording_handler):
    recording_handler()
    make(n=2)
    tasks = claim()

    assert release_leases(tasks) == 2

    assert set(Task.objects.values_list("state", "attempts")) == {(TaskState.PENDING, 0)}


def test_a_paused_kind_is_not_claimed_until_resumed(recording_handler):
    recording_handler("test.paused")
    recording_handler("test.other")
    make("test.paused")
    other = make("test.other")
    kind_pause(kind="test.paused")

    assert [t.id for t in claim()] == other

    kind_resume(kind="test.paused")
    assert [t.context.kind for t in claim()] == ["test.paused"]


def test_queues_are_taken_in_the_drawn_order(recording_handler):
    recording_handler("test.low", queue="low")
    recording_handler("test.critical", queue="critical")
    make("test.low", n=3)
    make("test.critical", n=3)

    first = claim(limit=4, order=["low", "critical", "default"])

    assert [t.context.kind for t in first] == ["test.low"] * 3 + ["test.critical"]


def test_expired_leases_are_taken_before_new_work(recording_handler):
    recording_handler()
    crashed = make()
    claim()
    expire_leases()
    make(n=3)

    assert [t.id for t in claim(limit=1)] == crashed


@pytest.mark.postgres
def test_a_claim_fetches_its_rows_by_key_not_by_scanning_the_backlog(
    postgres_only, recording_handler
):
    # With tens of thousands waiting, `id IN (subquery)` was planned as a hash join against a
    # sequential scan of the whole table: every claim read the whole backlog.
    from outbox.sql import server_binding_cursor

    recording_handler()
    make(n=30_000)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE outbox_task")
    sent: list[tuple[str, Any]] = []

    def keep(execute, sql, params, many, context):
        sent.append((sql, params))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(keep):
        claim(limit=200)
    [(claim_sql, params)] = [(sql, params) for sql, params in sent if sql.startswith("UPDATE")]

    # As the claim runs it: bound on the server.
    with server_binding_cursor() as cursor:
        cursor.execute(f"EXPLAIN {claim_sql}", params)
        plan = "\n".join(row[0] for row in cursor.fetchall())

    assert "Seq Scan on outbox_task" not in plan, plan


def test_a_claimed_task_carries_its_payload_and_creation_time_as_stored(recording_handler):
    # On PostgreSQL the claim's rows come back in binary, read by psycopg's own loaders rather
    # than Django's: the handler must still get the same values the ORM reads.
    recording_handler()
    payload = {"name": "Zoë 🎫", "amount": "12.50", "nested": {"list": [1, 2.5, None, True]}}
    [task_id] = make(payload=payload)

    [task] = claim()

    stored = Task.objects.get(id=task_id)
    assert task.context.payload == payload == stored.payload
    assert task.context.created_at == stored.created_at
    assert task.context.created_at is not None
    assert task.context.created_at.utcoffset() == timedelta(0)
    assert (task.context.kind, task.context.attempt, task.context.max_attempts) == (
        "test.record",
        1,
        stored.max_attempts,
    )
    assert task.context.correlation_id == stored.correlation_id
