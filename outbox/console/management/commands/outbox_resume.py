"""Resume paused kinds of outbox tasks."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from outbox.console import audit
from outbox.console.management.commands.outbox_pause import warn_unknown_kinds
from outbox.models import PausedKind
from outbox.services import kind_resume


class Command(BaseCommand):
    help = "Resume paused kinds of outbox tasks: relay passes claim them again at once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("kinds", nargs="+", metavar="KIND", help="The kind(s) to resume.")
        audit.add_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        kinds: list[str] = options["kinds"]
        warn_unknown_kinds(self, kinds)
        by = options["by"] or audit.os_user()
        # Read before the resume deletes them: the log names the rows as the admin does.
        rows = {row.kind: row for row in PausedKind.objects.filter(kind__in=kinds)}
        resumed = []
        for kind in kinds:
            if kind_resume(kind=kind):
                resumed.append(rows[kind])
                self.stdout.write(self.style.SUCCESS(f"Resumed {kind}."))
            else:
                self.stdout.write(f"{kind} was not paused.")
        audit.log_kinds(
            resumed,
            paused=False,
            change_message=audit.message(
                "outbox_resume", "Resumed", by=by, reason=options["reason"]
            ),
            by=by,
        )
