"""Compare our records with the APIs' own and store the drift report (tickets.reconcile)."""

from __future__ import annotations

import json
from datetime import datetime, time, timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from outbox.console.audit import add_arguments as add_audit_arguments
from outbox.console.audit import os_user
from tickets.intake.validation import ticket_id_error
from tickets.models import ReconcileRun, Ticket
from tickets.reconcile import ReconcileFailed, Reconciler, Scope, fix_run, report

EXIT_DRIFT = 1
EXIT_BAD_ARGUMENTS = 2
EXIT_NOT_FINISHED = 3


def parse_moment(option: str, value: str, *, end_of_day: bool) -> datetime:
    """An ISO datetime, or a date: its start (or, with `end_of_day`, the next day's start)."""
    try:
        day = parse_date(value) if len(value) == 10 else None
        moment = (
            datetime.combine(day + timedelta(days=1) if end_of_day else day, time.min)
            if day is not None
            else parse_datetime(value)
        )
    except ValueError:
        moment = None
    if moment is None:
        raise CommandError(
            f"{option} {value!r} is not an ISO date or datetime (2026-05-01, "
            "2026-05-01T13:30:00+00:00).",
            returncode=EXIT_BAD_ARGUMENTS,
        )
    return timezone.make_aware(moment) if timezone.is_naive(moment) else moment


class Command(BaseCommand):
    help = (
        "Reconcile: compare the print and refund sheets (read in pages, at a bounded rate) "
        "and our receipts, voids and refunds with the tickets that should have them, store "
        "the report (the admin's reconcile runs) and print it. Exits 1 when open drift is "
        "found, 2 on bad arguments, 3 when an API did not answer. Never writes to an API; "
        "--fix RUN enqueues the missing effects of a stored run."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--since",
            help="Check tickets created or changed from this ISO date or datetime on "
            "(default: 24 hours ago, unless --ticket is given).",
        )
        parser.add_argument(
            "--until",
            help="... and before this one (a date counts whole; default: now).",
        )
        parser.add_argument(
            "--ticket",
            action="append",
            default=[],
            metavar="TICKET_ID",
            help="Check only this ticket (repeat the flag for more); not with --since/--until.",
        )
        parser.add_argument(
            "--json", action="store_true", help="Print the run as one JSON document."
        )
        parser.add_argument(
            "--fix",
            type=int,
            metavar="RUN",
            help="Instead of reconciling: enqueue the task of every open missing effect of "
            "stored run RUN, through the effects' own dedupe keys (a second --fix does nothing).",
        )
        add_audit_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        by = options["by"] or os_user()
        if options["fix"] is not None:
            if options["since"] or options["until"] or options["ticket"] or options["json"]:
                raise CommandError(
                    "--fix RUN fixes a stored run; it does not take --since, --until, --ticket "
                    "or --json.",
                    returncode=EXIT_BAD_ARGUMENTS,
                )
            self.fix(options["fix"], by, options["reason"])
            return
        scope = self.scope(options)
        try:
            run = Reconciler(scope=scope, by=by, trigger="command").run()
        except ReconcileFailed as exc:
            self.show(exc.run, options["json"])
            raise CommandError(
                f"reconcile run #{exc.run.pk} did not finish: {exc}", returncode=EXIT_NOT_FINISHED
            ) from None
        self.show(run, options["json"])
        if run.drift_open:
            raise CommandError(
                f"{run.drift_open} open drift item(s) in run #{run.pk}.", returncode=EXIT_DRIFT
            )

    def scope(self, options: dict[str, Any]) -> Scope:
        tickets = [t.strip() for t in options["ticket"]]
        if tickets and (options["since"] or options["until"]):
            raise CommandError(
                "--ticket checks the tickets named; it does not take --since/--until.",
                returncode=EXIT_BAD_ARGUMENTS,
            )
        if tickets:
            # The webhook's own rule for an id: what it refuses no ticket holds (and
            # PostgreSQL cannot even compare a text holding a NUL).
            for tid in tickets:
                if (problem := ticket_id_error(tid)) is not None:
                    raise CommandError(
                        f"--ticket {tid!r} is not a ticket id: it {problem}.",
                        returncode=EXIT_BAD_ARGUMENTS,
                    )
            known = set(
                Ticket.objects.filter(ticket_id__in=tickets).values_list("ticket_id", flat=True)
            )
            unknown = sorted(set(tickets) - known)
            if unknown:
                raise CommandError(
                    f"unknown ticket(s): {', '.join(unknown[:10])}.", returncode=EXIT_BAD_ARGUMENTS
                )
            return Scope(ticket_ids=tuple(dict.fromkeys(tickets)))
        until = (
            parse_moment("--until", options["until"], end_of_day=True) if options["until"] else None
        )
        since = (
            parse_moment("--since", options["since"], end_of_day=False)
            if options["since"]
            else (until or timezone.now()) - timedelta(days=1)
        )
        if until is not None and since >= until:
            raise CommandError(
                f"--since ({since.isoformat()}) must be before --until ({until.isoformat()}).",
                returncode=EXIT_BAD_ARGUMENTS,
            )
        if until is None and since >= timezone.now():
            raise CommandError(
                f"--since ({since.isoformat()}) is in the future: no ticket can be in the window.",
                returncode=EXIT_BAD_ARGUMENTS,
            )
        return Scope(since=since, until=until)

    def show(self, run: ReconcileRun, as_json: bool) -> None:
        if as_json:
            self.stdout.write(json.dumps(report.run_document(run), indent=2, sort_keys=True))
            return
        for line in report.run_lines(run):
            self.stdout.write(line)

    def fix(self, run_id: int, by: str, reason: str) -> None:
        if not ReconcileRun.objects.filter(pk=run_id).exists():
            raise CommandError(
                f"reconcile run #{run_id} does not exist.", returncode=EXIT_BAD_ARGUMENTS
            )
        outcomes, refused = fix_run(run_id=run_id, by=by, reason=reason)
        for outcome in outcomes:
            self.stdout.write(f"drift item #{outcome.item_id}: {outcome.done}")
        self.stdout.write(f"{len(outcomes)} missing effect(s) of run #{run_id} fixed.")
        if refused:
            for problem in refused:
                self.stderr.write(problem)
            raise CommandError(
                f"{len(refused)} missing effect(s) of run #{run_id} not fixed (above).",
                returncode=EXIT_DRIFT,
            )
