from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client
from rest_framework.authtoken.models import Token

from outbox.models import Attempt, AttemptOutcome, Task, TaskState
from tests.conftest import grant

pytestmark = pytest.mark.django_db

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)


def token_for(
    username: str, *, staff: bool, active: bool = True, perms: tuple[str, ...] = ()
) -> str:
    user = User.objects.create_user(username, password="x", is_staff=staff, is_active=active)
    return Token.objects.create(user=grant(user, *perms)).key


@pytest.fixture
def staff_client() -> Client:
    return Client(
        headers={
            "Authorization": f"Token {token_for('op', staff=True, perms=('outbox.view_task',))}"
        }
    )


@pytest.fixture
def staff_session() -> Client:
    """A browser logged in to the admin as a staff user (no model permissions needed)."""
    client = Client()
    client.force_login(User.objects.create_user("reader", password="x", is_staff=True))
    return client


def make_task(**fields) -> Task:
    fields.setdefault("kind", "test.call")
    return Task.objects.create(**fields)


def test_an_anonymous_request_gets_401_with_a_token_challenge(client):
    task = make_task()

    response = client.get(f"/api/tasks/{task.id}")

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    assert set(response.json()) == {"error"}


def test_an_unknown_token_gets_401(client):
    task = make_task()

    response = client.get(f"/api/tasks/{task.id}", headers={"Authorization": "Token nope"})

    assert response.status_code == 401
    assert "error" in response.json()


def test_a_token_of_a_user_who_is_not_staff_gets_403(client):
    task = make_task()
    key = token_for("clerk", staff=False, perms=("outbox.view_task",))

    response = client.get(f"/api/tasks/{task.id}", headers={"Authorization": f"Token {key}"})

    assert response.status_code == 403
    assert set(response.json()) == {"error"}


def test_a_staff_token_without_view_task_gets_403_naming_the_permission(client):
    task = make_task(last_error="sheet refused row for ada@example.com")
    key = token_for("intern", staff=True, perms=("tickets.view_ticket",))

    response = client.get(f"/api/tasks/{task.id}", headers={"Authorization": f"Token {key}"})

    assert response.status_code == 403
    assert response.json() == {"error": "this needs the permission outbox.view_task"}


def test_a_token_of_an_inactive_staff_user_is_refused(client):
    task = make_task()
    key = token_for("gone", staff=True, active=False, perms=("outbox.view_task",))

    response = client.get(f"/api/tasks/{task.id}", headers={"Authorization": f"Token {key}"})

    assert response.status_code == 401


def test_a_session_login_is_not_enough_for_the_api(client):
    task = make_task()
    client.force_login(User.objects.create_superuser("admin", password="x"))

    response = client.get(f"/api/tasks/{task.id}")

    assert response.status_code == 401


def test_a_staff_user_sees_the_task_and_every_attempt(staff_client):
    task = make_task(
        kind="test.call",
        queue="critical",
        state=TaskState.SUCCEEDED,
        attempts=2,
        max_attempts=5,
        last_error="",
        result={"number": "R-1"},
        correlation_id="corr-9",
        trace_context={"traceparent": f"00-{'4b' * 16}-00f067aa0ba902b7-01"},
        created_at=T0,
        available_at=T0 + timedelta(seconds=4),
        finished_at=T0 + timedelta(seconds=5),
    )
    Attempt.objects.create(
        task=task,
        number=1,
        started_at=T0 + timedelta(seconds=1),
        duration_ms=12.5,
        outcome=AttemptOutcome.RETRY,
        http_status=500,
        error="gateway answered 500",
    )
    Attempt.objects.create(
        task=task,
        number=2,
        started_at=T0 + timedelta(seconds=4),
        duration_ms=3.0,
        outcome=AttemptOutcome.SUCCEEDED,
    )

    response = staff_client.get(f"/api/tasks/{task.id}")

    assert response.status_code == 200
    assert response.json() == {
        "id": task.id,
        "kind": "test.call",
        "state": "succeeded",
        "queue": "critical",
        "attempts": 2,
        "max_attempts": 5,
        "last_error": "",
        "result": {"number": "R-1"},
        "correlation_id": "corr-9",
        "trace_id": "4b" * 16,
        "created_at": "2025-03-01T12:00:00Z",
        "available_at": "2025-03-01T12:00:04Z",
        "finished_at": "2025-03-01T12:00:05Z",
        "attempt_history": [
            {
                "number": 1,
                "started_at": "2025-03-01T12:00:01Z",
                "duration_ms": 12.5,
                "outcome": "retry",
                "http_status": 500,
                "error": "gateway answered 500",
            },
            {
                "number": 2,
                "started_at": "2025-03-01T12:00:04Z",
                "duration_ms": 3.0,
                "outcome": "succeeded",
                "http_status": None,
                "error": "",
            },
        ],
    }


def test_a_task_enqueued_without_tracing_has_no_trace_id(staff_client):
    task = make_task()

    assert staff_client.get(f"/api/tasks/{task.id}").json()["trace_id"] is None


