from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from io import StringIO
from typing import Any
from unittest import mock

import pytest
from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry
from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import transaction
from django.utils import timezone

from outbox.console import audit, progress
from outbox.console.management.commands import replay_tasks
from outbox.console.selectors import tasks_matching
from outbox.models import Attempt, PausedKind, Queue, Task, TaskState
from outbox.services import enqueue, tasks_retry
from tests.conftest import waiting_out_a_write

pytestmark = pytest.mark.django_db


def make_task(state: str = TaskState.FAILED, **fields: Any) -> Task:
    fields.setdefault("kind", "test.record")
    if state in (TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELED):
        fields.setdefault("finished_at", timezone.now())
    if state == TaskState.FAILED:
        fields.setdefault("attempts", 25)
        fields.setdefault("last_error", "HTTP 500: upstream broke\nsecond line")
    return Task.objects.create(state=state, **fields)


def run(name: str, *args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command(name, *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def returncode_of(name: str, *args: str) -> int:
    with pytest.raises(CommandError) as raised:
        run(name, *args)
    return raised.value.returncode


def states(*tasks: Task) -> list[str]:
    return [Task.objects.get(pk=t.pk).state for t in tasks]


def argparse_exit_code(command: str, *argv: str) -> int:
    """What `manage.py <command> <argv>` exits with when argparse rejects the arguments."""
    from django.core.management import load_command_class

    cmd = load_command_class("outbox.console", command)
    # As run_from_argv does: argparse then exits 2 instead of raising CommandError.
    cmd._called_from_command_line = True  # type: ignore[attr-defined]
    parser = cmd.create_parser("manage.py", command)
    with pytest.raises(SystemExit) as exited:
        parser.parse_args(list(argv))
    return int(exited.value.code or 0)


# replay_tasks --------------------------------------------------------------------------


def test_replay_makes_failed_tasks_due_with_a_fresh_budget_and_the_same_key(recording_handler):
    recording_handler("test.record")
    with transaction.atomic():
        enqueued = enqueue("test.record", {"n": 1}, idempotency_key="idem-1")
    assert enqueued is not None
    Task.objects.filter(pk=enqueued.id).update(
        state=TaskState.FAILED, attempts=25, finished_at=timezone.now()
    )
    succeeded = make_task(TaskState.SUCCEEDED)

    out, _ = run("replay_tasks", "--yes")

    task = Task.objects.get(pk=enqueued.id)
    assert (task.state, task.attempts, task.finished_at) == (TaskState.PENDING, 25, None)
    assert task.max_attempts == 25 + 25
    assert task.idempotency_key == "idem-1"
    assert task.available_at <= timezone.now()
    assert states(succeeded) == [TaskState.SUCCEEDED]
    assert "Matched: 1. Replayed: 1. Skipped (state changed meanwhile): 0." in out


def test_replay_exits_1_when_nothing_matches():
    make_task(TaskState.SUCCEEDED)

    assert returncode_of("replay_tasks", "--yes") == 1


@pytest.mark.parametrize(
    "args",
    [
        ["--since", "yesterday"],
        ["--until", "2024-13-45"],
        ["--since", "2024-05-02", "--until", "2024-05-01"],
    ],
)
def test_replay_exits_2_on_bad_values(args):
    make_task()

    assert returncode_of("replay_tasks", "--yes", *args) == 2
    assert states(*Task.objects.all()) == [TaskState.FAILED]


@pytest.mark.parametrize(
    "argv", [["--state", "running"], ["--state", "bogus"], ["--task-id", "x"], ["--queue", "q"]]
)
def test_replay_exits_2_on_arguments_argparse_refuses(argv):
    assert argparse_exit_code("replay_tasks", *argv) == 2


def test_a_dry_run_lists_what_would_be_replayed_and_changes_nothing():
    failed = make_task(TaskState.FAILED, kind="a.kind")
    traceback_error = make_task(
        TaskState.FAILED,
        kind="b.kind",
        last_error='Traceback (most recent call last):\n  File "x.py"\nKeyError: ticket_id',
    )

    out, _ = run("replay_tasks", "--dry-run")

    assert states(failed, traceback_error) == [TaskState.FAILED, TaskState.FAILED]
    lines = out.splitlines()
    assert lines[0].split() == ["ID", "KIND", "STATE", "ATTEMPTS", "LAST", "ERROR"]
    assert lines[1].split()[:4] == [str(failed.pk), "a.kind", "failed", "25/25"]
    assert lines[1].endswith("HTTP 500: upstream broke")
    assert lines[2].endswith("KeyError: ticket_id")
    assert lines[-1] == "Dry run: 2 failed task(s) would be replayed."


def test_replay_asks_first_and_changes_nothing_when_declined():
    task = make_task()

    with (
        mock.patch("builtins.input", return_value="n") as asked,
        pytest.raises(CommandError) as raised,
    ):
        run("replay_tasks")

    asked.assert_called_once_with("Replay 1 failed task(s)? [y/N] ")
    assert raised.value.returncode == 1
    assert states(task) == [TaskState.FAILED]


def test_replay_goes_ahead_when_the_prompt_is_answered_yes():
    task = make_task()

    with mock.patch("builtins.input", return_value="y"):
        run("replay_tasks")

    assert states(task) == [TaskState.PENDING]


def test_replay_treats_a_closed_stdin_as_no():
    task = make_task()

    with mock.patch("builtins.input", side_effect=EOFError), pytest.raises(CommandError):
        run("replay_tasks")

    assert states(task) == [TaskState.FAILED]


def test_replay_narrows_by_kind_queue_payload_value_and_task_id():
    a = make_task(kind="a.kind", payload={"ticket_id": "t-1"})
    b = make_task(kind="b.kind", payload={"ticket_id": "t-2"}, queue=Queue.CRITICAL)
    c = make_task(kind="b.kind", payload={"ticket_id": "t-3"})

    run("replay_tasks", "--yes", "--kind", "a.kind")
    assert states(a, b, c) == [TaskState.PENDING, TaskState.FAILED, TaskState.FAILED]

    run("replay_tasks", "--yes", "--queue", "critical")
    assert states(b, c) == [TaskState.PENDING, TaskState.FAILED]

    d = make_task(payload={"ticket_id": "t-4"})
    run("replay_tasks", "--yes", "--payload", "ticket_id=t-3", "--payload", "ticket_id=t-404")
    assert states(c, d) == [TaskState.PENDING, TaskState.FAILED]

    run("replay_tasks", "--yes", "--task-id", str(d.pk))
    assert states(d) == [TaskState.PENDING]


def test_replay_by_payload_needs_every_key_to_match():
    a = make_task(payload={"order": "o-1", "ticket_id": "t-1"})
    b = make_task(payload={"order": "o-1", "ticket_id": "t-2"})

    run("replay_tasks", "--yes", "--payload", "order=o-1", "--payload", "ticket_id=t-2")

    assert states(a, b) == [TaskState.FAILED, TaskState.PENDING]


@pytest.mark.parametrize("bad", ["ticket_id", "=t-1", "a__b=1", "contains=x", "a b=1"])
def test_replay_refuses_a_payload_filter_that_is_not_a_plain_key_and_value(bad):
    make_task(payload={"ticket_id": "t-1"})

    with pytest.raises(CommandError) as refused:
        run("replay_tasks", "--yes", "--payload", bad)

    assert refused.value.returncode == 2


def test_replay_narrows_by_creation_time():
    def at(day: str) -> datetime:
        return timezone.make_aware(datetime.fromisoformat(day))

    april = make_task(created_at=at("2024-04-30T23:00"))
    may_1st = make_task(created_at=at("2024-05-01T18:00"))
    may_2nd = make_task(created_at=at("2024-05-02T00:00"))

    run("replay_tasks", "--yes", "--since", "2024-05-01", "--until", "2024-05-01")
    assert states(april, may_1st, may_2nd) == [
        TaskState.FAILED,
        TaskState.PENDING,
        TaskState.FAILED,
    ]

    run("replay_tasks", "--yes", "--until", "2024-05-01T00:00:00+00:00")
    assert states(april, may_2nd) == [TaskState.PENDING, TaskState.FAILED]


def test_replay_of_succeeded_tasks_runs_them_again():
    done = make_task(TaskState.SUCCEEDED)
    failed = make_task(TaskState.FAILED)

    run("replay_tasks", "--yes", "--state", "succeeded")

    assert states(done, failed) == [TaskState.PENDING, TaskState.FAILED]


class Terminal(StringIO):
    def isatty(self) -> bool:
        return True


def test_a_large_replay_on_a_terminal_shows_progress_in_chunks():
    Task.objects.bulk_create(
        [Task(kind="test.record", state=TaskState.FAILED, attempts=25) for _ in range(1200)]
    )
    out = Terminal()

    call_command("replay_tasks", "--yes", stdout=out)

    frames = out.getvalue().split("\r")[1:]
    assert [frame.split()[1] for frame in frames] == ["500/1200", "1000/1200", "1200/1200"]
    assert frames[-1].startswith("[" + "#" * progress.WIDTH + "] 1200/1200\n")
    assert Task.objects.filter(state=TaskState.PENDING).count() == 1200


def test_a_large_replay_into_a_log_draws_no_progress_bar():
    Task.objects.bulk_create(
        [Task(kind="test.record", state=TaskState.FAILED, attempts=25) for _ in range(1200)]
    )

    out, _ = run("replay_tasks", "--yes")

    assert "\r" not in out
    assert "[#" not in out
    assert Task.objects.filter(state=TaskState.PENDING).count() == 1200


def test_tasks_another_replay_took_meanwhile_are_skipped_not_counted_twice():
    first, second = make_task(), make_task()
    real_retry = tasks_retry

    def another_operator_got_there_first(**kwargs: Any) -> int:
        # Between our snapshot and our UPDATE, someone else replays `first`.
        tasks_retry(tasks=Task.objects.filter(pk=first.pk))
        return real_retry(**kwargs)

    with (
        mock.patch.object(replay_tasks, "tasks_retry", another_operator_got_there_first),
        pytest.raises(CommandError) as raised,
    ):
        out = StringIO()
        call_command("replay_tasks", "--yes", stdout=out, stderr=StringIO())

    assert raised.value.returncode == 3
    assert "Matched: 2. Replayed: 1. Skipped (state changed meanwhile): 1." in out.getvalue()
    assert states(first, second) == [TaskState.PENDING, TaskState.PENDING]


def test_two_replays_of_the_same_tasks_requeue_each_task_once():
    make_task()
    make_task()
    failed = tasks_matching(states=[TaskState.FAILED])

    assert tasks_retry(tasks=failed) == 2
    assert tasks_retry(tasks=failed) == 0


# outbox_status -------------------------------------------------------------------------


def seed_status() -> None:
    make_task(TaskState.PENDING, kind="a.kind", available_at=timezone.now() - timedelta(minutes=2))
    make_task(TaskState.FAILED, kind="a.kind")
    for minutes_ago in (1, 2, 3, 4, 9, 30):
        make_task(
            TaskState.SUCCEEDED,
            kind="b.kind",
            finished_at=timezone.now() - timedelta(minutes=minutes_ago),
        )
    PausedKind.objects.create(kind="b.kind")


def test_status_prints_counts_lag_and_throughput():
    seed_status()

    out, _ = run("outbox_status")

    lines = out.splitlines()
    assert lines[0].split() == [
        "KIND",
        "PENDING",
        "RUNNING",
        "SUCCEEDED",
        "FAILED",
        "CANCELED",
        "TOTAL",
    ]
    assert lines[1].split() == ["a.kind", "1", "0", "0", "1", "0", "2"]
    assert lines[2].split() == ["b.kind", "0", "0", "6", "0", "0", "6"]
    assert lines[3].split() == ["all", "kinds", "1", "0", "6", "1", "0", "8"]
    assert "Oldest due task has waited: 2m " in out
    assert "Throughput (last 5 min): 0.8 succeeded tasks/min" in out
    assert "Paused kinds: b.kind" in out


def test_status_as_json_for_scripts():
    seed_status()

    out, _ = run("outbox_status", "--json")

    document = json.loads(out)
    assert document["counts"]["a.kind"] == {
        "pending": 1,
        "running": 0,
        "succeeded": 0,
        "failed": 1,
        "canceled": 0,
    }
    assert document["totals"]["succeeded"] == 6
    assert 120 <= document["oldest_due_age_seconds"] < 180
    assert document["succeeded_per_minute"] == 0.8
    assert document["throughput_window_minutes"] == 5
    assert document["paused_kinds"] == ["b.kind"]


def test_status_on_an_empty_outbox():
    out, _ = run("outbox_status", "--json")

    document = json.loads(out)
    assert document["counts"] == {}
    assert document["oldest_due_age_seconds"] is None
    assert document["succeeded_per_minute"] == 0


# prune_outbox --------------------------------------------------------------------------


def test_prune_deletes_finished_tasks_older_than_the_window_with_their_attempts():
    old = make_task(TaskState.SUCCEEDED, finished_at=timezone.now() - timedelta(days=40))
    Attempt.objects.create(
        task=old, number=1, started_at=timezone.now(), duration_ms=1, outcome="succeeded"
    )
    old_failed = make_task(TaskState.FAILED, finished_at=timezone.now() - timedelta(hours=13))
    recent = make_task(TaskState.SUCCEEDED, finished_at=timezone.now() - timedelta(hours=1))
    waiting = make_task(TaskState.PENDING, created_at=timezone.now() - timedelta(days=90))

    out, _ = run("prune_outbox", "--older-than", "12h")

    assert set(Task.objects.values_list("pk", flat=True)) == {recent.pk, waiting.pk}
    assert not Attempt.objects.exists()
    assert "Deleted 2 task(s)" in out
    assert old_failed.pk not in Task.objects.values_list("pk", flat=True)


def test_prune_defaults_to_the_retention_setting():
    make_task(TaskState.SUCCEEDED, finished_at=timezone.now() - timedelta(days=31))
    kept = make_task(TaskState.SUCCEEDED, finished_at=timezone.now() - timedelta(days=29))

    run("prune_outbox")

    assert list(Task.objects.values_list("pk", flat=True)) == [kept.pk]


def test_a_prune_dry_run_counts_and_deletes_nothing():
    make_task(TaskState.SUCCEEDED, finished_at=timezone.now() - timedelta(minutes=120))
    make_task(TaskState.CANCELED, finished_at=timezone.now() - timedelta(minutes=100))
    make_task(TaskState.SUCCEEDED, finished_at=timezone.now() - timedelta(minutes=60))

    out, _ = run("prune_outbox", "--older-than", "90m", "--dry-run")

    assert Task.objects.count() == 3
    assert out.startswith("Dry run: 2 task(s) finished more than 90m ago would be deleted.")


@pytest.mark.parametrize("value", ["30", "0d", "-1d", "1y", "d30", "twelve hours"])
def test_prune_exits_2_on_a_bad_duration(value):
    make_task(TaskState.SUCCEEDED, finished_at=timezone.now() - timedelta(days=400))

    assert returncode_of("prune_outbox", f"--older-than={value}") == 2
    assert Task.objects.count() == 1


# outbox_pause / outbox_resume ----------------------------------------------------------


def test_pause_and_resume_a_registered_kind(recording_handler):
    recording_handler("test.record")

    out, err = run("outbox_pause", "test.record", "--by", "ops on call")

    assert err == ""
    assert "Paused test.record." in out
    assert list(PausedKind.objects.values_list("kind", "paused_by")) == [
        ("test.record", "ops on call")
    ]
    again, _ = run("outbox_pause", "test.record")
    assert "test.record was already paused." in again

    out, err = run("outbox_resume", "test.record")

    assert err == ""
    assert "Resumed test.record." in out
    assert not PausedKind.objects.exists()
    again, _ = run("outbox_resume", "test.record")
    assert "test.record was not paused." in again


def test_pausing_an_unknown_kind_warns_and_still_pauses(recording_handler):
    recording_handler("test.record")

    _, err = run("outbox_pause", "test.recrod")

    assert "no handler is registered for 'test.recrod'" in err
    assert "test.record" in err
    assert "tickets.issue_receipt" in err
    assert PausedKind.objects.filter(kind="test.recrod").exists()
    assert PausedKind.objects.get().paused_by.startswith("manage.py")


def test_pause_needs_a_kind():
    assert argparse_exit_code("outbox_pause") == 2


def test_replay_of_a_mistyped_kind_says_only_that_nothing_matches():
    make_task()

    with pytest.raises(CommandError) as caught:
        call_command("replay_tasks", "--yes", "--kind", "nonsense")

    assert caught.value.returncode == 2
    assert "Unknown kind 'nonsense'; the known kinds are:" in str(caught.value)
    assert "tickets.issue_receipt" in str(caught.value)
    assert states(*Task.objects.all()) == [TaskState.FAILED]


def test_replay_applies_the_failed_filter_without_saying_so():
    make_task(TaskState.SUCCEEDED)

    stderr = StringIO()
    with pytest.raises(CommandError, match="No failed task matches these filters"):
        call_command("replay_tasks", "--yes", stderr=stderr)
    assert "Only failed tasks (the default; --state chooses another)." in stderr.getvalue()


# The audit trail of the commands --------------------------------------------------------


def entries_for(obj: Any) -> list[LogEntry]:
    return list(
        LogEntry.objects.filter(
            content_type=ContentType.objects.get_for_model(obj), object_id=str(obj.pk)
        ).select_related("user")
    )


def test_a_replay_leaves_the_admins_history_entry_on_each_task_it_changed():
    replayed, left = make_task(), make_task(TaskState.SUCCEEDED)
    get_user_model().objects.create_user(username="alice")

    run("replay_tasks", "--yes", "--by", "alice", "--reason", "receipts API is back")

    [entry] = entries_for(replayed)
    assert entry.user.username == "alice"
    assert entry.action_flag == CHANGE
    assert entry.change_message == "Replayed by replay_tasks (by alice): receipts API is back"
    assert entries_for(left) == []


def test_a_command_run_by_someone_without_a_django_user_is_logged_against_the_cli_user():
    task = make_task()

    with mock.patch("getpass.getuser", return_value="deploy"):
        run("replay_tasks", "--yes")

    [entry] = entries_for(task)
    assert entry.user.username == audit.CLI_USERNAME
    assert not entry.user.is_active
    assert not entry.user.has_usable_password()
    assert "(by deploy)" in entry.change_message


def test_pause_and_resume_log_against_the_paused_kind(recording_handler):
    recording_handler("test.record")

    run("outbox_pause", "test.record", "--by", "bob", "--reason", "API migration")
    run("outbox_resume", "test.record", "--by", "bob")

    entries = LogEntry.objects.filter(
        content_type=ContentType.objects.get_for_model(PausedKind), object_id="test.record"
    ).order_by("id")
    assert [(e.action_flag, e.change_message) for e in entries] == [
        (ADDITION, "Paused by outbox_pause (by bob): API migration"),
        (DELETION, "Resumed by outbox_resume (by bob)."),
    ]


def test_a_prune_writes_one_summary_entry_not_one_per_task():
    for _ in range(3):
        make_task(TaskState.SUCCEEDED, finished_at=timezone.now() - timedelta(days=40))

    run("prune_outbox", "--by", "carol", "--reason", "disk")

    [entry] = LogEntry.objects.all()
    assert entry.action_flag == DELETION
    assert entry.object_repr == "3 finished task(s)"
    assert entry.change_message.startswith("Deleted 3 task(s) finished more than 30d ago")
    assert entry.change_message.endswith("(by carol): disk")


def test_a_dry_run_leaves_no_audit_entry():
    make_task()

    run("replay_tasks", "--dry-run")
    run("prune_outbox", "--dry-run")

    assert not LogEntry.objects.exists()


def test_the_task_history_page_shows_command_entries(admin_client):
    task = make_task()
    run("replay_tasks", "--yes", "--by", "alice", "--reason", "back up")

    response = admin_client.get(f"/admin/outbox/task/{task.pk}/history/")

    assert "Replayed by replay_tasks (by alice): back up" in response.content.decode()


def test_qcluster_queues_the_first_relay_pass_before_its_pusher_starts(monkeypatch):
    # Queued later (from the workers' post_spawn hook), the pass waited for the pusher's next
    # poll: a tenth of a second of every start with a backlog waiting.
    from django_q.models import OrmQ

    from outbox.management.commands import qcluster

    queued_at_start: list[int] = []

    class Cluster:
        def start(self) -> None:
            queued_at_start.append(OrmQ.objects.count())

        def stop(self) -> None:
            pass

    monkeypatch.setattr(qcluster, "Cluster", Cluster)
    monkeypatch.setattr(qcluster.shutdown, "install", lambda **_: None)
    monkeypatch.setattr(qcluster.preflight, "run", lambda: None)

    call_command("qcluster", run_once=True)

    assert queued_at_start == [1]
    [queued] = OrmQ.objects.all()
    assert queued.func() == "outbox.runtime.passes.run_pass"


def test_qcluster_freezes_what_it_loaded_before_forking_so_workers_share_it(monkeypatch):
    # Unfrozen, a worker's garbage collector walked the objects it shares with its parent and
    # copied their pages: about 25 MiB more per worker once it had run a pass.
    import gc

    from outbox.management.commands import qcluster

    frozen_at_start: list[int] = []

    class Cluster:
        def start(self) -> None:
            frozen_at_start.append(gc.get_freeze_count())

        def stop(self) -> None:
            pass

    monkeypatch.setattr(qcluster, "Cluster", Cluster)
    monkeypatch.setattr(qcluster.shutdown, "install", lambda **_: None)
    monkeypatch.setattr(qcluster.preflight, "run", lambda: None)
    try:
        call_command("qcluster", run_once=True)
    finally:
        gc.unfreeze()

    assert frozen_at_start[0] > 10_000, "Django and the apps are frozen"


def test_qcluster_still_refuses_a_timing_that_would_run_a_pass_twice(monkeypatch, settings):
    # The cluster runs its checks by tag: an untagged relay check would silently not run.
    from django.core.management.base import SystemCheckError

    from outbox.management.commands import qcluster

    started: list[bool] = []

    class Cluster:
        def start(self) -> None:
            started.append(True)

        def stop(self) -> None:
            pass

    monkeypatch.setattr(qcluster, "Cluster", Cluster)
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "timeout": 90, "retry": 90}

    with pytest.raises(SystemCheckError, match=r"outbox\.E002"):
        call_command("qcluster", run_once=True, skip_checks=False)
    assert started == []


def test_qcluster_checks_import_neither_the_urlconf_nor_the_template_libraries():
    # Importing the URLconf (every view, the API and its schema) and every template tag
    # library took about 0.2 s of each cluster start, for pages a cluster never serves.
    script = (
        "import sys, django; django.setup()\n"
        "from django.conf import settings\n"
        "from django.core import checks\n"
        "from outbox.management.commands.qcluster import Command\n"
        "checks.run_checks(**Command().get_check_kwargs({}))\n"
        "library = 'rest_framework.templatetags.rest_framework'\n"
        "print(settings.ROOT_URLCONF in sys.modules, library in sys.modules)\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "project.settings", "DEBUG": "1"}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    assert done.stdout.split() == ["False", "False"], done.stderr


def test_replay_keeps_the_settle_of_a_try_that_got_no_answer_and_says_how_many_wait():
    in_flight = waiting_out_a_write(make_task(TaskState.PENDING, attempts=1), tries=1)
    answered = make_task(TaskState.PENDING, attempts=1)

    out, _ = run("replay_tasks", "--state", "pending", "--yes")

    assert Task.objects.get(pk=in_flight.pk).available_at == in_flight.settle_until
    assert Task.objects.get(pk=answered.pk).available_at <= timezone.now()
    due = in_flight.settle_until.astimezone(UTC).strftime("%H:%M:%S UTC")
    assert (
        f"2 tasks replayed with a fresh attempt budget: 1 due now, 1 due at {due} "
        f"(task {in_flight.pk}: a write of try 1 may still land)." in out
    )
