from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from devtools.bulk import fill_tasks
from outbox.console.metrics import LATENCY_BUCKETS
from outbox.models import Attempt, AttemptOutcome, Task, TaskState

pytestmark = pytest.mark.django_db

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(client: Client, **kwargs) -> Samples:
    response = client.get("/metrics", **kwargs)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def task(kind: str = "test.a", state: str = TaskState.PENDING, **fields) -> Task:
    now = timezone.now()
    # Not due unless a test says so: the oldest-due gauge must see only the tasks it means.
    fields.setdefault("available_at", now + timedelta(hours=1))
    return Task.objects.create(kind=kind, state=state, **fields)


def succeeded(latency_seconds: float, *, finished_ago: timedelta = timedelta(minutes=5)) -> Task:
    finished = timezone.now() - finished_ago
    return task(
        state=TaskState.SUCCEEDED,
        created_at=finished - timedelta(seconds=latency_seconds),
        finished_at=finished,
    )


@pytest.fixture(autouse=True)
def _no_metrics_token(settings):
    settings.METRICS_TOKEN = ""


def test_tasks_are_counted_per_kind_and_state(client):
    task("test.a", TaskState.PENDING)
    task("test.a", TaskState.PENDING)
    task("test.a", TaskState.FAILED)
    task("test.b", TaskState.RUNNING)

    samples = scrape(client)

    assert samples[("outbox_tasks", (("kind", "test.a"), ("state", "pending")))] == 2
    assert samples[("outbox_tasks", (("kind", "test.a"), ("state", "failed")))] == 1
    assert samples[("outbox_tasks", (("kind", "test.a"), ("state", "succeeded")))] == 0
    assert samples[("outbox_tasks", (("kind", "test.b"), ("state", "running")))] == 1
    assert samples[("outbox_tasks", (("kind", "test.b"), ("state", "pending")))] == 0


def test_tries_are_counted_per_outcome_the_successes_on_task_rows_included(client):
    one = task()
    # Two successes as rows (recorded before migration 0011, or folded by a re-run), and one
    # kept on its task row, as a success is recorded now: three successes, as before.
    outcomes = [AttemptOutcome.RETRY] * 3 + [AttemptOutcome.SUCCEEDED] * 2
    for number, outcome in enumerate(outcomes, start=1):
        Attempt.objects.create(
            task=one, number=number, started_at=timezone.now(), duration_ms=1.0, outcome=outcome
        )
    task(
        state=TaskState.SUCCEEDED,
        attempts=1,
        finished_at=timezone.now(),
        succeeded_started_at=timezone.now(),
        succeeded_duration_ms=2.0,
    )

    samples = scrape(client)

    assert samples[("outbox_attempts_total", (("outcome", "retry"),))] == 3
    assert samples[("outbox_attempts_total", (("outcome", "succeeded"),))] == 3
    assert samples[("outbox_attempts_total", (("outcome", "failed"),))] == 0
    assert samples[("outbox_attempts_total", (("outcome", "lease_lost"),))] == 0


def test_the_oldest_due_task_age_is_measured_from_when_it_became_due(client):
    now = timezone.now()
    task(available_at=now - timedelta(seconds=300), created_at=now - timedelta(days=1))
    task(available_at=now - timedelta(seconds=30))
    task(state=TaskState.FAILED, available_at=now - timedelta(days=2))

    age = scrape(client)[("outbox_oldest_due_task_age_seconds", ())]

    # The database clock ran on a little since `now` (and keeps only milliseconds on SQLite).
    assert 299 <= age < 360


def test_the_oldest_due_task_age_is_zero_when_nothing_is_due(client):
    task()  # due in an hour

    assert scrape(client)[("outbox_oldest_due_task_age_seconds", ())] == 0


def test_the_latency_histogram_counts_recent_successes_per_bucket(client):
    for seconds in (0.3, 2.0, 45.0, 2000.0):
        succeeded(seconds)
    succeeded(1.0, finished_ago=timedelta(hours=2))  # outside the window
    task(
        state=TaskState.FAILED,
        created_at=timezone.now() - timedelta(seconds=10),
        finished_at=timezone.now(),
    )

    samples = scrape(client)

    def bucket(le: str) -> float:
        return samples[("outbox_delivery_latency_seconds_bucket", (("le", le),))]

    assert bucket("0.25") == 0
    assert bucket("0.5") == 1
    assert bucket("1.0") == 1
    assert bucket("2.5") == 2
    assert bucket("60.0") == 3
    assert bucket("900.0") == 3
    assert bucket("3600.0") == 4
    assert bucket("+Inf") == 4
    assert samples[("outbox_delivery_latency_seconds_count", ())] == 4
    assert samples[("outbox_delivery_latency_seconds_sum", ())] == pytest.approx(2047.3)


def test_every_bucket_is_present_when_nothing_succeeded(client):
    samples = scrape(client)

    for bound in LATENCY_BUCKETS:
        assert samples[("outbox_delivery_latency_seconds_bucket", (("le", str(bound)),))] == 0
    assert samples[("outbox_delivery_latency_seconds_count", ())] == 0
    assert samples[("outbox_delivery_latency_seconds_sum", ())] == 0


def test_a_scrape_of_a_small_table_costs_eight_queries_however_many_rows(
    client, django_assert_num_queries
):
    for seconds in range(20):
        succeeded(float(seconds))

    # Small, the successes are counted exactly: per kind, and those kept on task rows (as
    # tries). PostgreSQL asks the planner first how big the table is.
    with django_assert_num_queries(9 if connection.vendor == "postgresql" else 8):
        client.get("/metrics")


