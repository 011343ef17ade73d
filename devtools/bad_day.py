"""A bad day, measured: `manage.py bad_day_benchmark`.

Each scenario starts real processes with production defaults (the fake gateway failing on
demand, gunicorn, `manage.py qcluster` with DEBUG=0, no OUTBOX_* override, the default
SHEET_SETTLE_SECONDS unless the scenario names one), posts the simulator's webhooks and times
from the first post to convergence: every task succeeded and the gateway shows every effect
exactly once. Next to it, the same run's ideal (`ideal_seconds`): the backoffs the failures of
the task that finished last forced, at their ceilings.

It wipes the outbox, tickets and django-q2 task tables of the database it is given.
"""

from __future__ import annotations

import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from django.conf import settings
from django.db import DatabaseError, connection

from devtools.processes import Services, child_env, restart_postgresql, wait_for
from devtools.simulation import (
    EffectsReport,
    GatewayInspector,
    GatewayUnavailable,
    WebhookPoster,
    check_effects,
    plan_simulation,
)
from outbox.conf import DEFAULTS
from outbox.models import Attempt, AttemptOutcome, AttemptReply, RelayPass, Task, TaskState
from outbox.registry import UnknownTaskKind, get_handler
from outbox.retry import RetryPolicy
from tickets.intake.signature import decode_secrets

ALL_APIS = ["receipts", "payments", "spreadsheets"]
PRODUCTION_SETTLE_SECONDS = 60.0
TABLES = [
    "outbox_attempt",
    "outbox_task",
    "outbox_relaypass",
    "outbox_circuit",
    "outbox_pausedkind",
    # A reconcile's items point at tickets: they go first (SQLite deletes in this order).
    "tickets_driftitem",
    "tickets_reconcilerun",
    "tickets_ticket",
    "tickets_webhookdelivery",
    "tickets_webhookmessage",
    "django_q_ormq",
    "django_q_task",
]


@dataclass(frozen=True, slots=True)
class Scenario:
    key: str
    title: str
    tickets: int
    gateway_flags: tuple[str, ...]
    target_seconds: float
    seed: int
    settle_seconds: float | None = None  # None: the production default, unset
    crash: bool = False
    postgres_only: bool = False


SCENARIOS = {
    "a": Scenario(
        "a",
        "200 tickets, 20% 500 + 10% 500-after-write, one cluster",
        200,
        ("--failure-rate", "0.2", "--fail-after-write-rate", "0.1"),
        30.0,
        seed=2001,
    ),
    "b": Scenario(
        "b",
        "40 tickets, 30% 500 with garbage bodies, one cluster",
        40,
        ("--failure-rate", "0.3", "--garbage-bodies"),
        30.0,
        seed=2002,
    ),
    "c": Scenario(
        "c",
        "1,000 tickets, two clusters SIGKILLed and replaced, PostgreSQL restarted, gateway "
        "down 8 s, 10% 500 + 10% 500-after-write, SHEET_SETTLE_SECONDS=10",
        1000,
        ("--failure-rate", "0.1", "--fail-after-write-rate", "0.1"),
        45.0,
        seed=2003,
        settle_seconds=10.0,
        crash=True,
        postgres_only=True,
    ),
}
TICKETS_PER_ORDER = 10


# The ideal ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TryRecord:
    """One recorded try that did not succeed: its number, outcome and reply (answer kind)."""

    number: int
    outcome: str
    reply: str = ""


def ideal_seconds(
    tries: Iterable[TryRecord],
    *,
    base: float = DEFAULTS.backoff_base_seconds,
    cap: float = DEFAULTS.backoff_cap_seconds,
    settle: float | None = None,
    lease: float = DEFAULTS.lease_seconds,
) -> float:
    """The seconds a task's failed tries force it to wait, at the policy's ceilings.

    A failed try n (answered, or not sent) allows a backoff of at most RetryPolicy.ceiling(n),
    min(cap, base * 2**(n - 1)).
    One whose call got no answer, of a kind with a settle, waits the later of that and the
    settle (both counted from the try's start, never their sum). A try whose lease was lost
    (its worker died) waits the lease out, then the settle when its call may have been in
    flight. Successes, permanent failures and deferrals (an open circuit) add nothing.
    """
    total = 0.0
    for record in tries:
        no_answer = record.reply in (AttemptReply.NO_ANSWER, "")
        if record.outcome == AttemptOutcome.RETRY:
            ceiling = RetryPolicy(base_seconds=base, cap_seconds=cap).ceiling(record.number)
            settles = settle is not None and record.reply == AttemptReply.NO_ANSWER
            total += max(ceiling, settle) if settles and settle is not None else ceiling
        elif record.outcome == AttemptOutcome.LEASE_LOST:
            total += lease + (settle if settle is not None and no_answer else 0.0)
    return total


