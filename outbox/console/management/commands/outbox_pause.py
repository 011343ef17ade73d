"""Pause kinds of outbox tasks: they stay pending, unclaimed, until resumed."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from outbox.console import audit
from outbox.models import PausedKind
from outbox.registry import registered_kinds
from outbox.services import kind_pause


def warn_unknown_kinds(command: BaseCommand, kinds: list[str]) -> None:
    """Warn, not fail: a kind may be handled by another deployment, or be a typo."""
    known = registered_kinds()
    for kind in kinds:
        if kind not in known:
            command.stderr.write(
                f"Warning: no handler is registered for {kind!r} here. "
                f"Registered kinds: {', '.join(known) or 'none'}."
            )


class Command(BaseCommand):
    help = (
        "Pause kinds of outbox tasks: relay passes stop claiming them and they wait, "
        "pending, until outbox_resume. A task already running finishes."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("kinds", nargs="+", metavar="KIND", help="The kind(s) to pause.")
        audit.add_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        kinds: list[str] = options["kinds"]
        warn_unknown_kinds(self, kinds)
        by = options["by"] or audit.os_user()
        # Shown in the admin's list of paused kinds: say it came from a command.
        paused_by = options["by"] or f"manage.py ({by})"
        paused = []
        for kind in kinds:
            if kind_pause(kind=kind, by=paused_by[:150]):
                paused.append(kind)
                self.stdout.write(self.style.SUCCESS(f"Paused {kind}."))
            else:
                self.stdout.write(f"{kind} was already paused.")
        audit.log_kinds(
            list(PausedKind.objects.filter(kind__in=paused)),
            paused=True,
            change_message=audit.message("outbox_pause", "Paused", by=by, reason=options["reason"]),
            by=by,
        )
