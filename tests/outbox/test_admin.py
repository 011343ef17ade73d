from __future__ import annotations

import re
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry
from django.contrib.auth.models import Group, Permission, User
from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from outbox.console import selectors
from outbox.console.actions import UNSAID_FORCE_RETRY
from outbox.console.dashboard import HourChart
from outbox.models import Attempt, AttemptOutcome, PausedKind, Queue, Task, TaskState
from outbox.registry import handler as outbox_handler
from outbox.registry import unregister
from outbox.services import enqueue
from tests.conftest import grant, waiting_out_a_write

CHANGELIST = "/admin/outbox/task/"
DASHBOARD = "/admin/outbox/task/dashboard/"

pytestmark = pytest.mark.django_db


def make_task(state: str = TaskState.FAILED, **fields: Any) -> Task:
    fields.setdefault("kind", "test.record")
    fields.setdefault("payload", {"n": 1})
    if state in (TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELED):
        fields.setdefault("finished_at", timezone.now())
    if state == TaskState.FAILED:
        fields.setdefault("attempts", 3)
        fields.setdefault("last_error", "HTTP 500 from the API")
    return Task.objects.create(state=state, **fields)


def refreshed(task: Task) -> Task:
    return Task.objects.get(pk=task.pk)


def post_action(client: Client, action: str, tasks: list[Task], **extra: Any) -> Any:
    data = {"action": action, ACTION_CHECKBOX_NAME: [t.pk for t in tasks], "index": 0, **extra}
    return client.post(CHANGELIST, data)


def offered_actions(client: Client) -> set[str]:
    response = client.get(CHANGELIST)
    assert response.status_code == 200
    return {name for name, _ in response.context["action_form"].fields["action"].choices if name}


def outbox_permission(codename: str) -> Permission:
    return Permission.objects.get(content_type__app_label="outbox", codename=codename)


def messages_of(response: Any) -> list[str]:
    return [str(m) for m in response.wsgi_request._messages]


@pytest.fixture
def accounting_client(client: Client) -> Client:
    user = User.objects.create_user("acc", password="x", is_staff=True)
    user.groups.add(Group.objects.get(name="Accounting"))
    client.force_login(user)
    return client


@pytest.fixture
def staff_without_permissions(client: Client) -> Client:
    user = User.objects.create_user("nobody", password="x", is_staff=True)
    client.force_login(user)
    return client


# The group the migration creates --------------------------------------------------------


def test_the_accounting_group_can_view_retry_and_reconcile_but_nothing_else():
    group = Group.objects.get(name="Accounting")

    codenames = {
        (p.content_type.app_label, p.codename)
        for p in group.permissions.select_related("content_type")
    }

    assert codenames == {
        ("tickets", "view_ticket"),
        ("tickets", "view_webhookdelivery"),
        # The reconcile's report, its fixes and acknowledgements are the accountants' own.
        ("tickets", "view_reconcilerun"),
        ("tickets", "view_driftitem"),
        ("tickets", "fix_driftitem"),
        ("tickets", "acknowledge_driftitem"),
        ("outbox", "view_task"),
        ("outbox", "view_attempt"),
        ("outbox", "view_pausedkind"),
        ("outbox", "retry_task"),
    }


# The list: filters and search -----------------------------------------------------------


def test_the_list_filters_by_state_kind_queue_and_age(admin_client):
    old_failed = make_task(
        TaskState.FAILED, kind="a.kind", created_at=timezone.now() - timedelta(days=10)
    )
    new_pending = make_task(TaskState.PENDING, kind="b.kind", queue=Queue.CRITICAL)

    def listed(query: str) -> set[int]:
        response = admin_client.get(CHANGELIST + query)
        assert response.status_code == 200
        return {task.pk for task in response.context["cl"].result_list}

    assert listed("?state=failed") == {old_failed.pk}
    assert listed("?kind=b.kind") == {new_pending.pk}
    assert listed("?queue=critical") == {new_pending.pk}
    assert listed("?created=hour") == {new_pending.pk}
    assert listed("?created=week") == {new_pending.pk}
    assert listed("?created=older") == {old_failed.pk}
    assert listed("") == {old_failed.pk, new_pending.pk}


