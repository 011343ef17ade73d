from __future__ import annotations

from datetime import UTC
from typing import Any

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from outbox.console import selectors
from outbox.models import Attempt, AttemptOutcome, Task, TaskState
from tests.conftest import grant, waiting_out_a_write

TRIAGE = "/admin/outbox/task/triage/"
RETRY_GROUP = "/admin/outbox/task/triage/retry/"

pytestmark = pytest.mark.django_db


def failing(kind: str, error: str, *, status: int | None = None, **fields: Any) -> Task:
    fields.setdefault("state", TaskState.FAILED)
    fields.setdefault("attempts", 3)
    task = Task.objects.create(kind=kind, last_error=error, **fields)
    Attempt.objects.create(
        task=task,
        number=1,
        started_at=timezone.now(),
        duration_ms=1.0,
        outcome=AttemptOutcome.RETRY,
        http_status=status,
        error=error,
    )
    return task


def test_alike_failures_group_by_kind_and_status_or_normalised_error():
    failing("k.receipt", "PUT /r/t-1 answered 503: down", status=503)
    failing("k.receipt", "PUT /r/t-2 answered 503: down", status=503)
    failing("k.receipt", "timed out after 10.0s on t-3", state=TaskState.PENDING)
    failing("k.receipt", "timed out after 12.5s on t-44", state=TaskState.PENDING)
    failing("k.sheet", "PUT /s answered 503", status=503)
    # Neither finished well nor tried: not failing.
    Task.objects.create(kind="k.receipt", state=TaskState.PENDING, attempts=0)
    Task.objects.create(kind="k.receipt", state=TaskState.SUCCEEDED, attempts=1)

    groups = {(g.kind, g.signature): g for g in selectors.failure_groups()}

    assert set(groups) == {
        ("k.receipt", "HTTP 503"),
        ("k.receipt", "timed out after #s on #"),
        ("k.sheet", "HTTP 503"),
    }
    assert groups[("k.receipt", "HTTP 503")].count == 2
    assert groups[("k.receipt", "HTTP 503")].failed == 2
    assert groups[("k.receipt", "timed out after #s on #")].retrying == 2


def test_the_status_of_the_newest_attempt_decides_the_group():
    task = failing("k", "answered 503", status=503)
    Attempt.objects.create(
        task=task,
        number=2,
        started_at=timezone.now(),
        duration_ms=1.0,
        outcome=AttemptOutcome.FAILED,
        http_status=404,
    )
    [group] = selectors.failure_groups()
    assert group.signature == "HTTP 404"


def test_a_traceback_groups_by_its_last_line():
    failing("k", 'Traceback (most recent call last):\n  File "x", line 3\nKeyError: 17')
    failing("k", 'Traceback (most recent call last):\n  File "y", line 9\nKeyError: 18')
    [group] = selectors.failure_groups()
    assert (group.signature, group.count) == ("KeyError: #", 2)


def test_failure_groups_read_in_one_query_however_many_tasks(django_assert_num_queries):
    now = timezone.now()
    tasks = Task.objects.bulk_create(
        Task(
            kind=f"k{n % 4}",
            state=TaskState.FAILED if n % 2 else TaskState.PENDING,
            attempts=2,
            last_error=f"error {n} for t-{n}",
            finished_at=now,
        )
        for n in range(2000)
    )
    Attempt.objects.bulk_create(
        Attempt(
            task=task,
            number=1,
            started_at=now,
            duration_ms=1.0,
            outcome=AttemptOutcome.RETRY,
            http_status=503 if task.pk % 3 == 0 else None,
        )
        for task in tasks
    )
    with django_assert_num_queries(1):
        groups = selectors.failure_groups()
    assert sum(g.count for g in groups) == 2000
    assert len(groups) == 8


def test_the_triage_page_lists_groups_with_a_link_to_the_filtered_list(admin_client):
    kept = failing("k.receipt", "answered 503", status=503)
    failing("k.receipt", "bad request", status=400)

    page = admin_client.get(TRIAGE).content.decode()
    assert "HTTP 503" in page
    assert "e.g. answered 503" in page
    assert "HTTP 400" in page
    assert "?kind=k.receipt&amp;failure=HTTP+503" in page

    listed = admin_client.get("/admin/outbox/task/", {"kind": "k.receipt", "failure": "HTTP 503"})
    assert listed.status_code == 200
    assert [t.pk for t in listed.context["cl"].result_list] == [kept.pk]


