from __future__ import annotations

from django.apps import AppConfig


class OutboxConsoleConfig(AppConfig):
    name = "outbox.console"
    label = "outbox_console"
    verbose_name = "Outbox console"