def test_search_finds_tasks_by_id_keys_and_payload_values(admin_client):
    receipt = make_task(
        dedupe_key="receipt:t-1", idempotency_key="idem-abc", payload={"ticket_id": "t-1"}
    )
    other = make_task(dedupe_key="receipt:t-10", payload={"ticket_id": "t-10"})

    def found(term: str) -> set[int]:
        response = admin_client.get(CHANGELIST, {"q": term})
        assert response.status_code == 200
        return {task.pk for task in response.context["cl"].result_list}

    assert 'id="searchbar"' in admin_client.get(CHANGELIST).content.decode()
    assert found(str(other.pk)) == {other.pk}
    assert found("receipt:t-1") == {receipt.pk}
    assert found("idem-abc") == {receipt.pk}
    # A ticket id: whole values of the payload or of the dedupe key's last part, so t-1
    # does not also find t-10.
    assert found("t-1") == {receipt.pk}
    assert found("T-10") == {other.pk}
    assert found("t-1 t-10") == {receipt.pk, other.pk}
    assert found("nothing-like-this") == set()


@pytest.fixture
def task_search(monkeypatch):
    """Register one task search for the test, alone: `task_search(func)`."""
    from outbox.console import links

    def register(func):
        monkeypatch.setattr(links, "_task_searches", [])
        links.register_task_search(func)

    return register


def test_a_term_the_domain_knows_finds_its_keys_without_scanning_the_payloads(
    admin_client, task_search
):
    named = make_task(dedupe_key="receipt:k-1", payload={"n": 1})
    elsewhere = make_task(dedupe_key="other:1", payload={"who": "ada@example.com"})
    unknown = make_task(dedupe_key="other:2", payload={"who": "bob@example.com"})
    task_search(lambda term: ["receipt:k-1"] if term == "ada@example.com" else None)

    def found(term: str) -> tuple[set[int], list[str]]:
        with CaptureQueriesContext(connection) as queries:
            response = admin_client.get(CHANGELIST, {"q": term})
        listed = {task.pk for task in response.context["cl"].result_list}
        return listed, [q["sql"] for q in queries if "dedupe_key" in q["sql"]]

    # The domain names the tasks: matched on the dedupe keys' index, no LIKE over payloads
    # (so `elsewhere`, which only holds the value in its payload, is not listed).
    listed, sql = found("ada@example.com")
    assert listed == {named.pk}
    assert sql
    assert not any("LIKE" in statement.upper() for statement in sql)
    # A term the domain does not know is still looked for in every payload.
    listed, sql = found("bob@example.com")
    assert listed == {unknown.pk}
    assert any("LIKE" in statement.upper() for statement in sql)
    assert elsewhere.pk not in listed


# Read-only -------------------------------------------------------------------------------


def test_the_task_page_is_read_only_with_pretty_escaped_payload_and_attempts(admin_client):
    task = make_task(payload={"ticket_id": "t-1", "note": "<script>alert(1)</script>"})
    Attempt.objects.create(
        task=task,
        number=1,
        started_at=timezone.now(),
        duration_ms=12.5,
        outcome=AttemptOutcome.RETRY,
        http_status=503,
        error="Service Unavailable",
    )

    response = admin_client.get(f"{CHANGELIST}{task.pk}/change/")

    assert response.status_code == 200
    html = response.content.decode()
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert re.search(r'<pre class="outbox-json">\{\n  &quot;note&quot;', html)
    assert "12.5 ms" in html
    assert "503" in html
    assert "Service Unavailable" in html
    assert 'name="_save"' not in html
    assert 'name="payload"' not in html


def test_attempts_show_in_the_order_they_happened_across_a_retry(admin_client):
    task = make_task()
    for number, error in [(1, "first round, try 1"), (2, "first round, try 2"), (3, "retried")]:
        Attempt.objects.create(
            task=task,
            number=number,
            started_at=timezone.now(),
            duration_ms=1.0,
            outcome=AttemptOutcome.RETRY,
            error=error,
        )

    html = admin_client.get(f"{CHANGELIST}{task.pk}/change/").content.decode()

    assert (
        html.index("first round, try 1") < html.index("first round, try 2") < html.index("retried")
    )


def test_nobody_adds_changes_or_deletes_a_task_from_the_admin(admin_client):
    task = make_task(payload={"n": 1})

    assert admin_client.get(f"{CHANGELIST}add/").status_code == 403
    changed = admin_client.post(f"{CHANGELIST}{task.pk}/change/", {"kind": "other"})
    deleted = admin_client.post(f"{CHANGELIST}{task.pk}/delete/", {"post": "yes"})

    assert changed.status_code == 403
    assert deleted.status_code == 403
    assert refreshed(task).kind == "test.record"
    assert "delete_selected" not in offered_actions(admin_client)


# Actions ----------------------------------------------------------------------------------


