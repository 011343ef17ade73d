"""Query counts on the engine's hot paths: constant in the number of tasks.

Each call below opens its own `transaction.atomic()`; inside the test's transaction that is a
savepoint, so every count includes SAVEPOINT and RELEASE SAVEPOINT (two statements).
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.db import connection, transaction

from outbox.claim import claim_due_tasks
from outbox.models import Attempt, AttemptOutcome, Task, TaskState
from outbox.outcomes import Outcome, record_outcomes
from outbox.services import TaskSpec, enqueue_many
from tests.conftest import tries

pytestmark = pytest.mark.django_db

SAVEPOINT = 2


def postgres() -> bool:
    return connection.vendor == "postgresql"


def wake_up() -> int:
    """The NOTIFY that wakes waiting passes (PostgreSQL; SQLite passes poll)."""
    return 1 if connection.vendor == "postgresql" else 0


ORDER = ["critical", "default", "low"]
SIZES = [1, 50]


def claim(limit: int = 100):
    return claim_due_tasks(limit=limit, worker="w", lease_seconds=30.0, queue_order=ORDER)


@pytest.mark.parametrize("n", SIZES)
def test_enqueueing_n_tasks_is_one_insert_and_one_wake_up_whatever_n(
    recording_handler, django_assert_num_queries, n
):
    recording_handler("test.count")
    specs = [TaskSpec(kind="test.count", payload={"n": i}) for i in range(n)]

    with django_assert_num_queries(1 + wake_up() + SAVEPOINT), transaction.atomic():
        enqueue_many(specs)

    assert Task.objects.count() == n


@pytest.mark.parametrize("n", SIZES)
def test_a_claim_is_one_statement_whatever_it_takes(
    recording_handler, django_assert_num_queries, n
):
    recording_handler("test.count")
    with transaction.atomic():
        enqueue_many([TaskSpec(kind="test.count", payload={"n": i}) for i in range(n)])

    # PostgreSQL: the statement is its own transaction. SQLite: BEGIN IMMEDIATE around it.
    with django_assert_num_queries(1 if postgres() else 1 + SAVEPOINT):
        claimed = claim()

    assert len(claimed) == n


@pytest.mark.parametrize("n", SIZES)
def test_recording_n_successes_is_one_statement_and_inserts_no_attempt(
    recording_handler, django_assert_num_queries, n
):
    recording_handler("test.count")
    with transaction.atomic():
        enqueue_many([TaskSpec(kind="test.count", payload={"n": i}) for i in range(n)])
    now = datetime.now(UTC)
    outcomes = [
        Outcome(task, AttemptOutcome.SUCCEEDED, now, 1.0, "w", result={"n": task.id})
        for task in claim()
    ]

    ids = [item.task.id for item in outcomes]  # record_outcomes empties the list it writes
    # PostgreSQL: one statement (a data-modifying CTE: the fenced UPDATE, and an INSERT of the
    # refused ones only). SQLite: the UPDATE alone. A success is kept on its task row.
    with django_assert_num_queries(1 if postgres() else 1 + SAVEPOINT) as queries:
        assert record_outcomes(outcomes) == set()

    inserts = [q["sql"] for q in queries.captured_queries if "INSERT" in q["sql"].upper()]
    if postgres():
        # The CTE's INSERT is there, for the refused rows; it wrote none.
        assert all("NOT EXISTS" in sql for sql in inserts)
    else:
        assert inserts == []
    assert not Attempt.objects.exists()
    assert Task.objects.filter(state=TaskState.SUCCEEDED).count() == n
    for task_id, result in Task.objects.values_list("id", "result"):
        assert result == {"n": task_id}
    assert sorted(
        (task_id, *entry)
        for task_id in ids
        for entry in tries(task_id, "number", "outcome", "worker")
    ) == [(task_id, 1, AttemptOutcome.SUCCEEDED, "w") for task_id in ids]


def test_successes_from_two_claims_are_one_statement_on_postgresql_and_stay_fenced(
    recording_handler, django_assert_num_queries
):
    # A pass's flush mixes outcomes of several claims (each with its own lease token); one of
    # them lost its lease to another pass meanwhile: its write is refused, its attempt says so.
    recording_handler("test.count")
    with transaction.atomic():
        enqueue_many([TaskSpec(kind="test.count", payload={"n": i}) for i in range(4)])
    first, second = claim(limit=2), claim(limit=2)
    stolen = second[0]
    Task.objects.filter(id=stolen.id).update(lease_token=None)  # another pass took it over
    now = datetime.now(UTC)
    outcomes = [
        Outcome(task, AttemptOutcome.SUCCEEDED, now, 1.0, "w") for task in [*first, *second]
    ]

    # SQLite: an UPDATE per lease, the check of which lease was lost, the refused one's INSERT.
    with django_assert_num_queries(1 if postgres() else 2 + 1 + 1 + SAVEPOINT):
        lost = record_outcomes(outcomes)

    assert lost == {stolen.id}
    states = dict(Task.objects.values_list("id", "state"))
    assert [states[t.id] for t in [*first, *second]] == [
        TaskState.SUCCEEDED,
        TaskState.SUCCEEDED,
        TaskState.RUNNING,
        TaskState.SUCCEEDED,
    ]
    # The refused success is the one Attempt row; the others are on their task rows.
    assert list(Attempt.objects.values_list("task_id", "outcome")) == [
        (stolen.id, AttemptOutcome.LEASE_LOST)
    ]
    assert [tries(t.id, "outcome") for t in [*first, second[1]]] == [
        [(AttemptOutcome.SUCCEEDED,)]
    ] * 3
