"""Delete finished outbox tasks (and their attempts) older than the retention window."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from outbox import retention
from outbox.conf import outbox_settings
from outbox.console import audit
from outbox.services import finished_before, tasks_prune

_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(value: str) -> timedelta:
    """`30d`, `12h`, `90m`, `45s`, `2w`: a positive whole number and one unit."""
    found = _DURATION.match(value.lower())
    if not found or int(found[1]) == 0:
        raise CommandError(
            f"--older-than={value!r} is not a positive duration such as 30d, 12h, 90m, 2w.",
            returncode=2,
        )
    return timedelta(**{_UNITS[found[2]]: int(found[1])})


class Command(BaseCommand):
    help = (
        "Delete finished tasks (succeeded, failed, canceled) and their attempts once they "
        "finished longer ago than the retention window, then the rows other apps prune by "
        "the same cutoff (their retention hooks: the tickets' webhook deliveries and "
        "messages). The django-q2 schedule runs the same prune every hour; this runs it now."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than",
            metavar="DURATION",
            help="Delete tasks that finished longer ago than this: 30d, 12h, 90m, 2w "
            "(default: OUTBOX_RETENTION_DAYS days).",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Count the tasks that would be deleted and delete nothing.",
        )
        audit.add_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        label: str = options["older_than"] or f"{outbox_settings().retention_days}d"
        older_than = parse_duration(label)
        cutoff = timezone.now() - older_than
        window = f"finished more than {label.strip()} ago"
        kept = f"older than {label.strip()}"
        if options["dry_run"]:
            count = finished_before(older_than=older_than).count()
            self.stdout.write(f"Dry run: {count} task(s) {window} would be deleted.")
            for name, rows in retention.run_hooks(cutoff, dry_run=True):
                self.stdout.write(f"Dry run: {rows} {name} {kept} would be deleted.")
            return
        deleted = tasks_prune(older_than=older_than)
        others = retention.run_hooks(cutoff)
        done = "; ".join(
            [f"Deleted {deleted} task(s) {window}"]
            + [f"{rows} {name} {kept}" for name, rows in others]
        )
        by = options["by"] or audit.os_user()
        audit.log_prune(
            deleted,
            change_message=audit.message("prune_outbox", done, by=by, reason=options["reason"]),
            by=by,
        )
        self.stdout.write(self.style.SUCCESS(f"Deleted {deleted} task(s) {window}."))
        for name, rows in others:
            self.stdout.write(self.style.SUCCESS(f"Deleted {rows} {name} {kept}."))