def test_retry_now_makes_failed_and_waiting_tasks_due_with_a_fresh_budget(admin_client, admin_user):
    later = timezone.now() + timedelta(hours=1)
    failed = make_task(TaskState.FAILED, attempts=25, idempotency_key="keep-me")
    waiting = make_task(TaskState.PENDING, attempts=2, available_at=later)
    succeeded = make_task(TaskState.SUCCEEDED)
    running = make_task(TaskState.RUNNING, attempts=1)

    response = post_action(admin_client, "retry_now", [failed, waiting, succeeded, running])

    assert response.status_code == 302
    for task, attempts in ((failed, 25), (waiting, 2)):
        task = refreshed(task)
        assert task.state == TaskState.PENDING
        assert task.attempts == attempts  # numbering goes on; the budget is fresh
        assert task.max_attempts == attempts + 25
        assert task.available_at <= timezone.now()
        assert task.finished_at is None
    assert refreshed(failed).idempotency_key == "keep-me"
    assert refreshed(succeeded).state == TaskState.SUCCEEDED
    assert refreshed(running).state == TaskState.RUNNING
    assert messages_of(response) == [
        "2 tasks due now with a fresh attempt budget. 2 selected tasks were not failed or "
        "pending and stayed as they were."
    ]
    entries = LogEntry.objects.filter(user=admin_user, action_flag=CHANGE)
    assert {int(e.object_id) for e in entries} == {failed.pk, waiting.pk}


def test_retry_now_on_every_matching_task_across_pages(admin_client):
    failed = [make_task(TaskState.FAILED) for _ in range(3)]
    succeeded = make_task(TaskState.SUCCEEDED)

    response = admin_client.post(
        CHANGELIST + "?state=failed",
        {
            "action": "retry_now",
            ACTION_CHECKBOX_NAME: [failed[0].pk],
            "select_across": "1",
            "index": 0,
        },
    )

    assert response.status_code == 302
    assert {refreshed(t).state for t in failed} == {TaskState.PENDING}
    assert refreshed(succeeded).state == TaskState.SUCCEEDED


def test_cancel_stops_only_waiting_tasks_and_logs_who_did_it(admin_client, admin_user):
    waiting = make_task(TaskState.PENDING)
    failed = make_task(TaskState.FAILED)

    response = post_action(admin_client, "cancel_tasks", [waiting, failed])

    assert response.status_code == 302
    assert refreshed(waiting).state == TaskState.CANCELED
    assert refreshed(waiting).last_error == "canceled by admin"
    assert refreshed(failed).state == TaskState.FAILED
    entry = LogEntry.objects.get(action_flag=CHANGE)
    assert (entry.user_id, int(entry.object_id)) == (admin_user.pk, waiting.pk)
    assert entry.change_message == "Canceled from the admin."


def test_pause_and_resume_the_kinds_of_the_selected_tasks(admin_client, admin_user):
    a = make_task(kind="a.kind")
    b = make_task(kind="b.kind")
    a_again = make_task(kind="a.kind")

    paused = post_action(admin_client, "pause_kinds", [a, b, a_again])

    assert paused.status_code == 302
    assert sorted(PausedKind.objects.values_list("kind", "paused_by")) == [
        ("a.kind", "admin"),
        ("b.kind", "admin"),
    ]
    assert messages_of(paused) == ["Paused: a.kind, b.kind."]
    assert sorted(
        LogEntry.objects.filter(action_flag=ADDITION).values_list("object_id", flat=True)
    ) == ["a.kind", "b.kind"]

    resumed = post_action(admin_client, "resume_kinds", [a])

    assert resumed.status_code == 302
    assert list(PausedKind.objects.values_list("kind", flat=True)) == ["b.kind"]
    entry = LogEntry.objects.get(action_flag=DELETION)
    assert (entry.user_id, entry.object_id) == (admin_user.pk, "a.kind")


def test_the_paused_kinds_page_lists_and_resumes_them(admin_client):
    PausedKind.objects.create(kind="a.kind", paused_by="ops")
    PausedKind.objects.create(kind="b.kind", paused_by="ops")

    listing = admin_client.get("/admin/outbox/pausedkind/")
    assert listing.status_code == 200
    assert {row.kind for row in listing.context["cl"].result_list} == {"a.kind", "b.kind"}

    response = admin_client.post(
        "/admin/outbox/pausedkind/",
        {"action": "resume_selected", ACTION_CHECKBOX_NAME: ["a.kind"], "index": 0},
    )

    assert response.status_code == 302
    assert list(PausedKind.objects.values_list("kind", flat=True)) == ["b.kind"]
    assert LogEntry.objects.filter(action_flag=DELETION, object_id="a.kind").exists()


