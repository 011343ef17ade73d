"""Print the outbox's state: tasks per kind and state, what the waiting tasks wait for, the
destinations' circuits, the relay passes, the throughput; or check it against thresholds."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any, TypeVar

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from outbox.console import selectors
from outbox.console.health import PASS_STALE, Check, Thresholds, evaluate
from outbox.console.links import status_checks
from outbox.models import TaskState
from outbox.runtime.passes import ensure_schedules

EXIT_THRESHOLD_CROSSED = 1
N = TypeVar("N", int, float)


def _limit(value: N) -> N | None:
    # A negative threshold turns its check off.
    return None if value < 0 else value


def _when(moment: datetime | None) -> str:
    if moment is None:
        return "-"
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M:%S %Z")


def _seconds(age: timedelta | None) -> float | None:
    return None if age is None else round(max(age.total_seconds(), 0.0), 3)


class Command(BaseCommand):
    help = (
        "Show outbox tasks per kind and state, the waiting tasks split into due now, "
        "retrying later and scheduled, each destination's circuit, the relay passes per "
        "node, the throughput and the paused kinds. --check compares them with thresholds "
        "and exits 1 naming each one crossed (0 when none is); --repair-schedules recreates "
        "the relay's django-q2 schedules when they were deleted."
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
        parser.add_argument(
            "--check",
            action="store_true",
            help="Check the thresholds below: exit 0 when all hold, 1 when one is crossed "
            "(each one named on stderr). A negative threshold turns its check off.",
        )
        defaults = Thresholds()
        parser.add_argument(
            "--max-oldest-due",
            type=float,
            metavar="SECONDS",
            default=defaults.max_oldest_due_seconds,
            help="With --check: the longest a due task may wait (default: %(default)s).",
        )
        parser.add_argument(
            "--max-failed",
            type=int,
            metavar="N",
            default=defaults.max_failed,
            help="With --check: the most failed tasks allowed (default: %(default)s).",
        )
        parser.add_argument(
            "--max-open-circuits",
            type=int,
            metavar="N",
            default=defaults.max_open_circuits,
            help="With --check: the most destinations whose circuit is open or probing "
            "(default: %(default)s).",
        )
        parser.add_argument(
            "--min-live-passes",
            type=int,
            metavar="N",
            default=defaults.min_live_passes,
            help="With --check: the fewest relay passes with a recent heartbeat "
            "(default: %(default)s).",
        )
        parser.add_argument(
            "--repair-schedules",
            action="store_true",
            help="Recreate the relay's django-q2 schedules (keep-alive, prune) if they were "
            "deleted, then exit.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["repair_schedules"]:
            created = ensure_schedules()
            if created:
                self.stdout.write(self.style.SUCCESS(f"Recreated: {', '.join(created)}."))
            else:
                self.stdout.write("The relay's schedules are all in place.")
            return
        minutes: int = options["minutes"]
        if minutes < 1:
            raise CommandError("--minutes must be at least 1.", returncode=2)
        now = timezone.now()
        counts, estimated = selectors.task_counts()
        totals = selectors.state_totals(counts)
        age = selectors.oldest_due_task_age()
        per_minute = selectors.succeeded_per_minute(minutes=minutes)
        paused = [row.kind for row in selectors.paused_kinds()]
        waiting, all_waiting = selectors.waiting_tasks(now=now)
        circuits = selectors.circuit_health(now=now)
        relay = selectors.relay_health(stale_after=PASS_STALE, now=now)
        checks = None
        if options["check"]:
            thresholds = Thresholds(
                max_oldest_due_seconds=_limit(options["max_oldest_due"]),
                max_failed=_limit(options["max_failed"]),
                max_open_circuits=_limit(options["max_open_circuits"]),
                min_live_passes=_limit(options["min_live_passes"]),
            )
            checks = evaluate(
                thresholds,
                oldest_due=age,
                failed=totals[TaskState.FAILED],
                open_circuits=[c.destination for c in circuits if not c.is_closed],
                live_passes=relay.live,
            )
            # The apps' own checks (a reconcile's drift, say): each says whether it holds.
            checks += [
                Check(name, 0.0 if problem is None else 1.0, 0.0, problem is None, problem or "")
                for name, problem in status_checks()
            ]

        if options["json"]:
            document: dict[str, Any] = {
                "counts": {row.kind: row.by_state for row in counts},
                "totals": totals,
                "succeeded_estimated": estimated,
                "oldest_due_age_seconds": _seconds(age),
                "succeeded_per_minute": round(per_minute, 3),
                "throughput_window_minutes": minutes,
                "paused_kinds": paused,
                "waiting": {
                    w.kind or "all": {
                        "due": w.due,
                        "retrying": w.retrying,
                        "scheduled": w.scheduled,
                        "oldest_waiting_seconds": _seconds(w.oldest_age(now)),
                        "newest_error": w.newest_error,
                    }
                    for w in [*waiting, all_waiting]
                },
                "circuits": {
                    c.destination: {
                        "state": c.state,
                        "down_since": c.down_since.isoformat() if c.down_since else None,
                        "next_probe_at": (c.next_probe_at.isoformat() if c.next_probe_at else None),
                        "last_error": c.last_error,
                        "opened_count": c.opened_count,
                    }
                    for c in circuits
                },
                "relay": {
                    "live_passes": relay.live,
                    "stale_passes": relay.stale,
                    "passes": [
                        {
                            "worker": p.worker,
                            "node": p.node,
                            "started_at": p.started_at.isoformat(),
                            "heartbeat_at": p.heartbeat_at.isoformat(),
                            "stale": p.stale,
                        }
                        for p in relay.passes
                    ],
                    "running_by_node": relay.running_by_node,
                },
            }
            if checks is not None:
                document["checks"] = [
                    {"name": c.name, "value": c.value, "limit": c.limit, "ok": c.ok} for c in checks
                ]
            self.stdout.write(json.dumps(document, indent=2, sort_keys=True))
        elif checks is not None:
            for check in checks:
                if check.ok:
                    self.stdout.write(f"ok: {check.name} = {check.value:g}")
        else:
            self.print_tables(counts, totals)
            if estimated:
                self.stdout.write(
                    "SUCCEEDED is the planner's estimate (PostgreSQL statistics as of the "
                    "table's last ANALYZE): counting every success would read the whole table."
                )
            self.stdout.write("")
            self.stdout.write(f"Oldest due task has waited: {selectors.describe_age(age)}")
            self.print_waiting(waiting, all_waiting, now)
            self.print_circuits(circuits)
            self.print_relay(relay, now)
            self.stdout.write(
                f"Throughput (last {minutes} min): {per_minute:.1f} succeeded tasks/min"
            )
            self.stdout.write(f"Paused kinds: {', '.join(paused) if paused else 'none'}")

        crossed = [check for check in checks or [] if not check.ok]
        for check in crossed:
            self.stderr.write(f"CROSSED {check.name}: {check.message}")
        if crossed:
            raise CommandError(
                f"{len(crossed)} threshold(s) crossed: {', '.join(c.name for c in crossed)}.",
                returncode=EXIT_THRESHOLD_CROSSED,
            )

    def print_tables(self, counts: list[selectors.KindCounts], totals: dict[str, int]) -> None:
        states = TaskState.values
        width = max([len("KIND"), len("all kinds"), *(len(row.kind) for row in counts)])
        header = f"{'KIND':<{width}}" + "".join(f" {s.upper():>10}" for s in states)
        self.stdout.write(header + f" {'TOTAL':>10}")
        for row in counts:
            numbers = "".join(f" {row.by_state[s]:>10}" for s in states)
            self.stdout.write(f"{row.kind:<{width}}{numbers} {row.total:>10}")
        numbers = "".join(f" {totals[s]:>10}" for s in states)
        self.stdout.write(f"{'all kinds':<{width}}{numbers} {sum(totals.values()):>10}")

    def print_waiting(
        self, waiting: list[selectors.Waiting], total: selectors.Waiting, now: datetime
    ) -> None:
        if not total.total:
            self.stdout.write("Waiting tasks: none")
            return
        self.stdout.write(
            f"Waiting tasks: {total.due} due now, {total.retrying} retrying later, "
            f"{total.scheduled} scheduled; oldest waiting "
            f"{selectors.describe_age(total.oldest_age(now))}"
        )
        for w in waiting:
            line = (
                f"  {w.kind}: {w.due} due, {w.retrying} retrying, {w.scheduled} scheduled, "
                f"oldest {selectors.describe_age(w.oldest_age(now))}"
            )
            if w.newest_error:
                line += f"; newest error: {w.newest_error[:120]}"
            self.stdout.write(line)

    def print_circuits(self, circuits: list[selectors.CircuitHealth]) -> None:
        if not circuits:
            self.stdout.write("Destinations: no circuit has opened yet")
            return
        self.stdout.write("Destinations:")
        for c in circuits:
            if c.is_closed:
                self.stdout.write(f"  {c.destination}: closed")
                continue
            line = (
                f"  {c.destination}: {c.state.upper()} since {_when(c.down_since)}, "
                f"next probe {_when(c.next_probe_at)}"
            )
            if c.last_error:
                line += f"; last error: {selectors.error_summary(c.last_error)[:120]}"
            self.stdout.write(line)

    def print_relay(self, relay: selectors.RelayHealth, now: datetime) -> None:
        self.stdout.write(f"Relay passes: {relay.live} live, {relay.stale} stale")
        for p in relay.passes:
            beat = selectors.describe_age(now - p.heartbeat_at)
            self.stdout.write(
                f"  {p.worker}: {'STALE' if p.stale else 'live'}, last heartbeat {beat} ago, "
                f"started {_when(p.started_at)}"
            )
        for node, n in relay.running_by_node.items():
            self.stdout.write(f"  tasks in flight on {node}: {n}")
