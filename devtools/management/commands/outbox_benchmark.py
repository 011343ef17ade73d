"""Measure the outbox against naive django-q2 on one database, and write docs/BENCHMARKS.md."""

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
from django.test.utils import override_settings

from devtools.benchmark import Options, Report, machine, run
from outbox.models import Task

FIGURES = {"a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n", "o", "p"}


class Command(BaseCommand):
    help = (
        "Benchmark the outbox on the configured database (or --database-url) against naive "
        "django-q2, print the figures and write them to docs/BENCHMARKS.md. It WIPES the outbox "
        "and django-q2 tables of that database: use a scratch database."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--database-url",
            help="Run against this database instead of DATABASE_URL (e.g. "
            "postgres://postgres@127.0.0.1:5432/outbox_bench or sqlite:///var/bench.sqlite3).",
        )
        parser.add_argument(
            "--wipe",
            action="store_true",
            help="Allow wiping a database that already holds outbox tasks.",
        )
        parser.add_argument(
            "--only",
            default="",
            help="Comma-separated figures to measure (a-p); all by default.",
        )
        parser.add_argument(
            "--output",
            default=str(Path(settings.BASE_DIR) / "docs" / "BENCHMARKS.md"),
            help="Markdown file whose section for this database is replaced with the results.",
        )
        parser.add_argument(
            "--no-write", action="store_true", help="Print only; leave the markdown file alone."
        )
        defaults = Options()
        for name in (
            "naive_tasks",
            "drain_tasks",
            "http_tasks",
            "enqueue_tasks",
            "latency_samples",
            "webhook_requests",
            "big_table_rows",
            "console_failing",
            "console_requests",
            "threads",
            "batch_size",
            "start_rounds",
            "work_tasks",
            "load_seconds",
        ):
            default = getattr(defaults, name)
            parser.add_argument(
                f"--{name.replace('_', '-')}",
                type=int,
                default=default,
                help=f"Benchmark size: {name.replace('_', ' ')} (default {default}).",
            )

    def handle(self, *args: Any, **options: Any) -> None:
        url = options["database_url"]
        if url and url != os.environ.get("DATABASE_URL"):
            # Settings are read at start-up: run again with the database in the environment.
            argv = [sys.executable, sys.argv[0], *sys.argv[1:]]
            os.execve(sys.executable, argv, {**os.environ, "DATABASE_URL": url})
        only = {part.strip() for part in options["only"].split(",") if part.strip()} or None
        if only and not only <= FIGURES:
            raise CommandError(f"--only takes figures among a-p, not {sorted(only - FIGURES)}")
        sizes = {name: options[name] for name in Options.__dataclass_fields__}
        if any(value < 1 for value in sizes.values()):
            raise CommandError("benchmark sizes must be positive")
        call_command("migrate", verbosity=0, interactive=False)
        if Task.objects.exists() and not options["wipe"]:
            raise CommandError(
                f"the database {connection.settings_dict['NAME']} holds outbox tasks; the "
                "benchmark wipes them. Use a scratch database, or pass --wipe."
            )
        # The same log level as the processes it compares (WARNING): no line per attempt.
        logging.getLogger("outbox.attempts").setLevel(logging.WARNING)
        report = Report(vendor=connection.vendor, log=lambda line: self.stdout.write(line))
        self.stdout.write(f"Machine: {machine()}")
        # DEBUG on keeps every query in memory and costs per query: measured as in production
        # (the clusters it starts get DEBUG=0 too).
        with override_settings(DEBUG=False):
            run(Options(**sizes), report, only=only)
        if not options["no_write"]:
            command = " ".join(["python manage.py outbox_benchmark", *_shown_arguments()])
            write_section(Path(options["output"]), report, command.strip(), machine())
            self.stdout.write(f"Wrote {options['output']}")


def _shown_arguments() -> list[str]:
    """The command line as run, with the database always named by --database-url."""
    shown = ["--database-url", _redacted(connection.settings_dict, settings.DATABASE_URL)]
    skip = False
    for arg in sys.argv[2:]:
        if skip:
            skip = False
        elif arg == "--database-url":
            skip = True
        elif not arg.startswith("--database-url="):
            shown.append(arg)
    return shown


def _redacted(settings_dict: dict[str, Any], url: str) -> str:
    """The URL as the docs show it: no password, and a file in the checkout named from `$PWD`
    (the command runs from the checkout), so the line works when pasted on another machine."""
    password = settings_dict.get("PASSWORD")
    url = url.replace(f":{password}@", ":***@") if password else url
    return url.replace(f"///{settings.BASE_DIR}/", "///$PWD/")


def write_section(path: Path, report: Report, command: str, about: str) -> None:
    title = {"postgresql": "PostgreSQL", "sqlite": "SQLite"}[report.vendor]
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    rows = "\n".join(f"| {figure} | {value} | {note} |" for figure, value, note in report.lines)
    section = (
        f"<!-- {report.vendor}:start -->\n## {title}\n\n"
        f"Measured {when} on {about}.\n\n"
        f"```\nDEBUG=1 {command}\n```\n\n"
        f"| Figure | Result | Notes |\n|---|---|---|\n{rows}\n"
        f"<!-- {report.vendor}:end -->\n"
    )
    text = path.read_text() if path.exists() else "# Benchmarks\n\n"
    pattern = re.compile(
        rf"<!-- {report.vendor}:start -->.*?<!-- {report.vendor}:end -->\n", re.DOTALL
    )
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text + "\n" + section
    path.write_text(text)
