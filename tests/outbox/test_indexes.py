"""PostgreSQL: each index of the task table earns its write cost, and its readers can use it.

Every write of a task row (the claim, the outcome) moves it to a new version with an entry in
every index: an index no query reads slows every task down.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from devtools.bulk import fill_tasks
from outbox.console.selectors import (
    delivery_latency,
    hourly_activity,
    hourly_activity_by_kind,
    succeeded_per_minute,
)
from outbox.services import finished_before

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]


def task_indexes() -> dict[str, str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'outbox_task'")
        return dict(cursor.fetchall())


def plans_of_queries_reading(column: str, read: Callable[[], object]) -> list[str]:
    """EXPLAIN of each statement `read` runs that compares `column`."""
    with CaptureQueriesContext(connection) as captured:
        read()
    statements = [q["sql"] for q in captured.captured_queries if f'"{column}" >' in q["sql"]]
    statements += [q["sql"] for q in captured.captured_queries if f'"{column}" <' in q["sql"]]
    assert statements, f"the reader compares {column}"
    plans = []
    with connection.cursor() as cursor:
        # Whether the planner *can* use the index, not whether it prefers it for this small
        # table: with the table scan priced out, a partial index whose condition the query
        # does not imply is still not chosen.
        cursor.execute("SET LOCAL enable_seqscan = off")
        for sql in statements:
            cursor.execute(f"EXPLAIN {sql}")
            plans.append("\n".join(row[0] for row in cursor.fetchall()))
    return plans


def test_no_index_serves_only_prefix_matches_on_the_dedupe_key(postgres_only):
    indexes = task_indexes()

    assert not [name for name, text in indexes.items() if "varchar_pattern_ops" in text]
    assert "UNIQUE" in indexes["outbox_task_dedupe_key_key"], "ON CONFLICT (dedupe_key) needs it"


def test_no_index_on_state_takes_an_entry_from_a_task_on_its_way_to_success(postgres_only):
    # A claim and a success are new versions of the row: a full index on `state` took an
    # entry from each (about 14% of a no-op task's WAL).
    indexes = task_indexes()

    state_indexes = {name: text for name, text in indexes.items() if "btree (state" in text}
    assert list(state_indexes) == ["outbox_task_ended_badly"]
    assert "WHERE ((state)::text = ANY" in state_indexes["outbox_task_ended_badly"]
    assert "'failed'" in state_indexes["outbox_task_ended_badly"]
    assert "'succeeded'" not in state_indexes["outbox_task_ended_badly"]


def test_the_finished_at_index_holds_finished_rows_only(postgres_only):
    indexes = task_indexes()

    assert "WHERE (finished_at IS NOT NULL)" in indexes["outbox_task_finished_only"]
    assert "outbox_task_finished" not in indexes


@pytest.mark.parametrize(
    "read",
    [
        pytest.param(lambda: list(finished_before(older_than=timedelta(days=7))), id="prune"),
        pytest.param(lambda: succeeded_per_minute(minutes=5), id="rate"),
        pytest.param(lambda: hourly_activity(hours=24), id="dashboard-chart"),
        pytest.param(
            lambda: delivery_latency(bounds=[1.0, 10.0], window=timedelta(minutes=5)),
            id="metrics-latency",
        ),
    ],
)
def test_the_readers_of_finished_at_can_use_its_partial_index(postgres_only, read):
    fill_tasks(2000, kinds=["k.a"], failed_every=10, retrying_every=10, spread_seconds=3600)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE outbox_task")

    for text in plans_of_queries_reading("finished_at", read):
        assert "outbox_task_finished_only" in text, text


def test_the_failures_per_hour_can_use_the_partial_index_of_failed_tries(postgres_only):
    fill_tasks(2000, kinds=["k.a"], failed_every=10, retrying_every=10, spread_seconds=3600)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE outbox_attempt")

    [text] = plans_of_queries_reading("started_at", lambda: hourly_activity_by_kind(hours=24))

    assert "outbox_attempt_failed_started" in text, text


def test_the_started_at_index_holds_failed_tries_only(postgres_only):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'outbox_attempt'"
        )
        indexes = dict(cursor.fetchall())

    assert "WHERE ((outcome)::text = ANY" in indexes["outbox_attempt_failed_started"]
    assert "outbox_attempt_started" not in indexes


@pytest.mark.django_db(transaction=True)
def test_the_index_migration_runs_again_after_an_interrupted_run(postgres_only):
    # A deploy that timed out after the first CREATE INDEX CONCURRENTLY: the index is there,
    # the migration is not recorded. Running it again must finish, not fail on the name.
    from django.core.management import call_command

    call_command("migrate", "outbox", "0007", verbosity=0)
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "CREATE INDEX outbox_task_finished_only ON outbox_task (finished_at) "
                "WHERE finished_at IS NOT NULL"
            )
        call_command("migrate", "outbox", verbosity=0)
    finally:
        call_command("migrate", verbosity=0)

    assert "outbox_task_finished_only" in task_indexes()
    assert "outbox_task_finished" not in task_indexes()


def test_the_task_table_leaves_room_on_its_pages_for_a_tasks_new_versions(postgres_only):
    # Without it, every claim and outcome moves its row to another page: the whole row and a
    # lock record in the WAL instead of the changed bytes (migration 0015, docs/BENCHMARKS.md).
    with connection.cursor() as cursor:
        cursor.execute("SELECT reloptions FROM pg_class WHERE relname = 'outbox_task'")
        options = cursor.fetchone()[0] or []

    assert "fillfactor=80" in options