# A run ----------------------------------------------------------------------------------


@dataclass
class Result:
    scenario: Scenario
    vendor: str
    tickets: int
    seconds: float | None = None  # None: not converged by the deadline
    ideal: float = 0.0
    slowest: str = ""
    tasks: int = 0
    failed_tries: int = 0
    effects: EffectsReport | None = None
    problems: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    gateway_stats: str = ""

    @property
    def ok(self) -> bool:
        return self.seconds is not None and not self.problems

    @property
    def met(self) -> bool:
        return self.ok and self.seconds is not None and self.seconds <= self.target

    @property
    def target(self) -> float:
        return self.scenario.target_seconds


def wipe() -> None:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY")
        else:
            for table in TABLES:
                cursor.execute(f"DELETE FROM {table}")


def _open_tasks() -> int:
    return Task.objects.filter(state__in=[TaskState.PENDING, TaskState.RUNNING]).count()


def run_scenario(
    scenario: Scenario,
    *,
    database_url: str,
    logs: Path,
    tickets: int | None = None,
    restart_postgres: bool = True,
    deadline_seconds: float = 240.0,
    log: Callable[[str], None] = print,
) -> Result:
    vendor = connection.vendor
    count = tickets or scenario.tickets
    result = Result(scenario, vendor, count)
    wipe()
    settle = scenario.settle_seconds
    services = Services(logs=logs, env=child_env(database_url, settle))
    if scenario.crash:
        services.env["DATABASE_POOL_SIZE"] = "4"  # four clusters' worth on 100 connections
    try:
        services.gateway([*scenario.gateway_flags, "--seed", str(scenario.seed)])
        services.web()
        nodes = [services.cluster(f"node-{n}") for n in (1, 2)[: 2 if scenario.crash else 1]]
        # Timed from a cluster that runs, not from one still starting.
        wait_for(RelayPass.objects.exists, timeout=60, what="a relay pass to start")
        plan = plan_simulation(
            orders=max(1, -(-count // TICKETS_PER_ORDER)),
            tickets_per_order=min(count, TICKETS_PER_ORDER),
            cancel_rate=0.2,
            seed=scenario.seed,
            run_id=f"{scenario.key}{uuid.uuid4().hex[:6]}",
        )
        secret = settings.WEBHOOK_SECRET
        key = decode_secrets(secret)[-1] if secret.strip() else None
        poster = WebhookPoster(services.web_url, key=key, max_tries=8, backoff_seconds=0.25)
        started = time.monotonic()
        chaos = None
        if scenario.crash:
            chaos = threading.Thread(
                target=_crash, args=(services, nodes, started, restart_postgres, result)
            )
            chaos.start()
        posted = poster.post_all(plan.phases())
        if not posted.ok:
            result.problems += [f"webhook refused: {line}" for line in posted.rejected[:5]]
            return result
        inspector = GatewayInspector(services.gateway_url)
        report = _converge(inspector, plan.expected, started, deadline_seconds, chaos)
        if report is not None and report.complete:
            result.seconds = time.monotonic() - started
            time.sleep(1.0)  # a late duplicate would land now
            report = check_effects(plan.expected, inspector.state())
        if chaos is not None:
            chaos.join()
        result.effects = report
        _judge(result, report)
        _ideal(result, settle if settle is not None else PRODUCTION_SETTLE_SECONDS)
        result.gateway_stats = _gateway_stats(services)
    finally:
        services.stop_all()
    log(_line(result))
    return result


def _crash(
    services: Services,
    nodes: list[subprocess.Popen[bytes]],
    started: float,
    restart_postgres: bool,
    result: Result,
) -> None:
    def note(what: str) -> None:
        result.events.append(f"{what} at {time.monotonic() - started:.1f} s")

    try:
        _crash_steps(services, nodes, restart_postgres, note)
    except Exception as exc:  # reported, not lost in a thread
        result.problems.append(f"the crash sequence failed: {exc!r}")


def _crash_steps(
    services: Services,
    nodes: list[subprocess.Popen[bytes]],
    restart_postgres: bool,
    note: Callable[[str], None],
) -> None:
    time.sleep(2.0)
    for node in nodes:
        services.kill(node)
    note("both clusters SIGKILLed")
    for n in (3, 4):
        services.cluster(f"node-{n}")
    note("two new clusters started")
    time.sleep(2.0)
    if restart_postgres:
        restart_postgresql()
        note("PostgreSQL restarted")
    services.configure_gateway(down=ALL_APIS)
    note("gateway down")
    time.sleep(8.0)
    services.configure_gateway(down=[])
    note("gateway back")


def _converge(
    inspector: GatewayInspector,
    expected: Any,
    started: float,
    deadline_seconds: float,
    chaos: threading.Thread | None,
) -> EffectsReport | None:
    """Poll until no task is open and every effect is present, or the deadline passes."""
    report: EffectsReport | None = None
    while time.monotonic() - started < deadline_seconds:
        try:
            if (chaos is None or not chaos.is_alive()) and _open_tasks() == 0:
                report = check_effects(expected, inspector.state())
                if report.complete:
                    return report
        except DatabaseError:
            connection.close()  # the server restarted: the next poll reconnects
        except GatewayUnavailable:
            pass
        time.sleep(0.25)
    try:
        return check_effects(expected, inspector.state())
    except GatewayUnavailable:
        return report


def _judge(result: Result, report: EffectsReport | None) -> None:
    states = dict(Counter(Task.objects.values_list("state", flat=True)))
    result.tasks = sum(states.values())
    if set(states) - {TaskState.SUCCEEDED}:
        result.problems.append(f"tasks not all succeeded: {states}")
    if report is None:
        result.problems.append("the gateway's state could not be read")
        return
    for check in report.checks:
        for what, ids in (
            ("missing", check.missing),
            ("duplicated", check.duplicated),
            ("unexpected", check.unexpected),
            ("wrong content", check.wrong_content),
            ("wrong Correlation-ID", check.wrong_correlation),
        ):
            if ids:
                result.problems.append(f"{check.effect}: {len(ids)} {what} (e.g. {ids[0]})")


def _ideal(result: Result, settle: float) -> None:
    result.failed_tries = Attempt.objects.exclude(outcome=AttemptOutcome.SUCCEEDED).count()
    last = Task.objects.filter(finished_at__isnull=False).order_by("-finished_at").first()
    if last is None:
        return
    rows = Attempt.objects.filter(task_id=last.id).order_by("number")
    tries = [TryRecord(a.number, a.outcome, a.reply) for a in rows]
    try:
        settles = get_handler(last.kind).settle() is not None
    except UnknownTaskKind:
        settles = False
    result.ideal = ideal_seconds(tries, settle=settle if settles else None)
    kinds = Counter(f"{t.outcome}/{t.reply or '-'}" for t in tries)
    shown = ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items())) or "none"
    times = [a.started_at for a in rows] + [last.succeeded_started_at or last.finished_at]
    offsets = ", ".join(f"{(at - last.created_at).total_seconds():.1f}" for at in times if at)
    result.slowest = (
        f"{last.kind} task {last.id}: {len(tries)} failed tries ({shown}); its tries started "
        f"{offsets} s after it was created, the last one succeeding"
    )


def _gateway_stats(services: Services) -> str:
    url = f"{services.gateway_url}/fake-gateway/state"
    try:
        stats = requests.get(url, params={"calls": 0}, timeout=10).json()["stats"]
    except (requests.RequestException, ValueError, KeyError) as exc:
        return f"stats unreadable: {exc}"
    injected = ", ".join(f"{n} {what}" for what, n in stats["injected"].items() if n)
    return f"{stats['calls']} API calls, injected: {injected or 'none'}"


def _line(result: Result) -> str:
    scenario = result.scenario
    if result.seconds is None:
        figure = "did not converge"
    else:
        verdict = "met" if result.met else "MISSED"
        figure = f"{result.seconds:.1f} s (target {result.target:g} s: {verdict})"
    counts = "every effect exactly once" if result.ok else "; ".join(result.problems)
    return (
        f"({scenario.key}) {result.vendor}, {result.tickets} tickets: {figure}; ideal "
        f"{result.ideal:.1f} s; {result.tasks} tasks, {result.failed_tries} failed tries; "
        f"slowest {result.slowest or '-'}; {counts}"
        + (f"; {', '.join(result.events)}" if result.events else "")
        + (f"; gateway: {result.gateway_stats}" if result.gateway_stats else "")
    )
