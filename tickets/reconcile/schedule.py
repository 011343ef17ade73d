"""The nightly reconcile (a django-q2 schedule), and how its result shows: a line on the
dashboard and, when RECONCILE_DRIFT_FAILS_CHECK is on, a failing `outbox_status --check`.
`/health/relay` never looks at it: drift is the accountants' to work, not an outage."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from outbox.console.links import DashboardNote
from tickets.models import ReconcileRun
from tickets.reconcile.facts import Scope
from tickets.reconcile.run import ReconcileFailed, Reconciler

SCHEDULE_NAME = "tickets-nightly-reconcile"
SCHEDULE_FUNC = "tickets.reconcile.schedule.nightly_reconcile"


def nightly_reconcile() -> dict[str, Any]:
    """The schedule's task: reconcile the tickets created or changed in the last day."""
    now = timezone.now()
    try:
        run = Reconciler(
            scope=Scope(since=now - timedelta(days=1), until=now), by="schedule", trigger="schedule"
        ).run()
    except ReconcileFailed as exc:
        return {"run": exc.run.pk, "status": exc.run.status, "error": str(exc)}
    return {"run": run.pk, "status": run.status, "drift_open": run.drift_open}


def last_finished_run() -> ReconcileRun | None:
    return (
        ReconcileRun.objects.exclude(status=ReconcileRun.Status.RUNNING)
        .order_by("-started_at", "-pk")
        .first()
    )


def dashboard_note() -> DashboardNote | None:
    run = last_finished_run()
    if run is None:
        return DashboardNote("Reconcile: no run yet.")
    when = timezone.localtime(run.started_at).strftime("%Y-%m-%d %H:%M %Z")
    url = reverse("admin:tickets_reconcilerun_change", args=[run.pk])
    if run.status == ReconcileRun.Status.ERROR:
        return DashboardNote(
            f"Last reconcile ({when}) did not finish: {run.error[:120]}", url, True
        )
    if run.drift_open:
        return DashboardNote(
            f"Last reconcile ({when}): {run.drift_open} open drift item(s).", url, True
        )
    return DashboardNote(f"Last reconcile ({when}): no open drift.", url)


def drift_check() -> str | None:
    """For `outbox_status --check`: the last run's open drift, when configured to count."""
    if not getattr(settings, "RECONCILE_DRIFT_FAILS_CHECK", False):
        return None
    run = last_finished_run()
    if run is None or not run.drift_open:
        return None
    return f"reconcile run #{run.pk} has {run.drift_open} open drift item(s)"
