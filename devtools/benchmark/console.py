"""Figure (k): the console's pages, /metrics and `outbox_status` on a big table."""

from __future__ import annotations

import io
import time
from typing import Any

from django.core.management import call_command

from devtools.benchmark.base import (
    CONSOLE_KINDS,
    Options,
    fill_finished,
    percentile,
    vacuum,
    wipe,
)
from devtools.benchmark.report import Report
from devtools.bulk import fill_tasks
from outbox.models import Task, TaskState

# Tickets with their tasks among the big table's, for the task search by a ticket id or email.
SEARCHED_TICKETS = 1_000
SEARCHED_PREFIX = "bench-t-"


def _tickets_with_tasks(count: int) -> None:
    """`count` confirmed tickets and their tasks (a receipt and a sheet row each), as the
    webhook would store them, so the search has real dedupe keys and payloads to find."""
    from decimal import Decimal

    from django.db import transaction
    from django.db.models.functions import Now

    from outbox.services import enqueue_many
    from tickets import kinds
    from tickets.models import Ticket, TicketStatus
    from tickets.ticket_in import TicketIn

    _forget_tickets()
    incoming = [
        TicketIn(
            ticket_id=f"{SEARCHED_PREFIX}{index}",
            status=TicketStatus.CONFIRMED,
            customer_email=f"customer{index}@example.com",
            amount=Decimal("12.50"),
            currency="EUR",
        )
        for index in range(count)
    ]
    with transaction.atomic():
        Ticket.objects.bulk_create(
            Ticket(
                ticket_id=t.ticket_id,
                status=t.status,
                customer_email=t.customer_email,
                price_amount=t.amount,
                price_currency=t.currency,
            )
            for t in incoming
        )
        specs = [
            effect.spec(t, correlation_id="")
            for t in incoming
            for effect in kinds.EFFECTS
            if effect.on == kinds.ON_CONFIRMED
        ]
        enqueue_many(specs)
        # Done long ago, as most of a big table is.
        Task.objects.filter(dedupe_key__in=[spec.dedupe_key for spec in specs]).update(
            state=TaskState.SUCCEEDED,
            attempts=1,
            finished_at=Now(),
            succeeded_started_at=Now(),
            succeeded_duration_ms=1.0,
        )


def _forget_tickets() -> None:
    from tickets.models import Ticket

    Ticket.objects.filter(ticket_id__startswith=SEARCHED_PREFIX).delete()


def console_time(options: Options, report: Report, *, filled: bool = False) -> None:
    """Server time of the dashboard and the triage page on a table of `big_table_rows`
    finished tasks (the ones (f) left when `filled`) and `console_failing` failed or
    retrying ones, as a superuser, through Django's handler in-process (as (g))."""
    from django.contrib.auth import get_user_model
    from django.test import Client

    if not filled:
        wipe()
        fill_finished(options.big_table_rows)
    # Half failed, half retrying after a first try, over four kinds and the last day.
    fill_tasks(
        options.console_failing,
        kinds=CONSOLE_KINDS,
        failed_every=2,
        retrying_every=2,
        spread_seconds=86_400,
    )
    tasks = Task.objects.count()
    succeeded = Task.objects.filter(state=TaskState.SUCCEEDED).count()
    searched = max(1, min(SEARCHED_TICKETS, options.big_table_rows // 1000))
    _tickets_with_tasks(searched)
    vacuum()
    user, _ = get_user_model().objects.update_or_create(
        username="benchmark-console",
        defaults={"is_staff": True, "is_superuser": True, "is_active": True},
    )
    client = Client(HTTP_HOST="localhost")
    client.force_login(user)
    try:
        for label, url in (
            ("dashboard", "/admin/outbox/task/dashboard/"),
            ("triage page", "/admin/outbox/task/triage/"),
            ("/metrics scrape", "/metrics"),
            ("task list, kind filter shown", "/admin/outbox/task/"),
            ("attempts list, status filter shown", "/admin/outbox/attempt/"),
            (
                "task search by a ticket id",
                f"/admin/outbox/task/?q={SEARCHED_PREFIX}{searched // 2}",
            ),
            (
                "task search by a customer email",
                f"/admin/outbox/task/?q=customer{searched // 2}@example.com",
            ),
            # A value no registered search knows: looked for in every task's payload.
            ("task search by a value only a payload holds", "/admin/outbox/task/?q=t-424242"),
        ):
            samples = _server_times(client, url, options.console_requests)
            report.add(
                f"(k) {label} with {succeeded:,} succeeded tasks, server time",
                f"p50 {percentile(samples, 0.5):,.0f} ms, p99 {percentile(samples, 0.99):,.0f} ms",
                f"({len(samples)} requests as a superuser after 2 to warm up; {tasks:,} tasks, "
                f"{tasks - succeeded:,} of them failed or retrying; finished over the last 7 days; "
                f"and {searched:,} tickets with their {searched * 2:,} finished tasks to search; "
                "DEBUG off)",
            )
        status = []
        for index in range(options.console_requests + 2):
            started = time.perf_counter()
            call_command("outbox_status", stdout=io.StringIO())
            if index >= 2:
                status.append((time.perf_counter() - started) * 1000)
        report.add(
            f"(k) outbox_status with {succeeded:,} succeeded tasks",
            f"p50 {percentile(status, 0.5):,.0f} ms, p99 {percentile(status, 0.99):,.0f} ms",
            f"({len(status)} runs in-process after 2 to warm up; its succeeded column is the "
            "planner's estimate above 20,000 tasks on PostgreSQL)",
        )
    finally:
        client.logout()
        user.delete()
        _forget_tickets()
    wipe()


def _server_times(client: Any, url: str, requests: int) -> list[float]:
    samples: list[float] = []
    for index in range(requests + 2):
        started = time.perf_counter()
        response = client.get(url)
        elapsed = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            raise RuntimeError(f"{url} answered {response.status_code}")
        if index >= 2:
            samples.append(elapsed)
    return samples
