"""The outbox's operator endpoints: the task API, the Prometheus metrics, the relay's health."""

from __future__ import annotations

from django.urls import path

from outbox.console.api import TaskDetailApi
from outbox.console.health import relay_health_view
from outbox.console.metrics import metrics_view

urlpatterns = [
    path("api/tasks/<int:task_id>", TaskDetailApi.as_view(), name="api-task-detail"),
    path("metrics", metrics_view, name="metrics"),
    path("health/relay", relay_health_view, name="health-relay"),
]
