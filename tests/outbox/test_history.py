"""A success is kept on its task row, and every reader of a task's history still sees it.

Each reader gets the same scenario, run through the engine's own claim and record path: a
try answered 503 (retried), then a success. Under the old model (one Attempt row per try)
every reader showed try 1 "retry" with its 503, then try 2 "succeeded", last; they must still.
"""

from __future__ import annotations

import json
import re
from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import transaction
from rest_framework.authtoken.models import Token

from outbox.console import selectors
from outbox.history import SUCCESS_ON_TASK, previous_try
from outbox.models import Attempt, AttemptOutcome, Task
from outbox.services import TaskSpec, enqueue_many, tasks_retry
from tests.conftest import grant, record_try, tries

pytestmark = pytest.mark.django_db

RETRY, SUCCEEDED = AttemptOutcome.RETRY, AttemptOutcome.SUCCEEDED
# What the old model's readers showed for the scenario: (number, outcome, HTTP status).
OLD_MODEL = [(1, RETRY, 503), (2, SUCCEEDED, None)]


def make(kind: str = "test.history") -> int:
    with transaction.atomic():
        [task] = enqueue_many([TaskSpec(kind=kind, payload={"ticket_id": "t-1"})])
    return task.id


def retried_then_succeeded(recording_handler) -> int:
    recording_handler("test.history")
    task_id = make()
    record_try(task_id, RETRY, http_status=503, error="gateway answered 503")
    record_try(task_id, SUCCEEDED)
    return task_id


def rerun(task_id: int) -> None:
    assert tasks_retry(tasks=Task.objects.filter(id=task_id), include_succeeded=True) == 1


def test_the_scenario_writes_one_attempt_row_and_keeps_the_success_on_the_task(
    recording_handler,
):
    task_id = retried_then_succeeded(recording_handler)

    assert list(Attempt.objects.values_list("number", "outcome")) == [(1, RETRY)]
    task = Task.objects.get(id=task_id)
    assert (task.state, task.attempts, task.succeeded_duration_ms) == (SUCCEEDED, 2, 12.5)
    assert tries(task_id, "number", "outcome", "http_status") == OLD_MODEL


def test_the_admin_task_page_lists_every_try_the_success_last(admin_client, recording_handler):
    task_id = retried_then_succeeded(recording_handler)

    html = admin_client.get(f"/admin/outbox/task/{task_id}/change/").content.decode()

    history_html = html[html.index('id="attempt_set-group"') :]
    numbers = re.findall(r'field-number">\s*<p>(\d+)</p>', history_html)
    outcomes = re.findall(r'field-outcome">\s*<p>([^<]+)</p>', history_html)
    statuses = re.findall(r'field-http_status">\s*<p>([^<]+)</p>', history_html)
    assert numbers == ["1", "2"]
    assert outcomes == ["Transient error", "Succeeded"]
    assert statuses == ["503", "-"]
    assert "12.5 ms" in history_html


def test_the_task_api_answers_every_try_the_success_last(client, recording_handler):
    task_id = retried_then_succeeded(recording_handler)
    user = User.objects.create_user("op", password="x", is_staff=True)
    token = Token.objects.create(user=grant(user, "outbox.view_task")).key

    body = client.get(f"/api/tasks/{task_id}", headers={"Authorization": f"Token {token}"}).json()

    assert [
        (entry["number"], entry["outcome"], entry["http_status"])
        for entry in body["attempt_history"]
    ] == OLD_MODEL
    assert body["attempt_history"][-1]["duration_ms"] == 12.5
    assert body["attempts"] == 2


def test_the_metrics_count_the_success_on_the_task_row_as_a_try(
    client, settings, recording_handler
):
    settings.METRICS_TOKEN = ""
    retried_then_succeeded(recording_handler)

    text = client.get("/metrics").content.decode()

    assert 'outbox_attempts_total{outcome="retry"} 1.0' in text
    assert 'outbox_attempts_total{outcome="succeeded"} 1.0' in text
    assert 'outbox_tasks{kind="test.history",state="succeeded"} 1.0' in text


