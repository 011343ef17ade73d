"""What the operators see of the outbox's health: circuits, relay passes, waiting tasks,
the probes, the schedules that keep the relay alive."""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.contrib import admin
from django.core.checks import run_checks
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db.models.functions import Now
from django.utils import timezone
from django_q.models import Failure, OrmQ, Schedule, Success

from outbox.console import selectors
from outbox.models import Circuit, RelayPass, Task, TaskState
from outbox.runtime import circuit
from outbox.runtime.circuit import CircuitBreaker
from outbox.runtime.passes import SCHEDULES, ensure_schedules, missing_schedules

pytestmark = pytest.mark.django_db

DASHBOARD = "/admin/outbox/task/dashboard/"


@pytest.fixture(autouse=True)
def no_caching(monkeypatch):
    monkeypatch.setattr(circuit, "REFRESH_SECONDS", 0.0)


def task(**fields: Any) -> Task:
    fields.setdefault("kind", "tickets.issue_receipt")
    fields.setdefault("state", TaskState.PENDING)
    return Task.objects.create(**fields)


def receipts_outage(retrying: int = 6) -> None:
    """Six receipts backing off after errors, the receipts circuit open since 4 minutes."""
    now = timezone.now()
    for n in range(retrying):
        task(
            attempts=2,
            last_error=f"POST /receipts answered 503: down ({n})",
            available_at=now + timedelta(seconds=30),
            created_at=now - timedelta(minutes=4),
        )
    Circuit.objects.create(
        name="receipts",
        opened_until=now + timedelta(seconds=20),
        cooldown_seconds=30,
        opened_count=5,
        down_since=now - timedelta(minutes=4),
        last_error="POST /receipts answered 503: down",
    )


def live_pass(worker: str = "web-1:4242:Thread-1", *, seconds_ago: float = 1.0) -> RelayPass:
    return RelayPass.objects.create(
        worker=worker, heartbeat_at=timezone.now() - timedelta(seconds=seconds_ago)
    )