@pytest.mark.postgres
def test_a_scrape_of_a_big_table_reads_no_finished_task_and_labels_its_estimate(
    postgres_only, client, django_assert_num_queries
):
    # 30,000 succeeded tasks and a few open ones: counting the successes would read them all
    # (130 ms a scrape at 1,000,000). The scrape takes the planner's estimate instead.
    fill_tasks(30_000, kinds=["test.a", "test.b"], spread_seconds=7 * 86_400)
    task("test.a", TaskState.PENDING)
    task("test.b", TaskState.FAILED)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE outbox_task")

    with CaptureQueriesContext(connection) as captured:
        samples = scrape(client)

    assert len(captured.captured_queries) == 7
    with connection.cursor() as cursor:
        for query in captured.captured_queries:
            cursor.execute(f"EXPLAIN {query['sql']}")
            plan = "\n".join(row[0] for row in cursor.fetchall())
            assert "Seq Scan on outbox_task" not in plan, (query["sql"], plan)
    succeeded_a = samples[("outbox_tasks", (("kind", "test.a"), ("state", "succeeded")))]
    assert 13_500 <= succeeded_a <= 16_500  # an estimate of 15,000
    assert samples[("outbox_tasks", (("kind", "test.a"), ("state", "pending")))] == 1
    assert samples[("outbox_tasks", (("kind", "test.b"), ("state", "failed")))] == 1
    assert "planner's estimate" in client.get("/metrics").content.decode()


def test_the_text_names_every_metric_with_its_type(client):
    text = client.get("/metrics").content.decode()

    assert "# TYPE outbox_tasks gauge" in text
    assert "# TYPE outbox_attempts_total gauge" in text
    assert "# TYPE outbox_oldest_due_task_age_seconds gauge" in text
    assert "# TYPE outbox_delivery_latency_seconds histogram" in text


def test_a_remote_scrape_without_a_token_is_refused(client):
    response = client.get("/metrics", REMOTE_ADDR="10.0.0.5")

    assert response.status_code == 403
    assert b"outbox_tasks" not in response.content


def test_a_loopback_scrape_needs_no_token_while_none_is_configured(client):
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="::1").status_code == 200


def test_a_remote_scrape_with_the_token_is_answered(client, settings):
    settings.METRICS_TOKEN = "s3cret-metrics"
    task()

    samples = scrape(
        client, REMOTE_ADDR="10.0.0.5", headers={"Authorization": "Bearer s3cret-metrics"}
    )

    assert samples[("outbox_tasks", (("kind", "test.a"), ("state", "pending")))] == 1


@pytest.mark.parametrize(
    "authorization",
    ["Bearer wrong", "Token s3cret-metrics", "s3cret-metrics", "Bearer ", ""],
)
def test_a_wrong_token_is_refused(client, settings, authorization):
    settings.METRICS_TOKEN = "s3cret-metrics"

    response = client.get(
        "/metrics", REMOTE_ADDR="10.0.0.5", headers={"Authorization": authorization}
    )

    assert response.status_code == 403


def test_once_a_token_is_configured_loopback_needs_it_too(client, settings):
    # Behind a reverse proxy on the same host every request comes from 127.0.0.1.
    settings.METRICS_TOKEN = "s3cret-metrics"

    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 403


def test_metrics_answer_only_get(client):
    assert client.post("/metrics").status_code == 405


def test_behind_a_reverse_proxy_on_the_same_host_metrics_are_open_to_the_world(client, settings):
    settings.METRICS_LOOPBACK = True
    for header in ("X-Forwarded-For", "Forwarded", "X-Real-IP"):
        response = client.get("/metrics", REMOTE_ADDR="127.0.0.1", headers={header: "203.0.113.9"})
        assert response.status_code == 403, header
        assert b"outbox_tasks" not in response.content


def test_in_production_a_loopback_scrape_without_a_token_is_answered(client, settings):
    # METRICS_LOOPBACK defaults to DEBUG: off in production, whatever the proxy sends.
    settings.METRICS_LOOPBACK = False

    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 403


@pytest.mark.parametrize(
    ("staff", "perms", "expected"),
    [(True, ("outbox.view_task",), 200), (True, (), 403), (False, ("outbox.view_task",), 403)],
)
def test_a_staff_api_token_scrapes_only_with_view_task(client, settings, staff, perms, expected):
    from django.contrib.auth.models import User
    from rest_framework.authtoken.models import Token

    from tests.conftest import grant

    settings.METRICS_LOOPBACK = False
    user = grant(User.objects.create_user("op", password="x", is_staff=staff), *perms)
    key = Token.objects.create(user=user).key

    response = client.get(
        "/metrics", REMOTE_ADDR="10.0.0.5", headers={"Authorization": f"Token {key}"}
    )

    assert response.status_code == expected
    assert (
        client.get(
            "/metrics", REMOTE_ADDR="10.0.0.5", headers={"Authorization": "Token nope"}
        ).status_code
        == 403
    )


def test_check_deploy_is_silent_when_production_opens_metrics_to_loopback(settings):
    from outbox.checks import check_metrics_open

    settings.DEBUG = False
    settings.METRICS_LOOPBACK = True
    assert [w.id for w in check_metrics_open()] == ["outbox.W002"]
    settings.METRICS_LOOPBACK = False
    assert check_metrics_open() == []
