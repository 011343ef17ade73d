"""/metrics in the Prometheus text format, read from the database at scrape time.

Every value comes from the tables, not from counters in a process: whichever web worker
answers a scrape, and however many relay passes ran where, the numbers are the same.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterator
from datetime import timedelta

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.registry import CollectorRegistry

from outbox.console.selectors import (
    circuit_health,
    delivery_latency,
    oldest_due_task_age,
    relay_pass_counts,
    task_counts,
)
from outbox.history import tries_by_outcome
from outbox.models import TaskState
from outbox.runtime.passes import PASS_STALE_SECONDS

# Enqueue to success spans a call that takes milliseconds and a task that backed off for an
# hour, so the buckets do too.
LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
LATENCY_WINDOW = timedelta(hours=1)


class OutboxCollector:
    """Gauges of the outbox tables; seven queries per scrape, none reading finished tasks
    beyond the last hour's (the latency histogram): they cost what is open, not history."""

    def describe(self) -> Iterator[Metric]:
        # Names only, so registering the collector does not query the database.
        yield from self._families()

    def collect(self) -> Iterator[Metric]:
        tasks, attempts, oldest, latency, circuits, passes = self._families()
        counts, estimated = task_counts()
        for row in counts:
            for state, count in row.by_state.items():
                tasks.add_metric([row.kind, state], count)
        yield tasks

        # Estimated, the successes kept on task rows are the estimated succeeded tasks (a task
        # that succeeded before migration 0010 is counted twice then, until it is pruned).
        on_tasks = sum(row.by_state[TaskState.SUCCEEDED] for row in counts) if estimated else None
        for outcome, count in tries_by_outcome(successes_on_tasks=on_tasks).items():
            attempts.add_metric([outcome], count)
        yield attempts

        age = oldest_due_task_age()
        oldest.add_metric([], max(age.total_seconds(), 0.0) if age is not None else 0.0)
        yield oldest

        histogram = delivery_latency(bounds=LATENCY_BUCKETS, window=LATENCY_WINDOW)
        buckets = [
            (_bucket_label(bound), float(count))
            for bound, count in zip(histogram.bounds, histogram.counts, strict=True)
        ]
        buckets.append(("+Inf", float(histogram.total)))
        latency.add_metric([], buckets, histogram.sum_seconds)
        yield latency

        for circuit in circuit_health():
            circuits.add_metric([circuit.destination], 0.0 if circuit.is_closed else 1.0)
        yield circuits

        live, stale = relay_pass_counts(stale_after=timedelta(seconds=PASS_STALE_SECONDS))
        passes.add_metric(["live"], live)
        passes.add_metric(["stale"], stale)
        yield passes

    @staticmethod
    def _families() -> tuple[
        GaugeMetricFamily,
        GaugeMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
        GaugeMetricFamily,
        GaugeMetricFamily,
    ]:
        return (
            GaugeMetricFamily(
                "outbox_tasks",
                "Tasks per kind and state; succeeded: on PostgreSQL above 20,000 tasks, the "
                "planner's estimate (as of the table's last ANALYZE), exact otherwise.",
                labels=["kind", "state"],
            ),
            # A gauge, not a counter: pruning old tasks deletes their attempts, so it can fall.
            GaugeMetricFamily(
                "outbox_attempts_total",
                "Tries per outcome: the Attempt rows, and the successes kept on task rows "
                "(estimated as outbox_tasks' succeeded is).",
                labels=["outcome"],
            ),
            GaugeMetricFamily(
                "outbox_oldest_due_task_age_seconds",
                "How long the longest-waiting due task has been due; 0 when none is.",
            ),
            HistogramMetricFamily(
                "outbox_delivery_latency_seconds",
                "Enqueue to success (finished_at - created_at) of the tasks that succeeded "
                f"in the last {int(LATENCY_WINDOW.total_seconds())} seconds.",
            ),
            GaugeMetricFamily(
                "outbox_circuit_open",
                "1 while the destination's circuit is open or probing (calls rest), else 0.",
                labels=["destination"],
            ),
            GaugeMetricFamily(
                "outbox_relay_passes",
                "Registered relay passes: live (a recent heartbeat) or stale (none lately: "
                "its worker died or hangs).",
                labels=["state"],
            ),
        )


def _bucket_label(bound: float) -> str:
    return repr(float(bound))


registry = CollectorRegistry(auto_describe=False)
registry.register(OutboxCollector())


# Headers a reverse proxy adds: a request carrying one came through a proxy, so its
# REMOTE_ADDR (127.0.0.1 for a proxy on the same host) says nothing about the caller.
FORWARDING_HEADERS = ("Forwarded", "X-Forwarded-For", "X-Real-IP", "X-Forwarded-Host")


def scrape_allowed(request: HttpRequest) -> bool:
    """`Authorization: Bearer <METRICS_TOKEN>`, or a staff user's API token with
    `outbox.view_task`; without either, a loopback caller only while METRICS_LOOPBACK is on
    (by default only with DEBUG) and the request names no proxy. Deny by default."""
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    presented = presented.strip()
    expected: str = getattr(settings, "METRICS_TOKEN", "")
    if scheme.lower() == "bearer" and expected:
        return hmac.compare_digest(presented.encode(), expected.encode())
    if scheme.lower() == "token" and presented:
        return _staff_token_allows(presented)
    if expected or not getattr(settings, "METRICS_LOOPBACK", False):
        return False
    if any(name in request.headers for name in FORWARDING_HEADERS):
        return False
    return _is_loopback(request.META.get("REMOTE_ADDR", ""))


def _staff_token_allows(key: str) -> bool:
    from rest_framework.authtoken.models import Token

    token = Token.objects.select_related("user").filter(key=key).first()
    if token is None:
        return False
    user = token.user
    return bool(user.is_active and user.is_staff and user.has_perm("outbox.view_task"))


def _is_loopback(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


# A GET-only probe: a POST is a 405 naming GET, never a CSRF refusal (it changes nothing).
@csrf_exempt
@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    if not scrape_allowed(request):
        return HttpResponse(
            "forbidden: send Authorization: Bearer <METRICS_TOKEN> or a staff user's Token\n",
            status=403,
            content_type="text/plain; charset=utf-8",
        )
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_PLAIN_0_0_4)