def test_rerun_asks_for_confirmation_before_running_succeeded_tasks_again(admin_client, admin_user):
    done = make_task(TaskState.SUCCEEDED, attempts=1, result={"number": "R-1"})
    failed = make_task(TaskState.FAILED)

    asked = post_action(admin_client, "rerun_succeeded", [done, failed])

    assert asked.status_code == 200
    assert "admin/outbox/task/rerun_confirmation.html" in [t.name for t in asked.templates]
    assert asked.context["count"] == 1
    assert asked.context["left_alone"] == 1
    assert refreshed(done).state == TaskState.SUCCEEDED
    assert not LogEntry.objects.exists()

    # The confirmation form posts the same selection back, with post=yes.
    confirmed = admin_client.post(
        CHANGELIST,
        {
            "action": "rerun_succeeded",
            ACTION_CHECKBOX_NAME: asked.context["selected"],
            "select_across": asked.context["select_across"],
            "post": "yes",
        },
    )

    assert confirmed.status_code == 302
    rerun = refreshed(done)
    assert (rerun.state, rerun.attempts, rerun.finished_at) == (TaskState.PENDING, 1, None)
    assert rerun.max_attempts == 1 + 25
    assert refreshed(failed).state == TaskState.FAILED
    entry = LogEntry.objects.get()
    assert (entry.user_id, int(entry.object_id), entry.action_flag) == (
        admin_user.pk,
        done.pk,
        CHANGE,
    )


def test_the_confirmation_page_posts_back_the_selection_it_was_given(admin_client):
    done = make_task(TaskState.SUCCEEDED)

    asked = post_action(admin_client, "rerun_succeeded", [done])

    html = asked.content.decode()
    assert f'name="{ACTION_CHECKBOX_NAME}" value="{done.pk}"' in html
    assert 'name="action" value="rerun_succeeded"' in html
    assert 'name="post" value="yes"' in html


# The accounting group -------------------------------------------------------------------


def test_accounting_sees_tasks_attempts_and_paused_kinds(accounting_client):
    task = make_task()
    Attempt.objects.create(
        task=task, number=1, started_at=timezone.now(), duration_ms=3.0, outcome="failed"
    )

    assert accounting_client.get(CHANGELIST).status_code == 200
    page = accounting_client.get(f"{CHANGELIST}{task.pk}/change/")
    assert page.status_code == 200
    assert "3.0 ms" in page.content.decode()
    assert accounting_client.get("/admin/outbox/pausedkind/").status_code == 200
    assert accounting_client.get("/admin/outbox/attempt/").status_code == 200
    assert accounting_client.get(DASHBOARD).status_code == 200


def test_accounting_is_offered_retry_only(accounting_client):
    make_task()

    assert offered_actions(accounting_client) == {"retry_now"}


def test_accounting_can_retry(accounting_client):
    failed = make_task(TaskState.FAILED)

    response = post_action(accounting_client, "retry_now", [failed])

    assert response.status_code == 302
    assert refreshed(failed).state == TaskState.PENDING
    assert LogEntry.objects.get().user.username == "acc"


@pytest.mark.parametrize(
    "action",
    [
        "cancel_tasks",
        "rerun_succeeded",
        "force_retry",
        "pause_kinds",
        "resume_kinds",
        "delete_selected",
    ],
)
def test_a_forged_post_of_an_action_accounting_lacks_changes_nothing(accounting_client, action):
    waiting = make_task(TaskState.PENDING)
    done = make_task(TaskState.SUCCEEDED)

    response = post_action(accounting_client, action, [waiting, done], post="yes")

    assert response.status_code == 302
    assert messages_of(response) == ["No action selected."]
    assert refreshed(waiting).state == TaskState.PENDING
    assert refreshed(done).state == TaskState.SUCCEEDED
    assert Task.objects.count() == 2
    assert not PausedKind.objects.exists()
    assert not LogEntry.objects.exists()


def test_accounting_cannot_delete_or_edit_a_task(accounting_client):
    task = make_task()

    assert (
        accounting_client.post(f"{CHANGELIST}{task.pk}/delete/", {"post": "yes"}).status_code == 403
    )
    assert accounting_client.post(f"{CHANGELIST}{task.pk}/change/", {}).status_code == 403
    assert Task.objects.filter(pk=task.pk).exists()


