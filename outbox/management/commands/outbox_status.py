"""Print the outbox's state: tasks per kind and state, the relay's lag, its throughput."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from outbox import selectors
from outbox.models import TaskState


class Command(BaseCommand):
    help = (
        "Show outbox tasks per kind and state, how long the oldest due task has waited, "
        "the succeeded tasks per minute over the last minutes, and the paused kinds."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--json",
            action="store_true",
            help="Print one JSON object instead of a table, for scripts.",
        )
        parser.add_argument(
            "--minutes",
            type=int,
            default=5,
            help="The window of the throughput figure, in minutes (default: 5).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        minutes: int = options["minutes"]
        if minutes < 1:
            raise CommandError("--minutes must be at least 1.", returncode=2)
        counts = selectors.task_counts_by_kind()
        totals = selectors.state_totals(counts)
        age = selectors.oldest_due_task_age()
        per_minute = selectors.succeeded_per_minute(minutes=minutes)
        paused = [row.kind for row in selectors.paused_kinds()]
        if options["json"]:
            document = {
                "counts": {row.kind: row.by_state for row in counts},
                "totals": totals,
                "oldest_due_age_seconds": None if age is None else round(age.total_seconds(), 3),
                "succeeded_per_minute": round(per_minute, 3),
                "throughput_window_minutes": minutes,
                "paused_kinds": paused,
            }
            self.stdout.write(json.dumps(document, indent=2, sort_keys=True))
            return

        states = TaskState.values
        width = max([len("KIND"), len("all kinds"), *(len(row.kind) for row in counts)])
        header = f"{'KIND':<{width}}" + "".join(f" {s.upper():>10}" for s in states)
        self.stdout.write(header + f" {'TOTAL':>10}")
        for row in counts:
            numbers = "".join(f" {row.by_state[s]:>10}" for s in states)
            self.stdout.write(f"{row.kind:<{width}}{numbers} {row.total:>10}")
        numbers = "".join(f" {totals[s]:>10}" for s in states)
        self.stdout.write(f"{'all kinds':<{width}}{numbers} {sum(totals.values()):>10}")
        self.stdout.write("")
        self.stdout.write(f"Oldest due task has waited: {selectors.describe_age(age)}")
        self.stdout.write(f"Throughput (last {minutes} min): {per_minute:.1f} succeeded tasks/min")
        self.stdout.write(f"Paused kinds: {', '.join(paused) if paused else 'none'}")
