"""The task and attempt lists' filters that read no more than the index gives."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from outbox.console import selectors
from outbox.registry import registered_kinds


class CreatedAgeFilter(admin.SimpleListFilter):
    title = "created"
    parameter_name = "created"

    WINDOWS = {
        "hour": timedelta(hours=1),
        "day": timedelta(days=1),
        "week": timedelta(weeks=1),
    }

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [
            ("hour", "In the last hour"),
            ("day", "In the last day"),
            ("week", "In the last week"),
            ("older", "More than a week ago"),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        now = timezone.now()
        if value in self.WINDOWS:
            return queryset.filter(created_at__gte=now - self.WINDOWS[value])
        if value == "older":
            return queryset.filter(created_at__lt=now - self.WINDOWS["week"])
        return queryset


class KindFilter(admin.SimpleListFilter):
    """The task kinds this process has handlers for, and any other kind still open or ended
    badly: read from the registry and the partial indexes, not `SELECT DISTINCT kind` over
    every task that ever ran (200 ms a page load at 1,000,000 tasks)."""

    title = "kind"
    parameter_name = "kind"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        kinds = set(registered_kinds())
        kinds.update(row.kind for row in selectors.task_counts_by_kind(succeeded={}))
        return [(kind, kind) for kind in sorted(kinds)]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        return queryset.filter(kind=value) if value else queryset


class HttpStatusFilter(admin.SimpleListFilter):
    """HTTP statuses of the failed tries of the last week (the partial `started_at` index):
    not `SELECT DISTINCT http_status` over every attempt kept. The parameter is the one
    Django's own filter used, so links to it still work."""

    title = "HTTP status"
    parameter_name = "http_status__exact"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(str(status), str(status)) for status in selectors.recent_http_statuses()]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        return queryset.filter(http_status=int(value)) if value and value.isdigit() else queryset