def test_the_task_list_links_the_triage_page(admin_client):
    assert TRIAGE in admin_client.get("/admin/outbox/task/").content.decode()


def test_retry_this_group_retries_exactly_that_group_and_logs_each_task(admin_client, admin_user):
    group = [failing("k.receipt", "answered 503", status=503) for _ in range(3)]
    other_status = failing("k.receipt", "answered 400", status=400)
    other_kind = failing("k.sheet", "answered 503", status=503)

    response = admin_client.post(RETRY_GROUP, {"kind": "k.receipt", "signature": "HTTP 503"})

    assert response.status_code == 302
    states = dict(Task.objects.values_list("id", "state"))
    assert all(states[t.pk] == TaskState.PENDING for t in group)
    assert states[other_status.pk] == TaskState.FAILED
    assert states[other_kind.pk] == TaskState.FAILED
    logged = LogEntry.objects.filter(user=admin_user, action_flag=CHANGE)
    assert sorted(int(e.object_id) for e in logged) == sorted(t.pk for t in group)


def test_retry_this_group_needs_the_retry_permission(client: Client):
    viewer = User.objects.create_user("viewer", password="x", is_staff=True)
    grant(viewer, "outbox.view_task")
    client.force_login(viewer)
    task = failing("k", "answered 503", status=503)

    page = client.get(TRIAGE).content.decode()
    assert "Retry this group" not in page
    response = client.post(RETRY_GROUP, {"kind": "k", "signature": "HTTP 503"})

    assert response.status_code == 403
    assert Task.objects.get(pk=task.pk).state == TaskState.FAILED


def test_the_retry_button_of_one_task_retries_it_and_goes_back(admin_client):
    task = failing("k", "answered 503", status=503)
    response = admin_client.post(
        f"/admin/outbox/task/{task.pk}/retry/", {"next": "/admin/tickets/ticket/"}
    )
    assert response.status_code == 302
    assert response["Location"] == "/admin/tickets/ticket/"
    assert Task.objects.get(pk=task.pk).state == TaskState.PENDING


def test_the_retry_button_never_sends_the_operator_off_site(admin_client):
    task = failing("k", "answered 503", status=503)
    response = admin_client.post(
        f"/admin/outbox/task/{task.pk}/retry/", {"next": "https://evil.example/"}
    )
    assert response["Location"] == f"/admin/outbox/task/{task.pk}/change/"


def test_the_triage_page_reads_in_a_fixed_number_of_queries(
    admin_client, django_assert_num_queries
):
    for n in range(30):
        failing(f"k{n % 3}", f"error {n}", status=500 + n % 4)
    admin_client.get(TRIAGE)  # fills the content types' process-wide cache

    # The session and its user, the failing tasks with their newest attempts' statuses.
    with django_assert_num_queries(3):
        response = admin_client.get(TRIAGE)

    assert response.content.decode().count("Retry this group") == 12


# The dashboard's failing tasks ---------------------------------------------------------

DASHBOARD = "/admin/outbox/task/dashboard/"


def test_the_dashboard_shows_the_biggest_failure_groups_and_links_triage(admin_client):
    for n in range(7):  # seven groups of one kind: 7, 6, ... 1 tasks
        for _ in range(7 - n):
            failing("k.receipt", "answered", status=500 + n)
    Task.objects.create(kind="k.receipt", state=TaskState.SUCCEEDED, attempts=1)

    page = admin_client.get(DASHBOARD).content.decode()
    failures = page[page.index('id="failure-groups"') : page.index('id="failure-summary"')]

    shown = [f"HTTP {500 + n}" for n in range(5)]
    assert [s for s in shown if s in failures] == shown, "the five biggest groups"
    assert "HTTP 505" not in failures
    assert "HTTP 506" not in failures
    assert failures.index("HTTP 500") < failures.index("HTTP 504"), "biggest first"
    assert "?kind=k.receipt&amp;failure=HTTP+500" in failures, "each group links its tasks"
    assert "Retry this group (7)" in failures
    assert "28 failing tasks in 7 groups, the 5 biggest shown." in page
    assert f'<a href="{TRIAGE}">Failure triage</a>' in page