def test_each_action_needs_its_own_permission(staff_without_permissions):
    user = User.objects.get(username="nobody")
    user.user_permissions.add(
        outbox_permission("view_task"),
        outbox_permission("cancel_task"),
    )

    assert offered_actions(staff_without_permissions) == {"cancel_tasks"}

    user.user_permissions.add(
        outbox_permission("rerun_task"),
        outbox_permission("pause_kind"),
    )
    user = User.objects.get(pk=user.pk)  # drop the permission cache
    staff_without_permissions.force_login(user)

    assert offered_actions(staff_without_permissions) == {
        "cancel_tasks",
        "rerun_succeeded",
        "pause_kinds",
        "resume_kinds",
    }


def test_attempts_are_listed_and_searched_by_task_id(admin_client):
    task = make_task()
    other = make_task()
    for owner in (task, other):
        Attempt.objects.create(
            task=owner, number=1, started_at=timezone.now(), duration_ms=1.0, outcome="retry"
        )

    found = admin_client.get("/admin/outbox/attempt/", {"q": str(task.pk)})
    nothing = admin_client.get("/admin/outbox/attempt/", {"q": "not-a-number"})

    assert [a.task_id for a in found.context["cl"].result_list] == [task.pk]
    assert nothing.status_code == 200
    assert list(nothing.context["cl"].result_list) == []


def test_staff_without_view_permission_sees_neither_tasks_nor_dashboard(
    staff_without_permissions,
):
    assert staff_without_permissions.get(CHANGELIST).status_code == 403
    assert staff_without_permissions.get(DASHBOARD).status_code == 403


# The dashboard ------------------------------------------------------------------------


def test_the_dashboard_is_linked_from_the_task_list(admin_client):
    response = admin_client.get(CHANGELIST)

    assert f'href="{DASHBOARD}"' in response.content.decode()


def test_the_dashboard_shows_counts_lag_and_an_inline_chart(admin_client, recording_handler):
    recording_handler("test.record")
    with transaction.atomic():
        enqueue("test.record", {"n": 1})
    Task.objects.update(available_at=timezone.now() - timedelta(minutes=7))
    make_task(TaskState.FAILED, kind="test.record")
    make_task(TaskState.SUCCEEDED, kind="other.kind")
    make_task(TaskState.SUCCEEDED, kind="other.kind")
    PausedKind.objects.create(kind="other.kind", paused_by="ops")

    response = admin_client.get(DASHBOARD)

    assert response.status_code == 200
    context = response.context
    states = TaskState.values
    assert context["counts"] == [
        ("other.kind", [0, 0, 2, 0, 0], 2),
        ("test.record", [1, 0, 0, 1, 0], 2),
    ]
    assert states == ["pending", "running", "succeeded", "failed", "canceled"]
    assert context["grand_total"] == 4
    assert context["oldest_due_age"].startswith("7m ")
    assert context["per_minute"] == pytest.approx(2 / 5)
    html = response.content.decode()
    assert "<svg" in html
    # The whole chart, and a row for the one kind that finished tasks (other.kind).
    assert html.count('<rect class="succeeded"') == 24 * 2
    assert html.count('<rect class="failed"') == 24 * 2
    assert "other.kind (since" in html
    # No asset from elsewhere: the chart is drawn server-side.
    assert not re.search(r'(src|href)="(https?:)?//', html)


def test_the_chart_scales_bars_to_the_busiest_hour():
    start = timezone.now().replace(minute=0, second=0, microsecond=0)
    buckets = [
        selectors.HourBucket(start=start, succeeded=10, failed=5),
        selectors.HourBucket(start=start + timedelta(hours=1), succeeded=0, failed=0),
    ]

    chart = HourChart.from_buckets(buckets)

    heights = [bar.height for bar in chart.bars]
    assert heights == [HourChart.PLOT_HEIGHT, HourChart.PLOT_HEIGHT / 2, 0, 0]
    assert chart.peak == 10
    assert all(bar.y + bar.height == chart.plot_height for bar in chart.bars)


