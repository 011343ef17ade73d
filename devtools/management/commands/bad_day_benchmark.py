"""Time a bad day's convergence with real processes, and write it to docs/BENCHMARKS.md."""

from __future__ import annotations

import logging
import os
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection

from devtools.bad_day import SCENARIOS, Result, run_scenario
from devtools.benchmark import machine
from devtools.management.commands.outbox_benchmark import _shown_arguments
from outbox.models import Task

TITLES = {"postgresql": "PostgreSQL", "sqlite": "SQLite"}


class Command(BaseCommand):
    help = (
        "A bad day, timed: (a) 200 tickets against 20% 500 + 10% 500-after-write, (b) 40 "
        "tickets against 30% 500 with garbage bodies, (c) PostgreSQL only: 1,000 tickets, two "
        "clusters SIGKILLed, PostgreSQL restarted, the gateway down 8 s. Real processes with "
        "production defaults; prints the time to converge and the ideal, writes them to "
        "docs/BENCHMARKS.md. Exit 1 when an effect is missing, doubled or wrong. It WIPES the "
        "outbox, tickets and django-q2 task tables of the database: use a scratch one."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--database-url",
            help="Run against this database instead of DATABASE_URL (e.g. "
            "postgres://postgres@127.0.0.1:5432/bad_day or sqlite:///var/bad_day.sqlite3).",
        )
        parser.add_argument("--only", default="", help="Comma-separated scenarios (a, b, c).")
        parser.add_argument("--wipe", action="store_true", help="Wipe a database holding tasks.")
        parser.add_argument(
            "--tickets", type=int, help="Tickets per scenario instead of its own (a smoke run)."
        )
        parser.add_argument(
            "--deadline", type=float, default=240.0, help="Seconds a scenario may take (240)."
        )
        parser.add_argument(
            "--no-postgres-restart",
            action="store_true",
            help="(c) without its PostgreSQL restart. The restart is of the whole local server "
            "(pg_ctlcluster), every database on it included.",
        )
        parser.add_argument(
            "--logs",
            default=str(Path(settings.BASE_DIR) / "var" / "bad-day"),
            help="Directory for the processes' logs (one folder per scenario).",
        )
        parser.add_argument(
            "--output",
            default=str(Path(settings.BASE_DIR) / "docs" / "BENCHMARKS.md"),
            help="Markdown file whose bad-day section for this database is replaced.",
        )
        parser.add_argument("--no-write", action="store_true", help="Print only.")

    def handle(self, *args: Any, **options: Any) -> None:
        url = options["database_url"]
        if url and url != os.environ.get("DATABASE_URL"):
            # Settings are read at start-up: run again with the database in the environment.
            argv = [sys.executable, sys.argv[0], *sys.argv[1:]]
            os.execve(sys.executable, argv, {**os.environ, "DATABASE_URL": url})
        vendor = connection.vendor
        only = [part.strip() for part in options["only"].split(",") if part.strip()]
        if set(only) - set(SCENARIOS):
            raise CommandError(f"--only takes scenarios among a, b, c, not {only}")
        keys = only or list(SCENARIOS)
        if options["tickets"] is not None and options["tickets"] < 1:
            raise CommandError("--tickets must be at least 1")
        call_command("migrate", verbosity=0, interactive=False)
        if Task.objects.exists() and not options["wipe"]:
            raise CommandError(
                f"the database {connection.settings_dict['NAME']} holds outbox tasks; this "
                "wipes them. Use a scratch database, or pass --wipe."
            )
        logging.getLogger("outbox.attempts").setLevel(logging.WARNING)
        self.stdout.write(f"Machine: {machine()}")
        results: list[Result] = []
        for key in keys:
            scenario = SCENARIOS[key]
            if scenario.postgres_only and vendor != "postgresql":
                self.stdout.write(f"({key}) skipped: PostgreSQL only (it restarts the server)")
                continue
            self.stdout.write(f"({key}) {scenario.title} ...")
            results.append(
                run_scenario(
                    scenario,
                    database_url=settings.DATABASE_URL,
                    logs=Path(options["logs"]) / f"{vendor}-{key}",
                    tickets=options["tickets"],
                    restart_postgres=not options["no_postgres_restart"],
                    deadline_seconds=options["deadline"],
                    log=self.stdout.write,
                )
            )
        if not options["no_write"] and results:
            command = " ".join(["python manage.py bad_day_benchmark", *_shown_arguments()])
            write_section(Path(options["output"]), vendor, results, command, machine())
            self.stdout.write(f"Wrote {options['output']}")
        wrong = [result for result in results if not result.ok]
        if wrong:
            raise CommandError(
                "FAILED: "
                + "; ".join(
                    f"({r.scenario.key}) {', '.join(r.problems) or 'did not converge'}"
                    for r in wrong
                )
            )


def _row(result: Result) -> str:
    if result.seconds is None:
        figure, verdict = "did not converge", "no"
    else:
        figure = f"{result.seconds:.1f} s"
        verdict = "yes" if result.met else "**no**"
    counts = "every effect exactly once" if result.ok else "; ".join(result.problems)
    notes = [f"{result.tasks} tasks, {result.failed_tries} failed tries", counts]
    notes += [f"slowest: {result.slowest}"] if result.slowest else []
    notes += [", ".join(result.events)] if result.events else []
    notes += [f"gateway: {result.gateway_stats}"] if result.gateway_stats else []
    return (
        f"| ({result.scenario.key}) {result.scenario.title} | {figure} | {result.ideal:.1f} s | "
        f"{result.target:g} s: {verdict} | {'; '.join(notes)} |"
    )


def write_section(path: Path, vendor: str, results: list[Result], command: str, about: str) -> None:
    """Replace this database's bad-day section (between its own markers), nothing else."""
    marker = f"bad-day-{vendor}"
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    rows = "\n".join(_row(result) for result in results)
    section = (
        f"<!-- {marker}:start -->\n### A bad day on {TITLES[vendor]}\n\n"
        f"Measured {when} on {about}.\n\n```\nDEBUG=1 {command}\n```\n\n"
        "| Scenario | Converged in | Ideal | Target met | Notes |\n|---|---|---|---|---|\n"
        f"{rows}\n<!-- {marker}:end -->\n"
    )
    text = path.read_text() if path.exists() else "# Benchmarks\n\n"
    pattern = re.compile(rf"<!-- {marker}:start -->.*?<!-- {marker}:end -->\n", re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text)
    elif "<!-- bad-day:end -->" in text:
        text = text.replace("<!-- bad-day:end -->", section + "\n<!-- bad-day:end -->", 1)
    else:
        text += "\n" + section
    path.write_text(text)