def run(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("outbox_status", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


# The circuit keeps what opened it ------------------------------------------------------


def test_the_failure_that_opens_a_circuit_leaves_its_error_and_the_outage_start():
    b = CircuitBreaker("receipts", failures=2, cooldown=10.0, max_cooldown=40.0)
    b.record_failure(error="first")
    b.record_failure(error="POST /receipts answered 503: down\x00")

    row = Circuit.objects.get()
    assert row.last_error == "POST /receipts answered 503: down\ufffd"
    assert row.down_since is not None
    first_down = row.down_since

    # The cool-down ends, the probe fails: open longer, same outage.
    Circuit.objects.update(opened_until=Now() - timedelta(seconds=1))
    b.before_call()
    b.record_failure(error="still down")
    row.refresh_from_db()
    assert row.down_since == first_down
    assert row.last_error == "still down"


def test_the_success_that_closes_a_circuit_ends_the_outage():
    b = CircuitBreaker("receipts", failures=1, cooldown=10.0, max_cooldown=40.0)
    b.record_failure(error="down")
    Circuit.objects.update(opened_until=Now() - timedelta(seconds=1))
    b.before_call()
    b.record_success()

    [health] = selectors.circuit_health()
    assert health.state == selectors.CIRCUIT_CLOSED
    assert health.down_since is None


def test_a_circuit_reads_open_then_probing_once_its_rest_is_over():
    receipts_outage()
    now = timezone.now()

    [open_] = selectors.circuit_health(now=now)
    [probing] = selectors.circuit_health(now=now + timedelta(seconds=21))

    assert open_.state == "open"
    assert probing.state == "probing"
    assert open_.next_probe_at is not None
    assert open_.next_probe_at > now
    assert open_.last_error.startswith("POST /receipts answered 503")


# Waiting is not "nothing is due" --------------------------------------------------------


def test_waiting_tasks_are_split_into_due_retrying_and_scheduled():
    now = timezone.now()
    task(available_at=now - timedelta(minutes=1))
    task(attempts=1, last_error="timeout", available_at=now + timedelta(minutes=1))
    # Deferred by an open circuit: no attempt spent, but an error kept.
    task(attempts=0, last_error="circuit open", available_at=now + timedelta(minutes=1))
    task(available_at=now + timedelta(hours=1))
    task(kind="other", state=TaskState.FAILED)

    [row], total = selectors.waiting_tasks(now=now)

    assert (row.due, row.retrying, row.scheduled) == (1, 2, 1)
    assert total.total == 4
    assert row.newest_error in {"timeout", "circuit open"}


def test_an_outage_reads_as_retrying_tasks_and_an_open_circuit_not_nothing_is_due():
    receipts_outage()
    live_pass()

    out, _ = run()

    assert "Oldest due task has waited: nothing is due" in out
    assert "0 due now, 6 retrying later, 0 scheduled; oldest waiting 4m " in out
    assert "tickets.issue_receipt: 0 due, 6 retrying" in out
    assert "newest error: POST /receipts answered 503: down" in out
    assert "receipts: OPEN since " in out
    assert "last error: POST /receipts answered 503: down" in out


def test_the_dashboard_shows_the_outage(admin_client, django_assert_num_queries):
    receipts_outage()
    live_pass()

    # Session and user 2, counts 1, chart (all kinds and each kind) 2, lag 1, throughput 1,
    # paused 1, waiting 2 (each kind's newest error a subquery), circuits 1, relay passes and
    # tasks in flight 2, failure groups 1, the domain's notes 1 (the last reconcile run).
    with django_assert_num_queries(15):
        response = admin_client.get(DASHBOARD)

    html = response.content.decode()
    assert response.status_code == 200
    assert "0 due now, 6 retrying later, 0 scheduled; oldest waiting 4m " in html
    assert 'id="circuit-alert-receipts"' in html
    assert "Circuit <strong>receipts</strong> open since" in html
    assert "1 live" in html


def test_a_dashboard_with_no_relay_pass_says_so(admin_client):
    html = admin_client.get(DASHBOARD).content.decode()

    assert "No relay pass is registered" in html


# Relay health ---------------------------------------------------------------------------


def test_a_dead_node_is_shown_as_stale_with_its_tasks_in_flight():
    live_pass("web-1:10:Thread-1")
    live_pass("web-2:20:Thread-3", seconds_ago=120)
    task(state=TaskState.RUNNING, leased_by="web-2:20:ThreadPoolExecutor-0_1")
    task(state=TaskState.RUNNING, leased_by="web-2:20:ThreadPoolExecutor-0_2")
    task(state=TaskState.RUNNING, leased_by="web-1:10:ThreadPoolExecutor-0_0")

    relay = selectors.relay_health(stale_after=timedelta(seconds=20))
    out, _ = run()

    assert (relay.live, relay.stale) == (1, 1)
    assert relay.running_by_node == {"web-1:10": 1, "web-2:20": 2}
    assert "Relay passes: 1 live, 1 stale" in out
    assert "web-2:20:Thread-3: STALE" in out
    assert "tasks in flight on web-2:20: 2" in out


def test_the_relay_pass_admin_page_marks_a_stale_pass(admin_client):
    live_pass("web-2:20:Thread-3", seconds_ago=120)

    response = admin_client.get("/admin/outbox/relaypass/")

    assert response.status_code == 200
    assert "stale (no heartbeat lately" in response.content.decode()
    assert admin_client.get("/admin/outbox/relaypass/add/").status_code == 403


# Probes -----------------------------------------------------------------------------------


def test_check_passes_with_a_live_relay_and_nothing_late():
    live_pass()

    out, err = run("--check")

    assert err == ""
    assert "ok: live_passes = 1" in out


def test_check_names_each_threshold_crossed_and_exits_1():
    receipts_outage()
    task(kind="x", state=TaskState.FAILED)
    task(available_at=timezone.now() - timedelta(minutes=10))

    err = StringIO()
    with pytest.raises(CommandError) as raised:
        call_command("outbox_status", "--check", stdout=StringIO(), stderr=err)

    assert raised.value.returncode == 1
    lines = err.getvalue().splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "CROSSED oldest_due",
        "CROSSED failed",
        "CROSSED open_circuits",
        "CROSSED live_passes",
    ]
    assert "receipts" in lines[2]


def test_thresholds_are_options_and_a_negative_one_turns_a_check_off():
    receipts_outage()
    task(kind="x", state=TaskState.FAILED)

    out, err = run(
        "--check", "--max-failed", "1", "--max-open-circuits", "1", "--min-live-passes", "-1"
    )

    assert err == ""
    assert "live_passes" not in out


def test_status_json_carries_the_same_figures_and_the_checks():
    receipts_outage()
    live_pass()

    with pytest.raises(CommandError):
        run("--json", "--check")
    out = StringIO()
    call_command("outbox_status", "--json", stdout=out)

    document = json.loads(out.getvalue())
    assert document["waiting"]["all"]["retrying"] == 6
    assert document["circuits"]["receipts"]["state"] == "open"
    assert document["relay"]["live_passes"] == 1
    assert "checks" not in document


def test_relay_health_endpoint_answers_503_without_a_live_pass(client):
    response = client.get("/health/relay")

    assert response.status_code == 503
    body = response.json()
    assert body["ok"] is False
    assert {c["name"]: c["ok"] for c in body["checks"]} == {
        "oldest_due": True,
        "open_circuits": True,
        "live_passes": False,
    }


def test_relay_health_endpoint_answers_200_and_no_error_text(client):
    live_pass()
    task(kind="x", state=TaskState.FAILED, last_error="customer@example.com was refused")

    response = client.get("/health/relay")

    assert response.status_code == 200
    assert "example.com" not in response.content.decode()


def test_an_open_circuit_makes_the_relay_unhealthy_and_names_only_the_destination(client):
    live_pass()
    receipts_outage()

    response = client.get("/health/relay")

    assert response.status_code == 503
    assert "503: down" not in response.content.decode()
    assert "receipts" in response.content.decode()


def test_metrics_show_open_circuits_and_live_and_stale_passes(client):
    receipts_outage()
    Circuit.objects.create(name="payments")
    live_pass()
    live_pass("web-2:1:t", seconds_ago=300)

    text = client.get("/metrics", REMOTE_ADDR="127.0.0.1").content.decode()

    assert 'outbox_circuit_open{destination="receipts"} 1.0' in text
    assert 'outbox_circuit_open{destination="payments"} 0.0' in text
    assert 'outbox_relay_passes{state="live"} 1.0' in text
    assert 'outbox_relay_passes{state="stale"} 1.0' in text


# Neighbours ---------------------------------------------------------------------------------


def test_django_q_pages_are_not_in_the_admin(admin_client):
    for model in (Success, Failure, Schedule, OrmQ):
        assert not admin.site.is_registered(model)
    html = admin_client.get("/admin/").content.decode()
    assert "Failed tasks" not in html


def test_the_admin_index_leads_with_the_dashboard(admin_client):
    html = admin_client.get("/admin/").content.decode()

    assert html.index(f'href="{DASHBOARD}"') < html.index('id="content-main"')


def test_deleted_schedules_are_warned_about_and_recreated():
    assert missing_schedules() == []
    Schedule.objects.filter(name=SCHEDULES[0]["name"]).delete()

    assert not [m for m in run_checks() if m.id == "outbox.W001"]  # no database, no query
    warnings = [m for m in run_checks(databases=["default"]) if m.id == "outbox.W001"]
    assert len(warnings) == 1
    assert "outbox_status --repair-schedules" in (warnings[0].hint or "")

    out, _ = run("--repair-schedules")
    assert f"Recreated: {SCHEDULES[0]['name']}." in out
    assert missing_schedules() == []
    assert ensure_schedules() == []
    recreated = Schedule.objects.get(name=SCHEDULES[0]["name"])
    assert (recreated.func, recreated.minutes) == ("outbox.runtime.passes.keep_passes_alive", 1)


def test_a_passing_check_states_its_limit_and_never_reads_as_crossed():
    from outbox.console.health import Thresholds, evaluate

    checks = evaluate(
        Thresholds(
            max_oldest_due_seconds=300, max_failed=0, max_open_circuits=0, min_live_passes=1
        ),
        oldest_due=timedelta(seconds=3),
        failed=0,
        open_circuits=[],
        live_passes=2,
    )

    assert all(check.ok for check in checks)
    assert [check.message for check in checks] == [
        "the oldest due task has waited 3s (limit: at most 300s)",
        "0 failed task(s) (limit: at most 0)",
        "0 open circuit(s) (limit: at most 0)",
        "2 live relay pass(es) (limit: at least 1)",
    ]