def test_hourly_activity_counts_successes_and_failed_attempts_per_hour():
    now = timezone.now().replace(minute=30, second=0, microsecond=0)
    make_task(TaskState.SUCCEEDED, finished_at=now - timedelta(hours=2))
    make_task(TaskState.SUCCEEDED, finished_at=now - timedelta(hours=2, minutes=10))
    make_task(TaskState.SUCCEEDED, finished_at=now - timedelta(hours=30))  # out of the window
    task = make_task(TaskState.FAILED, finished_at=now)
    for number, outcome in enumerate(
        [AttemptOutcome.RETRY, AttemptOutcome.FAILED, AttemptOutcome.SUCCEEDED], start=1
    ):
        Attempt.objects.create(
            task=task,
            number=number,
            started_at=now - timedelta(minutes=1),
            duration_ms=1.0,
            outcome=outcome,
        )

    hours = selectors.hourly_activity(hours=24, now=now)

    assert len(hours) == 24
    assert hours[-1].start == now.replace(minute=0)
    assert [(h.succeeded, h.failed) for h in hours[-3:]] == [(2, 0), (0, 0), (0, 2)]
    assert sum(h.succeeded for h in hours) == 2


def test_oldest_due_age_ignores_tasks_scheduled_for_later():
    make_task(TaskState.PENDING, available_at=timezone.now() + timedelta(hours=1))

    assert selectors.oldest_due_task_age() is None

    make_task(TaskState.PENDING, available_at=timezone.now() - timedelta(minutes=3))
    age = selectors.oldest_due_task_age()

    assert age is not None
    # The database clock keeps milliseconds on SQLite: allow that much either way.
    assert timedelta(minutes=3, seconds=-1) <= age < timedelta(minutes=4)


def test_the_dashboard_search_box_sends_its_words_to_the_ticket_list(admin_client):
    html = admin_client.get(DASHBOARD).content.decode()

    assert (
        '<form class="search" id="search-tickets" method="get" action="/admin/tickets/ticket/">'
        in html
    )
    assert 'name="q"' in html


def test_the_dashboard_refreshes_itself_with_a_local_script_and_an_off_switch(admin_client):
    html = admin_client.get(DASHBOARD).content.decode()

    assert '<div id="dashboard-live" data-refresh="10">' in html
    assert '<script src="/static/outbox/dashboard.js" defer></script>' in html
    assert 'id="dashboard-refresh"' in html, "the switch"
    assert '<a href="?refresh=0">stop</a>' in html
    assert "://" not in "".join(re.findall(r"<script[^>]*>", html)), "no script from elsewhere"


def test_refresh_0_turns_the_refresh_off(admin_client):
    html = admin_client.get(DASHBOARD, {"refresh": "0"}).content.decode()

    assert "dashboard.js" not in html
    assert "data-refresh" not in html
    assert '<div id="dashboard-live">' in html, "the content is there, only still"


@pytest.mark.parametrize(("asked", "period"), [("30", 30), ("1", 2), ("soon", 10)])
def test_refresh_sets_the_period_within_bounds(admin_client, asked, period):
    html = admin_client.get(DASHBOARD, {"refresh": asked}).content.decode()

    assert f'data-refresh="{period}"' in html


def test_the_refresh_script_is_served_from_our_static_files():
    from django.contrib.staticfiles import finders

    path = finders.find("outbox/dashboard.js")
    assert path is not None
    script = Path(path).read_text(encoding="utf-8")
    assert "dashboard-live" in script
    assert "localStorage" in script, "the off switch sticks"


def _fail_once(task: Task, when: Any) -> None:
    Attempt.objects.create(
        task=task, number=1, started_at=when, duration_ms=1.0, outcome=AttemptOutcome.RETRY
    )


def test_hourly_activity_is_broken_down_by_kind_and_adds_up_to_the_totals():
    now = timezone.now().replace(minute=30, second=0, microsecond=0)
    make_task(TaskState.SUCCEEDED, kind="a.one", finished_at=now)
    make_task(TaskState.SUCCEEDED, kind="a.one", finished_at=now - timedelta(hours=1))
    _fail_once(make_task(TaskState.PENDING, kind="b.two"), now)

    by_kind = selectors.hourly_activity_by_kind(hours=24, now=now)

    assert list(by_kind) == ["a.one", "b.two"]
    assert [(h.succeeded, h.failed) for h in by_kind["a.one"][-2:]] == [(1, 0), (1, 0)]
    assert [(h.succeeded, h.failed) for h in by_kind["b.two"][-2:]] == [(0, 0), (0, 1)]
    totals = selectors.hourly_activity(hours=24, now=now)
    assert [(h.succeeded, h.failed) for h in totals[-2:]] == [(1, 0), (1, 1)]


