"""Resume paused kinds of outbox tasks."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from outbox.management.commands.outbox_pause import warn_unknown_kinds
from outbox.services import kind_resume


class Command(BaseCommand):
    help = "Resume paused kinds of outbox tasks: relay passes claim them again at once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("kinds", nargs="+", metavar="KIND", help="The kind(s) to resume.")

    def handle(self, *args: Any, **options: Any) -> None:
        kinds: list[str] = options["kinds"]
        warn_unknown_kinds(self, kinds)
        for kind in kinds:
            if kind_resume(kind=kind):
                self.stdout.write(self.style.SUCCESS(f"Resumed {kind}."))
            else:
                self.stdout.write(f"{kind} was not paused.")