def test_a_dashboard_without_failures_says_so(admin_client):
    Task.objects.create(kind="k", state=TaskState.PENDING, attempts=0)  # not tried yet

    page = admin_client.get(DASHBOARD).content.decode()

    assert "No task is failing." in page
    assert "failing task" not in page
    assert "Retry this group" not in page


def test_retry_this_group_from_the_dashboard_comes_back_to_it(admin_client, admin_user):
    group = [failing("k.receipt", "answered 503", status=503) for _ in range(2)]
    other = failing("k.receipt", "answered 400", status=400)
    page = admin_client.get(DASHBOARD, {"refresh": "3"}).content.decode()
    assert f'name="next" value="{DASHBOARD}?refresh=3"' in page

    response = admin_client.post(
        RETRY_GROUP,
        {"kind": "k.receipt", "signature": "HTTP 503", "next": f"{DASHBOARD}?refresh=3"},
        follow=True,
    )

    assert response.redirect_chain == [(f"{DASHBOARD}?refresh=3", 302)]
    assert (
        '<li class="success">2 tasks of k.receipt / HTTP 503 due now with a fresh attempt '
        "budget.</li>" in response.content.decode()
    )
    states = dict(Task.objects.values_list("id", "state"))
    assert [states[t.pk] for t in group] == [TaskState.PENDING] * 2
    assert states[other.pk] == TaskState.FAILED
    assert LogEntry.objects.filter(
        user=admin_user, change_message__startswith="Retried from failure triage"
    ).count() == len(group)


def test_retry_this_group_never_sends_the_operator_off_site(admin_client):
    failing("k", "answered 503", status=503)
    response = admin_client.post(
        RETRY_GROUP, {"kind": "k", "signature": "HTTP 503", "next": "https://evil.example/"}
    )
    assert response["Location"] == TRIAGE


def test_the_dashboard_offers_no_group_retry_without_the_permission(client: Client):
    viewer = User.objects.create_user("viewer", password="x", is_staff=True)
    grant(viewer, "outbox.view_task")
    client.force_login(viewer)
    failing("k", "answered 503", status=503)

    page = client.get(DASHBOARD).content.decode()

    assert "1 failing task in 1 group." in page
    assert "Retry this group" not in page


def hms(moment: Any) -> str:
    return moment.astimezone(UTC).strftime("%H:%M:%S UTC")


def test_retrying_a_group_keeps_the_settle_of_a_try_that_got_no_answer(admin_client):
    # One group (HTTP 504), two tasks: one whose proxy answered 504 while the write went on.
    in_flight = waiting_out_a_write(failing("k.sheet", "answered 504"), http_status=504)
    answered = failing("k.sheet", "answered 504", status=504)

    response = admin_client.post(
        RETRY_GROUP, {"kind": "k.sheet", "signature": "HTTP 504"}, follow=True
    )

    assert Task.objects.get(pk=in_flight.pk).available_at == in_flight.settle_until
    assert Task.objects.get(pk=answered.pk).available_at <= timezone.now()
    assert (
        f"2 tasks of k.sheet / HTTP 504 retried with a fresh attempt budget: 1 due now, 1 due at "
        f"{hms(in_flight.settle_until)} (task {in_flight.pk}: a write of try 3 may still land)."
        in response.content.decode()
    )


def test_the_retry_button_of_one_task_keeps_the_settle_and_says_until_when(admin_client):
    task = waiting_out_a_write(failing("k.sheet", "timed out"), tries=2)

    response = admin_client.post(f"/admin/outbox/task/{task.pk}/retry/", follow=True)

    retried = Task.objects.get(pk=task.pk)
    assert (retried.state, retried.available_at) == (TaskState.PENDING, task.settle_until)
    assert (
        f"1 task retried with a fresh attempt budget: due at {hms(task.settle_until)} "
        f"(task {task.pk}: a write of try 2 may still land), not now." in response.content.decode()
    )