def test_a_pending_task_has_no_finish_time_no_result_and_no_attempts(staff_client):
    task = make_task()

    body = staff_client.get(f"/api/tasks/{task.id}").json()

    assert (body["state"], body["finished_at"], body["result"]) == ("pending", None, None)
    assert body["attempt_history"] == []


def test_attempts_are_listed_in_the_order_they_happened_across_an_operators_retry(
    staff_client,
):
    task = make_task(state=TaskState.PENDING, attempts=3)
    # Two tries, the task failed, an operator retried it: the third try keeps counting.
    for number, outcome in [
        (3, AttemptOutcome.RETRY),
        (1, AttemptOutcome.RETRY),
        (2, AttemptOutcome.FAILED),
    ]:
        Attempt.objects.create(
            task=task, number=number, started_at=T0, duration_ms=1.0, outcome=outcome
        )
    Attempt.objects.filter(number=3).update(id=10_000)  # written last

    history = staff_client.get(f"/api/tasks/{task.id}").json()["attempt_history"]

    assert [(a["number"], a["outcome"]) for a in history] == [
        (1, "retry"),
        (2, "failed"),
        (3, "retry"),
    ]


def test_a_task_reads_in_a_fixed_number_of_queries_however_many_attempts(
    staff_client, django_assert_num_queries
):
    task = make_task()
    for number in range(1, 11):
        Attempt.objects.create(
            task=task, number=number, started_at=T0, duration_ms=1.0, outcome="retry"
        )

    # The token and its user, the user's own and group permissions, the task, its attempts.
    with django_assert_num_queries(5):
        response = staff_client.get(f"/api/tasks/{task.id}")

    assert len(response.json()["attempt_history"]) == 10


def test_an_unknown_task_is_a_404_with_an_error(staff_client):
    response = staff_client.get("/api/tasks/987654")

    assert response.status_code == 404
    assert response.json() == {"error": "there is no task 987654"}


def test_a_task_id_beyond_the_integer_range_is_a_404(staff_client):
    response = staff_client.get(f"/api/tasks/{10**30}")

    assert response.status_code == 404


def test_the_schema_is_an_openapi_document_with_the_api_and_the_webhook(staff_session):
    response = staff_session.get("/api/schema/", {"format": "json"})

    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    paths = schema["paths"]
    assert "get" in paths["/api/tasks/{task_id}"]
    assert "get" in paths["/api/tickets/{ticket_id}"]
    assert "post" in paths["/tickets-status"]
    assert paths["/api/tasks/{task_id}"]["get"]["security"] == [{"tokenAuth": []}]
    assert set(paths["/api/tasks/{task_id}"]["get"]["responses"]) == {
        "200",
        "401",
        "403",
        "404",
        "414",  # the server's refusal of a request line over its limit
    }
    webhook = paths["/tickets-status"]["post"]
    headers = {p["name"]: p for p in webhook["parameters"] if p["in"] == "header"}
    assert headers["Idempotency-Key"]["required"] is True
    task_fields = schema["components"]["schemas"]["TaskDetail"]["properties"]
    assert {"state", "attempts", "attempt_history", "correlation_id"} <= set(task_fields)


def test_the_docs_page_loads_swagger_ui_from_our_own_static_files(staff_session):
    response = staff_session.get("/api/docs/")

    assert response.status_code == 200
    html = response.content.decode().lower()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/" in html
    assert "/api/schema/" in html
    # Swagger UI's validator badge would send the schema to validator.swagger.io.
    assert '"validatorurl": null' in html
    for external in ("cdn", "unpkg", "jsdelivr", "https://", "http://"):
        assert external not in html


def test_an_anonymous_request_for_the_schema_gets_401(client):
    response = client.get("/api/schema/", {"format": "json"})

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    assert "paths" not in response.content.decode()


def test_an_anonymous_browser_on_the_docs_page_is_sent_to_the_admin_login(client):
    response = client.get("/api/docs/")

    assert response.status_code == 302
    assert response["Location"] == "/admin/login/?next=/api/docs/"


@pytest.mark.parametrize("path", ["/api/schema/", "/api/docs/"])
def test_a_logged_in_user_who_is_not_staff_cannot_read_the_schema_or_docs(client, path):
    client.force_login(User.objects.create_user("customer", password="x"))

    response = client.get(path)

    assert response.status_code == 403
    assert "/api/tasks/" not in response.content.decode()


@pytest.mark.parametrize("path", ["/api/schema/", "/api/docs/"])
def test_a_token_of_a_user_who_is_not_staff_cannot_read_the_schema_or_docs(client, path):
    key = token_for("clerk", staff=False)

    response = client.get(path, headers={"Authorization": f"Token {key}"})

    assert response.status_code == 403


def test_a_staff_token_reads_the_schema(client):
    key = token_for("op", staff=True)

    response = client.get(
        "/api/schema/", {"format": "json"}, headers={"Authorization": f"Token {key}"}
    )

    assert response.status_code == 200
    assert "/api/tasks/{task_id}" in response.json()["paths"]


@pytest.mark.parametrize("path", ["/api/schema/", "/api/docs/"])
def test_api_docs_public_publishes_the_schema_and_docs_to_anyone(client, settings, path):
    settings.API_DOCS_PUBLIC = True

    response = client.get(path)

    assert response.status_code == 200
