"""Replay outbox tasks: make the matching tasks due now with a fresh attempt budget."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime, time, timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.db.models import JSONField
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from outbox.console import audit
from outbox.console.progress import ProgressBar
from outbox.console.selectors import error_summary, tasks_matching, tasks_with_ids
from outbox.models import Queue, Task, TaskState
from outbox.registry import registered_kinds
from outbox.services import retried_note, settle_waits, tasks_retry

CHUNK = 500
# Running tasks belong to their lease owner; every other state can be replayed.
REPLAYABLE = [s for s in TaskState.values if s != TaskState.RUNNING]

PAYLOAD_KEY = re.compile(r"[A-Za-z0-9](?:_?[A-Za-z0-9])*")

EXIT_NONE_MATCHED = 1
EXIT_BAD_ARGUMENTS = 2
EXIT_SOME_SKIPPED = 3


def known_kinds() -> list[str]:
    """Kinds with a handler in this deployment, and kinds still in the table (a handler gone)."""
    in_table = Task.objects.values_list("kind", flat=True).distinct()
    return sorted(set(registered_kinds()) | set(in_table))


def parse_moment(value: str, *, end_of_day: bool) -> datetime:
    """An ISO datetime, or a date: its start (or, with `end_of_day`, the next day's start)."""
    try:
        # Dates first: parse_datetime would read a bare date as its midnight.
        day = parse_date(value)
        if day is not None:
            if end_of_day:
                day += timedelta(days=1)
            moment = datetime.combine(day, time.min)
        else:
            parsed = parse_datetime(value)
            if parsed is None:
                raise ValueError(value)
            moment = parsed
    except ValueError:
        raise CommandError(
            f"{value!r} is not an ISO date or datetime (2024-05-01, 2024-05-01T13:30:00+00:00).",
            returncode=EXIT_BAD_ARGUMENTS,
        ) from None
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment)
    return moment


def parse_payload_filters(filters: Sequence[str]) -> dict[str, Sequence[str]]:
    """`["order=o-1", "order=o-2"]` as `{"order": ["o-1", "o-2"]}`."""
    values: dict[str, list[str]] = {}
    for item in filters:
        key, sep, value = item.partition("=")
        # The key becomes part of an ORM lookup: a plain name only, never a lookup of its own.
        if not sep or not PAYLOAD_KEY.fullmatch(key) or key in JSONField().get_lookups():
            raise CommandError(
                f"--payload {item!r} is not KEY=VALUE with a plain key (letters, digits, _).",
                returncode=EXIT_BAD_ARGUMENTS,
            )
        values.setdefault(key, []).append(value)
    return dict(values)