def test_the_dashboard_chart_counts_the_success_and_the_failed_try(admin_client, recording_handler):
    retried_then_succeeded(recording_handler)

    buckets = selectors.hourly_activity(hours=1)

    assert [(b.succeeded, b.failed) for b in buckets] == [(1, 1)]
    assert admin_client.get("/admin/outbox/task/dashboard/").status_code == 200


def test_outbox_status_counts_the_task_as_succeeded(recording_handler):
    retried_then_succeeded(recording_handler)
    out = StringIO()

    call_command("outbox_status", "--json", stdout=out)

    totals = json.loads(out.getvalue())["totals"]
    assert (totals["succeeded"], totals["pending"], totals["failed"]) == (1, 0, 0)


def test_a_rerun_keeps_the_first_success_at_its_number_and_the_numbers_run_on(
    recording_handler,
):
    recording_handler("test.history")
    task_id = make()
    record_try(task_id, SUCCEEDED)
    rerun(task_id)
    record_try(task_id, RETRY, http_status=500)
    record_try(task_id, SUCCEEDED)

    # The re-run wrote the first success as a row; the last one is on the task row.
    assert tries(task_id, "number", "outcome") == [(1, SUCCEEDED), (2, RETRY), (3, SUCCEEDED)]
    assert list(Attempt.objects.order_by("id").values_list("number", "outcome")) == [
        (1, SUCCEEDED),
        (2, RETRY),
    ]


def test_two_reruns_at_once_fold_the_success_once(recording_handler):
    recording_handler("test.history")
    task_id = make()
    record_try(task_id, SUCCEEDED)

    rerun(task_id)
    # The second finds the task pending already: it folds nothing (and requeues it again).
    tasks_retry(tasks=Task.objects.filter(id=task_id), include_succeeded=True)

    assert list(Attempt.objects.values_list("number", "outcome")) == [(1, SUCCEEDED)]
    assert tries(task_id, "number", "outcome") == [(1, SUCCEEDED)]


def test_triage_groups_a_rerun_task_by_its_newest_failure_not_its_old_success(
    admin_client, recording_handler
):
    recording_handler("test.history")
    task_id = make()
    record_try(task_id, SUCCEEDED)
    rerun(task_id)
    record_try(task_id, AttemptOutcome.FAILED, http_status=400, error="bad request")

    [group] = selectors.failure_groups()

    assert (group.kind, group.signature, group.failed) == ("test.history", "HTTP 400", 1)
    assert "HTTP 400" in admin_client.get("/admin/outbox/task/triage/").content.decode()


def test_a_success_recorded_before_the_change_is_shown_once(recording_handler):
    # Migration 0011 leaves the success rows already written as they are.
    recording_handler("test.history")
    task_id = make()
    record_try(task_id, SUCCEEDED)
    task = Task.objects.get(id=task_id)
    Attempt.objects.create(
        task=task,
        number=1,
        started_at=task.succeeded_started_at,
        duration_ms=3.0,
        outcome=SUCCEEDED,
        worker="old",
    )
    Task.objects.filter(id=task_id).update(succeeded_started_at=None, succeeded_duration_ms=None)

    assert tries(task_id) == [("old", 1, SUCCEEDED)]


def test_previous_try_tells_a_recorded_try_from_the_success_on_the_task_from_a_vanished_one(
    recording_handler,
):
    recording_handler("test.history")
    task_id = make()
    record_try(task_id, RETRY, http_status=503)
    record_try(task_id, SUCCEEDED)

    row = previous_try(task_id, 1)
    assert isinstance(row, Attempt)
    assert (row.number, row.outcome) == (1, RETRY)
    assert previous_try(task_id, 2) is SUCCESS_ON_TASK
    assert previous_try(task_id, 3) is None

    # A re-run: try 3 claimed, its worker died mid-call (no row); try 4 asks about 3 and 2.
    rerun(task_id)
    record_try(task_id, RETRY)  # try 3 ...
    Attempt.objects.filter(task_id=task_id, number=3).delete()  # ... vanished
    folded = previous_try(task_id, 2)
    assert isinstance(folded, Attempt)
    assert folded.outcome == SUCCEEDED
    assert previous_try(task_id, 3) is None
