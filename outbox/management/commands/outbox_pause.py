"""Pause kinds of outbox tasks: they stay pending, unclaimed, until resumed."""

from __future__ import annotations

import getpass
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from outbox.registry import registered_kinds
from outbox.services import kind_pause


def operator_name() -> str:
    try:
        return f"manage.py ({getpass.getuser()})"
    except (KeyError, OSError):
        return "manage.py"


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
        parser.add_argument(
            "--by",
            default="",
            help="Who paused it, shown in the admin (default: manage.py and your login).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        kinds: list[str] = options["kinds"]
        warn_unknown_kinds(self, kinds)
        by = options["by"] or operator_name()
        for kind in kinds:
            if kind_pause(kind=kind, by=by[:150]):
                self.stdout.write(self.style.SUCCESS(f"Paused {kind}."))
            else:
                self.stdout.write(f"{kind} was already paused.")