class Command(BaseCommand):
    help = (
        "Replay outbox tasks: the matching tasks become due now with a fresh attempt budget "
        "and keep their idempotency key, so an API that honours it does the effect once. "
        "Exit codes: 0 all matched tasks replayed, 1 none matched (or the prompt was "
        "declined), 2 bad arguments, 3 some tasks changed state meanwhile and were skipped."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--state",
            choices=REPLAYABLE,
            default=None,
            help="Replay tasks in this state (default: failed). Replaying succeeded tasks "
            "runs their effect again.",
        )
        parser.add_argument(
            "--kind",
            action="append",
            default=[],
            metavar="KIND",
            help="Only tasks of this kind (repeatable).",
        )
        parser.add_argument("--queue", choices=Queue.values, help="Only tasks on this queue.")
        parser.add_argument(
            "--payload",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="Only tasks whose payload has this value under this key (repeatable: values "
            "of one key are alternatives, different keys must all match).",
        )
        parser.add_argument(
            "--task-id",
            action="append",
            type=int,
            default=[],
            metavar="ID",
            dest="task_ids",
            help="Only the task with this id (repeatable).",
        )
        parser.add_argument(
            "--since",
            help="Only tasks created at or after this ISO date or datetime (a date means "
            "its midnight, in the current time zone when none is given).",
        )
        parser.add_argument(
            "--until",
            help="Only tasks created before this ISO datetime; a date includes that whole day.",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="List the tasks that would be replayed (id, kind, state, attempts, last "
            "error) and change nothing.",
        )
        parser.add_argument(
            "--yes",
            "--no-input",
            "--noinput",
            action="store_false",
            dest="interactive",
            help="Do not ask for confirmation.",
        )
        audit.add_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        state: str = options["state"] or TaskState.FAILED.value
        if options["state"] is None:
            # Said out loud: `--payload order=o-1` alone looks like "every task of o-1".
            # On stderr: stdout stays the listing scripts read.
            self.stderr.write(f"Only {state} tasks (the default; --state chooses another).")
        unknown = sorted(set(options["kind"]) - set(known_kinds()))
        if unknown:
            raise CommandError(
                f"Unknown kind {', '.join(map(repr, unknown))}; the known kinds are: "
                f"{', '.join(known_kinds())}.",
                returncode=EXIT_BAD_ARGUMENTS,
            )
        since = parse_moment(options["since"], end_of_day=False) if options["since"] else None
        until = parse_moment(options["until"], end_of_day=True) if options["until"] else None
        if since and until and since >= until:
            raise CommandError("--since must be before --until.", returncode=EXIT_BAD_ARGUMENTS)
        matching = tasks_matching(
            states=[state],
            kinds=options["kind"],
            queues=[options["queue"]] if options["queue"] else [],
            task_ids=options["task_ids"],
            payload_values=parse_payload_filters(options["payload"]),
            created_since=since,
            created_until=until,
        )
        # A snapshot of ids: the replay works on what matched now, not on what matches later.
        ids: list[int] = list(matching.values_list("id", flat=True))
        if not ids:
            raise CommandError(
                f"No {state} task matches these filters.", returncode=EXIT_NONE_MATCHED
            )

        if options["dry_run"]:
            self.list_tasks(matching)
            self.stdout.write(f"Dry run: {len(ids)} {state} task(s) would be replayed.")
            return

        what = f"{len(ids)} {state} task(s)"
        if options["interactive"] and not self.confirm(f"Replay {what}? [y/N] "):
            raise CommandError("Replay canceled; nothing changed.", returncode=EXIT_NONE_MATCHED)

        by = options["by"] or audit.os_user()
        log = audit.message("replay_tasks", "Replayed", by=by, reason=options["reason"])
        replayed = self.replay(ids, state=state, by=by, log_message=log)
        skipped = len(ids) - replayed
        self.stdout.write(
            f"Matched: {len(ids)}. Replayed: {replayed}. "
            f"Skipped (state changed meanwhile): {skipped}."
        )
        self.stdout.write(retried_note(replayed, settle_waits(task_ids=ids), done="replayed"))
        if skipped:
            raise CommandError(
                f"{skipped} task(s) were no longer {state} and were left as they are.",
                returncode=EXIT_SOME_SKIPPED,
            )
        self.stdout.write(self.style.SUCCESS(f"Replayed {what}."))

    def list_tasks(self, matching: Any) -> None:
        rows = matching.values_list("id", "kind", "state", "attempts", "max_attempts", "last_error")
        self.stdout.write(f"{'ID':>10}  {'KIND':<32} {'STATE':<10} {'ATTEMPTS':>8}  LAST ERROR")
        for pk, kind, state, attempts, max_attempts, error in rows.iterator(chunk_size=2000):
            self.stdout.write(
                f"{pk:>10}  {kind:<32} {state:<10} {f'{attempts}/{max_attempts}':>8}  "
                f"{error_summary(error)[:100]}"
            )

    def confirm(self, question: str) -> bool:
        try:
            answer = input(question)
        except EOFError:
            return False
        return answer.strip().lower() in {"y", "yes"}

    def replay(self, ids: Sequence[int], *, state: str, by: str, log_message: str) -> int:
        """Replay in chunks; the service's count is what changed, whatever ran beside us.

        Each chunk locks its rows first, as the admin's actions do, so the audit entries name
        exactly the tasks this replay changed.
        """
        progress = ProgressBar(self.stdout) if len(ids) > CHUNK else None
        replayed = 0
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start : start + CHUNK]
            with transaction.atomic():
                locked = list(
                    tasks_with_ids(chunk, states=[state])
                    .select_for_update()
                    .values_list("id", flat=True)
                )
                if locked:
                    # The state condition travels in the UPDATE: a task another replay
                    # already took is not counted (or reset) twice.
                    replayed += tasks_retry(
                        tasks=tasks_with_ids(locked, states=[state]),
                        include_succeeded=state == TaskState.SUCCEEDED,
                        started_by=f"replay_tasks by {by}",
                    )
                    audit.log_tasks(locked, change_message=log_message, by=by)
            if progress is not None:
                progress.update(start + len(chunk), len(ids))
        if progress is not None:
            progress.end()
        return replayed
