"""The benchmark's figures: the footprint counts every process of the cluster, and only those;
the console figure (k) times both pages and reuses the table (f) filled; it starts on a
scratch database."""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
import time
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import connection

from devtools import benchmark
from devtools.benchmark import Options, Report, process_tree, pss_kib
from outbox.models import Task
from tickets.models import Ticket


def test_the_process_tree_holds_a_child_and_not_the_parent():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        tree = process_tree(os.getpid())

        assert tree[0] == os.getpid()
        assert child.pid in tree
        assert os.getppid() not in tree
        assert pss_kib(child.pid) > 0
    finally:
        child.kill()
        child.wait()


def test_the_benchmark_runs_on_its_scratch_database_when_the_default_one_is_not_migrated(
    tmp_path,
):
    # A fresh checkout: the default SQLite file has no tables. The benchmark migrates the
    # database it is pointed at and must not refuse to start because of the other one.
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = {
        **os.environ,
        "DEBUG": "1",
        "ENV_FILE": "",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'default.sqlite3'}",
    }
    done = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "outbox_benchmark",
            "--database-url",
            f"sqlite:///{tmp_path / 'scratch.sqlite3'}",
            "--only",
            "d",
            "--enqueue-tasks",
            "200",
            "--no-write",
        ],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 0, done.stderr
    assert "(d) enqueue, 100 tasks per transaction" in done.stdout


# (k) the console's server time ------------------------------------------------------------

SMALL = Options(big_table_rows=40, console_failing=10, console_requests=3)


def quiet_report() -> Report:
    return Report(vendor=connection.vendor, log=lambda line: None)


@pytest.mark.django_db(transaction=True)  # VACUUM cannot run in a transaction
def test_the_console_figure_times_both_pages_then_leaves_nothing_behind():
    report = quiet_report()

    benchmark.console_time(SMALL, report)

    pages = [
        "dashboard",
        "triage page",
        "/metrics scrape",
        "task list, kind filter shown",
        "attempts list, status filter shown",
        "task search by a ticket id",
        "task search by a customer email",
        "task search by a value only a payload holds",
    ]
    assert [figure for figure, _value, _note in report.lines] == [
        *(f"(k) {page} with 40 succeeded tasks, server time" for page in pages),
        "(k) outbox_status with 40 succeeded tasks",
    ]
    for _figure, value, _note in report.lines:
        assert re.fullmatch(r"p50 [\d,]+ ms, p99 [\d,]+ ms", value)
    for _figure, _value, note in report.lines[:-1]:
        assert note.startswith("(3 requests as a superuser")
        assert "50 tasks, 10 of them failed or retrying" in note
    assert not Task.objects.exists()
    assert not Ticket.objects.exists()
    assert not get_user_model().objects.filter(username="benchmark-console").exists()


@pytest.mark.django_db(transaction=True)
def test_the_console_figure_reads_the_finished_rows_f_left_instead_of_filling_again():
    benchmark.fill_finished(25)
    report = quiet_report()

    benchmark.console_time(SMALL, report, filled=True)

    assert report.lines[0][0] == "(k) dashboard with 25 succeeded tasks, server time"


def test_a_run_of_f_and_k_keeps_f_s_table_for_k(monkeypatch):
    calls: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(benchmark, "big_table", lambda *a, **kw: calls.append(("f", kw)))
    monkeypatch.setattr(benchmark, "console_time", lambda *a, **kw: calls.append(("k", kw)))

    benchmark.run(SMALL, quiet_report(), only={"f", "k"})
    assert calls == [("f", {"keep": True}), ("k", {"filled": True})]

    calls.clear()
    benchmark.run(SMALL, quiet_report(), only={"k"})
    assert calls == [("k", {"filled": False})]

    calls.clear()
    benchmark.run(SMALL, quiet_report(), only={"f"})
    assert calls == [("f", {"keep": False})]


def test_the_recorded_command_names_no_password_and_no_path_of_this_machine():
    from django.conf import settings

    from devtools.management.commands.outbox_benchmark import _redacted

    local = f"sqlite:///{settings.BASE_DIR}/var/bench.sqlite3"
    remote = "postgres://bench:s3cret@db.example:5432/bench"

    assert _redacted({}, local) == "sqlite:///$PWD/var/bench.sqlite3"
    assert _redacted({"PASSWORD": "s3cret"}, remote) == "postgres://bench:***@db.example:5432/bench"


# (o) tracing off and on ---------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)  # VACUUM cannot run in a transaction
def test_the_tracing_figure_encodes_a_span_per_try_then_leaves_tracing_off(settings):
    from opentelemetry import trace

    from outbox import tracing

    report = quiet_report()
    middleware = list(settings.MIDDLEWARE)

    benchmark.tracing_cost(Options(drain_tasks=100, webhook_requests=2, threads=4), report)

    figures = {figure: note for figure, _value, note in report.lines}
    # 100 tries, one send span and one cause per 100 tasks.
    assert "102 spans encoded" in figures["(o) the same, tracing on"]
    assert "(o) webhook with 100 tickets, tracing on, server time" in figures
    assert tracing.tracer() is None
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    assert list(settings.MIDDLEWARE) == middleware
    assert not Task.objects.exists()


def test_the_cpu_budget_caps_the_intake_by_what_its_parts_cost(monkeypatch):
    # The intake ratio of (p) is bound by what a request costs in all; what other work on the
    # machine spent is shown apart, not counted as the request's.
    mixed_load = importlib.import_module("devtools.benchmark.mixed_load")

    monkeypatch.setattr(mixed_load.os, "cpu_count", lambda: 2)
    budget = mixed_load.Budget({})
    budget.spent = {"web": 1.0, "cluster": 2.0, "locust": 1.0, "machine": 5.0}
    budget.others = 0.25

    shown = budget.per_request(1000)

    assert shown.startswith("4.00 ms of CPU a request (web 1.00, cluster 2.00, locust 1.00);")
    assert "the rest of the machine 1.00 more (other databases on this server 0.25 of it)" in shown
    assert shown.endswith("2 CPUs at 4.00 ms: at most 500 req/s")


@pytest.mark.postgres
@pytest.mark.django_db
def test_postgresql_work_is_counted_for_its_own_database_only():
    # The server is shared (other databases, other tests): only this database's backends are
    # the benchmark's PostgreSQL part.
    mixed_load = importlib.import_module("devtools.benchmark.mixed_load")
    ours = mixed_load.PostgresSampler(connection.settings_dict["NAME"])
    elsewhere = mixed_load.PostgresSampler("no_such_database")
    ours.start()
    elsewhere.start()
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM generate_series(1, 5000000)")
    mine, theirs = ours.stop(), elsewhere.stop()

    assert mine["ours"] >= 0.1
    assert theirs["ours"] == 0
    assert theirs["others"] >= 0.1


def test_the_cpu_budget_reads_this_process_tree_and_the_machine():
    mixed_load = importlib.import_module("devtools.benchmark.mixed_load")

    budget = mixed_load.Budget({"this process": os.getpid()})
    budget.start()
    deadline = time.process_time() + 0.2
    while time.process_time() < deadline:
        pass
    budget.stop()

    assert budget.spent["this process"] >= 0.15
    assert budget.spent["machine"] >= budget.spent["this process"] - 0.05