def test_the_dashboard_draws_one_small_chart_per_kind(admin_client):
    make_task(TaskState.SUCCEEDED, kind="a.one")
    _fail_once(make_task(TaskState.PENDING, kind="b.two"), timezone.now())

    html = admin_client.get(DASHBOARD).content.decode()

    rows = re.findall(r'<tr><th scope="row">([^<]+)<br>', html)
    assert rows == ["a.one", "b.two"]
    assert 'aria-label="b.two: succeeded tasks and failed attempts per hour"' in html
    assert re.search(r"<title>b\.two, \d\d:00 UTC: 1 failed attempts</title>", html)


def test_the_dashboard_counts_successes_of_the_last_day_and_every_task_in_other_states(
    admin_client,
):
    two_days_ago = timezone.now() - timedelta(days=2)
    make_task(TaskState.SUCCEEDED, kind="a.kind")
    make_task(TaskState.SUCCEEDED, kind="a.kind", finished_at=two_days_ago)
    make_task(TaskState.FAILED, kind="a.kind", finished_at=two_days_ago)
    make_task(TaskState.SUCCEEDED, kind="old.kind", finished_at=two_days_ago)

    response = admin_client.get(DASHBOARD)

    # The old success is left out; the old failure is not; a kind with only old successes
    # has no row.
    assert response.context["counts"] == [("a.kind", [0, 0, 1, 1, 0], 2)]
    html = response.content.decode()
    assert '<th class="num">Succeeded (24 h)</th>' in html
    assert "Succeeded: in the last 24 hours" in html


def test_the_dashboard_reads_in_a_fixed_number_of_queries(admin_client, django_assert_num_queries):
    def load() -> None:
        assert admin_client.get(DASHBOARD).status_code == 200

    load()  # warm the session and the user
    for n in range(3):
        make_task(TaskState.SUCCEEDED, kind=f"k.{n}")
        _fail_once(make_task(TaskState.PENDING, kind=f"k.{n}"), timezone.now())
    with CaptureQueriesContext(connection) as few:
        load()
    for n in range(3, 12):
        make_task(TaskState.SUCCEEDED, kind=f"k.{n}")
        _fail_once(make_task(TaskState.PENDING, kind=f"k.{n}"), timezone.now())

    with django_assert_num_queries(len(few)):
        load()


def test_the_chart_truncates_hours_in_the_database_not_in_a_python_callback():
    # Django's TruncHour on SQLite calls a Python function for every row: 0.7 s of the
    # dashboard with a day of 140,000 tasks. PostgreSQL has date_trunc of its own.
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        selectors.hourly_activity_by_kind(hours=24)

    statements = " ".join(q["sql"] for q in captured.captured_queries)
    assert "django_datetime_trunc" not in statements
    expected = "DATE_TRUNC" if connection.vendor == "postgresql" else "SUBSTR("
    assert expected in statements


def test_the_list_filters_read_no_distinct_over_every_task_or_attempt(
    admin_client, recording_handler
):
    # At 1,000,000 tasks `SELECT DISTINCT kind` and `SELECT DISTINCT http_status` took about
    # 200 ms each per page load. The kinds come from the registry and the open or failed
    # tasks; the statuses from the last week's failed tries.
    recording_handler("k.registered")
    Task.objects.create(kind="k.failed", state=TaskState.FAILED)
    done = Task.objects.create(kind="k.done", state=TaskState.SUCCEEDED)
    Attempt.objects.create(
        task=done,
        number=1,
        started_at=timezone.now(),
        duration_ms=1.0,
        outcome=AttemptOutcome.RETRY,
        http_status=503,
    )

    with CaptureQueriesContext(connection) as captured:
        tasks_page = admin_client.get("/admin/outbox/task/").content.decode()
        attempts_page = admin_client.get("/admin/outbox/attempt/").content.decode()

    assert not [
        q["sql"]
        for q in captured.captured_queries
        if "DISTINCT" in q["sql"].upper() and "started_at" not in q["sql"]
    ]
    assert "?kind=k.registered" in tasks_page
    assert "?kind=k.failed" in tasks_page
    assert "?http_status__exact=503" in attempts_page
    listed = admin_client.get("/admin/outbox/attempt/", {"http_status__exact": "503"})
    assert [a.http_status for a in listed.context["cl"].result_list] == [503]


TRACEPARENT = f"00-{'4b' * 16}-00f067aa0ba902b7-01"


def test_the_task_page_links_its_trace_with_the_url_template(admin_client, settings):
    settings.TRACE_URL_TEMPLATE = "https://tempo.example/trace/{trace_id}?from=admin"
    task = make_task(trace_context={"traceparent": TRACEPARENT})

    page = admin_client.get(f"{CHANGELIST}{task.pk}/change/").content.decode()

    assert f'href="https://tempo.example/trace/{"4b" * 16}?from=admin"' in page


