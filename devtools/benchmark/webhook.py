"""Figure (g): the webhook's server time, through Django's handler."""

from __future__ import annotations

import time

from django.db import connection

from devtools.benchmark.base import Options, percentile, wipe
from devtools.benchmark.report import Report


def webhook_time(options: Options, report: Report) -> None:
    from unittest import mock

    webhook_round(options, report, 100)
    webhook_round(options, report, 10)
    # The baseline, in the same run: every body through DRF's serializer, as before the fast
    # path (tickets/intake/validation.py).
    with mock.patch("tickets.intake.serializers.fast_tickets", return_value=None):
        webhook_round(options, report, 100, label=" validated by DRF alone (baseline)")


def webhook_round(options: Options, report: Report, size: int, *, label: str = "") -> None:
    """Server time of POST /tickets-status with `size` new tickets, through Django's handler.

    Through the URL, as a seller calls it, so the figure includes routing and middleware.
    """
    samples = webhook_samples(options, size, prefix=f"{size}{label[:4]}")
    report.add(
        f"(g) webhook with {size} tickets{label}, server time",
        f"p50 {percentile(samples, 0.5):,.1f} ms, p99 {percentile(samples, 0.99):,.1f} ms",
        f"({len(samples)} requests, each {size} new tickets and {2 * size} tasks; DEBUG off)",
    )


def webhook_samples(options: Options, size: int, *, prefix: str) -> list[float]:
    """Milliseconds of each of `options.webhook_requests` webhooks with `size` new tickets;
    the tickets, deliveries and tasks they made are deleted after."""
    import json

    from django.test import Client

    wipe()
    client = Client(HTTP_HOST="localhost")
    samples: list[float] = []
    for request in range(options.webhook_requests):
        body = json.dumps(
            {
                "tickets": [
                    {
                        "ticket_id": f"bench-{prefix}-{request}-{n}",
                        "status": "confirmed",
                        "customer_email": f"c{n}@example.com",
                        "price": {"amount": "25.00", "currency": "EUR"},
                    }
                    for n in range(size)
                ]
            }
        )
        started = time.perf_counter()
        response = client.post(
            "/tickets-status",
            body,
            content_type="application/json",
            headers={"Idempotency-Key": f"bench-{prefix}-{request}"},
        )
        samples.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            raise RuntimeError(f"the webhook answered {response.status_code}: {response.content!r}")
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM tickets_webhookdelivery")
        cursor.execute("DELETE FROM tickets_ticket")
    wipe()
    return samples
