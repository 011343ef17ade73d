"""The outbox dashboard: what waits and why (destinations' circuits, relay passes, retrying
tasks), counts by kind and state, the last day's activity as an SVG chart.

The chart's geometry is computed here, so the page needs no script and no CDN.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone

from outbox.console import selectors
from outbox.console.health import PASS_STALE
from outbox.console.links import dashboard_links, dashboard_notes, search_urls
from outbox.console.triage import group_list_url
from outbox.models import TaskState

if TYPE_CHECKING:
    from outbox.console.actions import TaskActions

# The biggest failure groups the dashboard shows; the triage page lists them all.
FAILURE_GROUPS_SHOWN = 5


def dashboard_view(model_admin: TaskActions, request: HttpRequest) -> HttpResponse:
    """The page TaskAdmin serves at `dashboard/`, with the task admin's permissions."""
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    now = timezone.now()
    by_kind = selectors.hourly_activity_by_kind(hours=24, now=now)
    hours = selectors.total_buckets(by_kind, hours=24, now=now)
    # Succeeded: the chart's last 24 hours, not every task kept (a scan of them all);
    # the other states: every task in them now.
    counts = selectors.task_counts_by_kind(
        succeeded={kind: sum(b.succeeded for b in buckets) for kind, buckets in by_kind.items()}
    )
    waiting, all_waiting = selectors.waiting_tasks(now=now)
    circuits = selectors.circuit_health(now=now)
    relay = selectors.relay_health(stale_after=PASS_STALE, now=now)
    failures = selectors.failure_groups()
    context = {
        **model_admin.admin_site.each_context(request),
        "title": "Outbox dashboard",
        "opts": model_admin.opts,
        "states": [
            (value, SUCCEEDED_LABEL if value == TaskState.SUCCEEDED else label)
            for value, label in TaskState.choices
        ],
        "counts": [
            (row.kind, [row.by_state[state] for state in TaskState.values], row.total)
            for row in counts
        ],
        "totals": list(selectors.state_totals(counts).values()),
        "grand_total": sum(row.total for row in counts),
        "oldest_due_age": selectors.describe_age(selectors.oldest_due_task_age()),
        "per_minute": selectors.succeeded_per_minute(minutes=5),
        "paused": selectors.paused_kinds(),
        "chart": HourChart.from_buckets(hours),
        # Small multiples: one short row per kind, each scaled to its own busiest hour.
        "kind_charts": [
            (
                kind,
                HourChart.from_buckets(buckets, plot_height=HourChart.KIND_PLOT_HEIGHT, kind=kind),
            )
            for kind, buckets in by_kind.items()
        ],
        "hours": hours,
        "waiting": [(w, selectors.describe_age(w.oldest_age(now))) for w in waiting],
        "all_waiting": all_waiting,
        "oldest_waiting_age": selectors.describe_age(all_waiting.oldest_age(now)),
        "circuits": circuits,
        "open_circuits": [c for c in circuits if not c.is_closed],
        "relay": relay,
        # The failing tasks grouped as on the triage page, the biggest groups first.
        "failure_groups": [
            (group, group_list_url(group.kind, group.signature))
            for group in failures[:FAILURE_GROUPS_SHOWN]
        ],
        "failure_groups_total": len(failures),
        "failing_total": sum(group.count for group in failures),
        "can_retry": model_admin.has_retry_permission(request),
        # Where a group's retry comes back to: this page, with its refresh period.
        "here": request.get_full_path(),
        "passes": [(p, selectors.describe_age(now - p.heartbeat_at)) for p in relay.passes],
        # The domain's lists the search box sends `?q=` to (the engine cannot name them).
        "searches": search_urls(),
        "links": dashboard_links(),
        "notes": dashboard_notes(),
        "refresh_seconds": refresh_seconds(request),
        "default_refresh_seconds": REFRESH_SECONDS,
    }
    return TemplateResponse(request, "admin/outbox/task/dashboard.html", context)


SUCCEEDED_LABEL = "Succeeded (24 h)"

# The page refreshes itself this often (outbox/console/static/outbox/dashboard.js); `?refresh=N`
# sets another period, `?refresh=0` stops it (a link that sticks in a bookmark).
REFRESH_SECONDS = 10
MIN_REFRESH_SECONDS = 2


def refresh_seconds(request: HttpRequest) -> int:
    """The refresh period `?refresh=` asks for (0: none); the default when it is absent or bad."""
    raw = request.GET.get("refresh", "")
    if not raw.isdigit():
        return REFRESH_SECONDS
    seconds = int(raw)
    return 0 if seconds == 0 else max(seconds, MIN_REFRESH_SECONDS)


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    value: int
    css_class: str
    label: str


@dataclass(frozen=True, slots=True)
class HourChart:
    """Bars for an inline SVG, computed here so the page needs no script and no CDN."""

    width: int
    height: int
    plot_height: int
    bars: list[Bar]
    ticks: list[tuple[float, str]]
    peak: int

    SLOT = 30
    PLOT_HEIGHT = 150
    KIND_PLOT_HEIGHT = 40
    TOP = 10

    @classmethod
    def from_buckets(
        cls,
        buckets: Sequence[selectors.HourBucket],
        *,
        plot_height: int = PLOT_HEIGHT,
        kind: str = "",
    ) -> HourChart:
        peak = max([1, *(b.succeeded for b in buckets), *(b.failed for b in buckets)])
        bars: list[Bar] = []
        ticks: list[tuple[float, str]] = []
        bar_width = (cls.SLOT - 6) / 2
        for index, bucket in enumerate(buckets):
            left = index * cls.SLOT + 3
            hour = bucket.start.strftime("%H:00")
            for offset, value, css_class, what in (
                (0.0, bucket.succeeded, "succeeded", "succeeded"),
                (bar_width, bucket.failed, "failed", "failed attempts"),
            ):
                height = plot_height * value / peak
                bars.append(
                    Bar(
                        x=left + offset,
                        y=cls.TOP + plot_height - height,
                        width=bar_width,
                        height=height,
                        value=value,
                        css_class=css_class,
                        label=f"{kind + ', ' if kind else ''}{hour} UTC: {value} {what}",
                    )
                )
            if index % 3 == 0:
                ticks.append((left + bar_width, hour))
        return cls(
            width=len(buckets) * cls.SLOT,
            height=cls.TOP + plot_height + 20,
            plot_height=cls.TOP + plot_height,
            bars=bars,
            ticks=ticks,
            peak=peak,
        )
