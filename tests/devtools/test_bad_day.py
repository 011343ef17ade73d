"""The bad day's ideal over recorded tries, its section of the benchmarks file, and a smoke run
of `manage.py bad_day_benchmark` with real processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from devtools.bad_day import SCENARIOS, Result, TryRecord, ideal_seconds
from devtools.management.commands.bad_day_benchmark import write_section

ROOT = Path(__file__).resolve().parents[2]


def test_answered_failures_add_their_backoff_ceilings():
    tries = [TryRecord(1, "retry", "answered"), TryRecord(2, "retry", "answered")]

    # min(cap, base * 2**(n - 1)): 1 s after the first try, 2 s after the second.
    assert ideal_seconds(tries, base=1.0, cap=600.0, settle=60.0) == 3.0


def test_the_ceiling_stops_at_the_cap():
    tries = [TryRecord(n, "retry", "answered") for n in (1, 2, 3, 4)]

    assert ideal_seconds(tries, base=1.0, cap=3.0) == 1 + 2 + 3 + 3


def test_a_try_with_no_answer_waits_the_later_of_settle_and_backoff_not_their_sum():
    settles = [TryRecord(1, "retry", "no_answer")]
    backoff_wins = [TryRecord(6, "retry", "no_answer")]

    assert ideal_seconds(settles, base=1.0, cap=600.0, settle=10.0) == 10.0
    assert ideal_seconds(backoff_wins, base=1.0, cap=600.0, settle=10.0) == 32.0
    # A kind with no settle waits the backoff alone.
    assert ideal_seconds(settles, base=1.0, cap=600.0, settle=None) == 1.0


def test_a_lost_lease_waits_the_lease_then_the_settle_when_a_call_may_be_in_flight():
    vanished = [TryRecord(1, "lease_lost", "no_answer")]
    not_sent = [TryRecord(1, "lease_lost", "not_sent")]

    assert ideal_seconds(vanished, lease=12.0, settle=10.0) == 22.0
    assert ideal_seconds(not_sent, lease=12.0, settle=10.0) == 12.0


def test_successes_and_permanent_failures_force_no_wait():
    tries = [TryRecord(1, "succeeded", ""), TryRecord(2, "failed", "answered")]

    assert ideal_seconds(tries) == 0.0
    assert ideal_seconds([]) == 0.0


def test_the_section_of_one_database_leaves_the_others_alone(tmp_path: Path):
    path = tmp_path / "BENCHMARKS.md"
    path.write_text(
        "# Benchmarks\n\n## A bad day\n\n<!-- bad-day:end -->\n\n"
        "<!-- postgresql:start -->\nPG FIGURES\n<!-- postgresql:end -->\n"
    )
    result = Result(SCENARIOS["a"], "sqlite", 200, seconds=12.3, ideal=30.0)

    write_section(path, "sqlite", [result], "python manage.py bad_day_benchmark", "a machine")
    write_section(path, "postgresql", [result], "python manage.py bad_day_benchmark", "a machine")
    result.seconds = 4.5
    write_section(path, "sqlite", [result], "python manage.py bad_day_benchmark", "a machine")

    text = path.read_text()
    assert "PG FIGURES" in text
    assert text.count("<!-- bad-day-sqlite:start -->") == 1
    assert "| 4.5 s | 30.0 s | 30 s: yes |" in text
    assert "12.3 s" in text  # the PostgreSQL run's row, untouched by the second SQLite run
    assert text.index("bad-day-postgresql:end") < text.index("<!-- bad-day:end -->")


@pytest.mark.e2e
def test_the_command_runs_a_tiny_scenario_a_on_sqlite(tmp_path: Path):
    env = {
        **os.environ,
        "DEBUG": "1",
        "ENV_FILE": "",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'bad_day.sqlite3'}",
    }
    env.pop("TEST_DATABASE_NAME", None)
    args = ["--only", "a", "--tickets", "5", "--no-write", "--deadline", "60"]
    result = subprocess.run(
        [sys.executable, "manage.py", "bad_day_benchmark", *args, "--logs", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "(a) sqlite, 5 tickets:" in result.stdout
    assert "every effect exactly once" in result.stdout
