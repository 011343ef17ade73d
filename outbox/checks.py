"""System checks: refuse a django-q2 configuration that would run a relay pass twice, and
say when the schedules that keep the relay alive are gone."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register
from django.db import connections
from django.db.migrations.recorder import MigrationRecorder

from outbox.conf import outbox_settings

# The tag of the checks about the relay's own settings (`manage.py check --tag outbox`).
OUTBOX_TAG = "outbox"


@register(OUTBOX_TAG)
def check_relay_timing(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    errors = []
    q = getattr(settings, "Q_CLUSTER", {})
    conf = outbox_settings()
    timeout, retry = q.get("timeout"), q.get("retry", 60)
    if timeout is None:
        errors.append(
            Error(
                "Q_CLUSTER['timeout'] is not set.",
                hint="Set it below Q_CLUSTER['retry'] so django-q2 never runs a pass twice.",
                id="outbox.E001",
            )
        )
        return errors
    if timeout >= retry:
        errors.append(
            Error(
                f"Q_CLUSTER['timeout'] ({timeout}s) must be below Q_CLUSTER['retry'] ({retry}s).",
                hint="django-q2 hands a task to another worker after `retry` seconds; a pass "
                "still running then would run twice.",
                id="outbox.E002",
            )
        )
    budget = conf.pass_seconds + conf.max_task_seconds
    if budget >= timeout:
        errors.append(
            Error(
                f"OUTBOX_PASS_SECONDS + OUTBOX_MAX_TASK_SECONDS ({budget:g}s) must be below "
                f"Q_CLUSTER['timeout'] ({timeout}s).",
                hint="A pass must return before django-q2 kills its worker.",
                id="outbox.E003",
            )
        )
    from outbox.lease import MIN_CALL_SECONDS, SAFETY_MARGIN_SECONDS

    # Right before a renewal is due, the lease must still outlive a whole call.
    needed = conf.call_seconds + conf.renew_seconds + SAFETY_MARGIN_SECONDS
    if conf.lease_seconds < needed:
        errors.append(
            Error(
                f"OUTBOX_LEASE_SECONDS ({conf.lease_seconds:g}s) must be at least "
                f"OUTBOX_CALL_SECONDS + OUTBOX_RENEW_SECONDS + {SAFETY_MARGIN_SECONDS:g}s "
                f"({needed:g}s).",
                hint="A call starts only while the lease outlives its deadline; a shorter lease "
                "would refuse calls between renewals.",
                id="outbox.E004",
            )
        )
    if conf.call_seconds < MIN_CALL_SECONDS:
        errors.append(
            Error(
                f"OUTBOX_CALL_SECONDS ({conf.call_seconds:g}s) must be at least "
                f"{MIN_CALL_SECONDS:g}s.",
                id="outbox.E006",
            )
        )
    workers = q.get("workers", 1)
    if workers <= conf.max_passes:
        errors.append(
            Error(
                f"Q_CLUSTER['workers'] ({workers}) must exceed OUTBOX_MAX_PASSES "
                f"({conf.max_passes}).",
                hint="Passes hold a worker each; the schedules need one free.",
                id="outbox.E005",
            )
        )
    return errors


@register(Tags.database)
def check_relay_schedules(
    app_configs: Any = None, databases: Any = None, **kwargs: Any
) -> list[Warning]:
    """The keep-alive and prune schedules live in django-q2's table, where a superuser could
    delete them; `migrate` does not bring back rows of a migration already applied.

    A database check: it runs with `check --database default` and before `migrate`, never
    where no database is at hand (`check --deploy` in a build). A database that does not
    answer fails the command with the driver's error, as `migrate` itself would.
    """
    from outbox.runtime.passes import missing_schedules

    warnings: list[Warning] = []
    for alias in databases or []:
        connection = connections[alias]
        applied = MigrationRecorder(connection).applied_migrations()
        if ("outbox", "0002_relay_schedules") not in applied:
            continue  # not migrated yet: the migrations create them
        missing = missing_schedules(using=alias, applied=applied)
        if missing:
            warnings.append(
                Warning(
                    f"The django-q2 schedule(s) {', '.join(missing)} are missing: no relay "
                    "pass restarts after a crash, or finished tasks are never pruned.",
                    hint="Run `python manage.py outbox_status --repair-schedules` (or restart "
                    "`python manage.py qcluster`, which recreates them at start). "
                    "`python manage.py migrate` does not: its migrations already ran.",
                    id="outbox.W001",
                )
            )
    return warnings


@register(Tags.security, deploy=True)
def check_metrics_open(app_configs: Any = None, **kwargs: Any) -> list[Warning]:
    if settings.DEBUG or not getattr(settings, "METRICS_LOOPBACK", False):
        return []
    return [
        Warning(
            "METRICS_LOOPBACK is on: /metrics answers any loopback caller without a token, "
            "and behind a reverse proxy on the same host every request is a loopback caller.",
            hint="Unset it and scrape with METRICS_TOKEN (Authorization: Bearer ...) or a "
            "staff token with outbox.view_task; see docs/METRICS.md.",
            id="outbox.W002",
        )
    ]
