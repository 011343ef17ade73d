from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.db import connection
from django.test import Client

from outbox import registry
from outbox.registry import TaskContext


def _on_postgres() -> bool:
    return os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://"))


# A test can reach the test database only through pytest-django's marker or one of these
# fixtures (any other access is refused); the end-to-end tests make databases of their own.
DATABASE_FIXTURES = frozenset(
    {
        "db",
        "transactional_db",
        "django_db_reset_sequences",
        "django_db_serialized_rollback",
        "live_server",
        "e2e_database",
    }
)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--database-tests-only",
        action="store_true",
        help="Run only the tests that reach a database (the CI's second database: a test "
        "that touches none has already run on the first).",
    )


def _reaches_a_database(item: pytest.Item) -> bool:
    if any(item.get_closest_marker(name) for name in ("django_db", "e2e", "postgres")):
        return True
    return bool(DATABASE_FIXTURES.intersection(getattr(item, "fixturenames", ())))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `postgres` need two connections at once; on SQLite they are deselected
    loudly (the CI runs the suite on PostgreSQL too). `--database-tests-only` leaves out
    the tests that reach no database, loudly too."""
    if config.getoption("--database-tests-only"):
        without = [item for item in items if not _reaches_a_database(item)]
        if without:
            config.hook.pytest_deselected(items=without)
            items[:] = [item for item in items if _reaches_a_database(item)]
            config._outbox_no_database = len(without)  # type: ignore[attr-defined]
    if _on_postgres():
        return
    selected = [item for item in items if "postgres" not in item.keywords]
    deselected = [item for item in items if "postgres" in item.keywords]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = selected
        config._outbox_pg_deselected = len(deselected)  # type: ignore[attr-defined]


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    without = getattr(config, "_outbox_no_database", 0)
    if without:
        terminalreporter.write_line(
            f"{without} tests that reach no database were left out (--database-tests-only).",
            yellow=True,
        )
    count = getattr(config, "_outbox_pg_deselected", 0)
    if count:
        terminalreporter.write_line(
            f"{count} PostgreSQL-only tests were deselected: run with "
            "DATABASE_URL=postgres://... (as .ci/run does) to include them.",
            yellow=True,
        )


@pytest.fixture(autouse=True)
def _fresh_circuit_breakers() -> Iterator[None]:
    """Breakers keep failure counts in memory; no test inherits another's."""
    from outbox.runtime.circuit import reset_breakers

    reset_breakers()
    yield
    reset_breakers()


@pytest.fixture
def postgres_only() -> None:
    if connection.vendor != "postgresql":
        pytest.fail("this test needs PostgreSQL: run it with DATABASE_URL=postgres://...")


def waiting_out_a_write(
    task: Any, *, tries: int = 3, minutes: float = 10, http_status: int | None = None
) -> Any:
    """`task` (a Task row) as if its last try, try `tries`, got no answer (a timeout, or a
    proxy's `http_status` 504): a write of it may still land for `minutes`, so the task waits
    out the settle until then."""
    from datetime import timedelta

    from django.utils import timezone

    from outbox.models import Attempt, AttemptOutcome, AttemptReply, Task

    started = timezone.now()
    error = "POST http://gw/rows got no answer (ReadTimeout)"
    Task.objects.filter(pk=task.pk).update(
        attempts=tries, settle_until=started + timedelta(minutes=minutes), last_error=error
    )
    Attempt.objects.create(
        task_id=task.pk,
        number=tries,
        started_at=started,
        duration_ms=10_000.0,
        outcome=AttemptOutcome.RETRY,
        http_status=http_status,
        reply=AttemptReply.NO_ANSWER,
        error=error,
    )
    return Task.objects.get(pk=task.pk)


def grant(user: Any, *perms: str) -> Any:
    """Give `user` the permissions named `app_label.codename`; the user, fresh from the
    database (Django caches a user's permissions on the instance)."""
    from django.contrib.auth.models import Permission

    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    return type(user).objects.get(pk=user.pk)


def ticket(
    ticket_id: str = "t-1",
    status: str = "confirmed",
    *,
    email: str = "ada@example.com",
    amount: str = "50.00",
    currency: str | None = "EUR",
    **extra: Any,
) -> dict[str, Any]:
    price: dict[str, Any] = {"amount": amount}
    if currency is not None:
        price["currency"] = currency
    return {
        "ticket_id": ticket_id,
        "status": status,
        "customer_email": email,
        "price": price,
        **extra,
    }


@pytest.fixture
def post_tickets(client: Client) -> Callable[..., Any]:
    def post(
        tickets: list[dict[str, Any]] | None = None,
        *,
        key: str | None = "key-1",
        body: Any = None,
        correlation_id: str | None = None,
        content_type: str = "application/json",
    ) -> Any:
        headers = {}
        if key is not None:
            headers["Idempotency-Key"] = key
        if correlation_id is not None:
            headers["Correlation-ID"] = correlation_id
        raw = body if body is not None else json.dumps({"tickets": tickets or []})
        return client.post("/tickets-status", raw, content_type=content_type, headers=headers)

    return post


@pytest.fixture
def recording_handler() -> Iterator[Callable[..., list[TaskContext]]]:
    """Register throwaway handlers that record every call; removed after the test."""
    kinds: list[str] = []

    def make(
        kind: str = "test.record",
        behaviour: Callable[[TaskContext], Any] | None = None,
        **options: Any,
    ) -> list[TaskContext]:
        calls: list[TaskContext] = []

        def handle(task: TaskContext) -> Any:
            calls.append(task)
            return behaviour(task) if behaviour else {"ok": True}

        registry.unregister(kind)
        registry.handler(kind, **options)(handle)
        kinds.append(kind)
        return calls

    yield make
    for kind in kinds:
        registry.unregister(kind)


def tries(task_id: int, *fields: str) -> list[tuple[Any, ...]]:
    """A task's history as its readers see it (`outbox.history`): a success kept on the task
    row included, as the last try. `fields` of each try; by default worker, number, outcome."""
    from outbox.history import history
    from outbox.models import Task

    names = fields or ("worker", "number", "outcome")
    return [
        tuple(getattr(attempt, name) for name in names)
        for attempt in history(Task.objects.get(id=task_id))
    ]


def record_try(
    task_id: int,
    verdict: str,
    *,
    http_status: int | None = None,
    error: str = "",
    worker: str = "w1",
) -> None:
    """One try of a due task through the engine's own claim and record path: claimed (with
    whatever else is due, which is given back untried), then recorded as `verdict`. A retry
    is due again at once."""
    from datetime import UTC, datetime, timedelta

    from outbox.claim import claim_due_tasks, release_leases
    from outbox.models import AttemptOutcome, Task
    from outbox.outcomes import Outcome, record_outcomes

    # Due now, whatever backoff (or clock resolution: SQLite's is a millisecond) it waited for.
    Task.objects.filter(id=task_id, state="pending").update(
        available_at=datetime.now(UTC) - timedelta(seconds=1)
    )
    claimed = claim_due_tasks(
        limit=1000, worker=worker, lease_seconds=30.0, queue_order=["critical", "default", "low"]
    )
    [mine] = [task for task in claimed if task.id == task_id]
    release_leases([task for task in claimed if task is not mine])
    outcome = Outcome(
        mine,
        AttemptOutcome(verdict),
        datetime.now(UTC),
        12.5,
        worker,
        error=error,
        http_status=http_status,
        retry_in=0.0 if verdict == AttemptOutcome.RETRY else None,
    )
    assert record_outcomes([outcome]) == set()