def test_a_retried_task_links_its_retry_and_its_first_trace(admin_client):
    origin = f"00-{'aa' * 16}-00f067aa0ba902b7-01"
    task = make_task(trace_context={"traceparent": TRACEPARENT, "origin": origin})

    page = admin_client.get(f"{CHANGELIST}{task.pk}/change/").content.decode()

    assert f'href="http://localhost:16686/trace/{"4b" * 16}"' in page
    assert f'first: <a href="http://localhost:16686/trace/{"aa" * 16}"' in page


def test_a_task_enqueued_without_tracing_shows_no_trace_link(admin_client):
    task = make_task()

    page = admin_client.get(f"{CHANGELIST}{task.pk}/change/").content.decode()

    assert "localhost:16686" not in page


# Writes in flight: Retry now keeps the settle, "Retry at once" skips it behind its own permission


def unanswered(state: str = TaskState.FAILED, *, kind: str = "test.record") -> Task:
    return waiting_out_a_write(make_task(state, kind=kind), tries=3)


def hms(moment: Any) -> str:
    return moment.astimezone(UTC).strftime("%H:%M:%S UTC")


def test_retry_now_keeps_the_settle_of_a_try_that_got_no_answer_and_says_until_when(admin_client):
    in_flight = unanswered()
    answered = make_task(TaskState.FAILED)

    response = post_action(admin_client, "retry_now", [in_flight, answered])

    retried = refreshed(in_flight)
    assert retried.state == TaskState.PENDING
    # Due at the end of the settle, not now: a try now could duplicate the write in flight.
    assert retried.available_at == in_flight.settle_until
    assert refreshed(answered).available_at <= timezone.now()
    assert messages_of(response) == [
        f"2 tasks retried with a fresh attempt budget: 1 due now, 1 due at "
        f"{hms(in_flight.settle_until)} (task {in_flight.pk}: a write of try 3 may still land)."
    ]


def test_the_forced_retry_is_neither_offered_nor_done_without_its_own_permission(
    staff_without_permissions,
):
    user = User.objects.get(username="nobody")
    grant(user, "outbox.view_task", "outbox.retry_task")
    task = unanswered()

    assert "force_retry" not in offered_actions(staff_without_permissions)
    response = post_action(staff_without_permissions, "force_retry", [task], post="yes")

    assert messages_of(response) == ["No action selected."]
    assert refreshed(task).state == TaskState.FAILED
    assert not LogEntry.objects.exists()

    staff_without_permissions.force_login(grant(user, "outbox.force_retry_task"))
    assert "force_retry" in offered_actions(staff_without_permissions)


def test_the_forced_retry_asks_first_naming_the_risk_then_makes_the_task_due_now_and_audits_it(
    admin_client, admin_user
):
    task = unanswered()

    asked = post_action(admin_client, "force_retry", [task])

    assert asked.status_code == 200
    page = asked.content.decode()
    assert "Risk of a second effect" in page
    assert f"task {task.pk} is due at {hms(task.settle_until)}: a write of try 3" in page
    assert refreshed(task).state == TaskState.FAILED  # nothing done before the answer
    assert not LogEntry.objects.exists()

    confirmed = post_action(admin_client, "force_retry", [task], post="yes")

    assert confirmed.status_code == 302
    forced = refreshed(task)
    assert forced.state == TaskState.PENDING
    assert forced.available_at <= timezone.now()
    assert forced.settle_until is None
    entry = LogEntry.objects.get()
    assert (entry.user_id, int(entry.object_id), entry.action_flag) == (
        admin_user.pk,
        task.pk,
        CHANGE,
    )
    assert entry.change_message.startswith("Retried at once from the admin, not waiting")
    assert f"task {task.pk} is due at" in entry.change_message


def test_the_forced_retry_names_the_kinds_own_risk_or_says_its_handler_does_not(admin_client):
    @outbox_handler("test.force_noted", force_retry="A try now sends the parcel twice.")
    def noted(task: Any) -> None:
        return None

    try:
        said = unanswered(kind="test.force_noted")
        unsaid = unanswered(kind="test.record")

        page = post_action(admin_client, "force_retry", [said, unsaid]).content.decode()
    finally:
        unregister("test.force_noted")

    assert "<strong>test.force_noted</strong>: A try now sends the parcel twice." in page
    assert f"<strong>test.record</strong>: {UNSAID_FORCE_RETRY}" in page
