from __future__ import annotations

import logging
import os
from typing import Any

from django.apps import AppConfig

logger = logging.getLogger(__name__)


class OutboxConfig(AppConfig):
    name = "outbox"
    verbose_name = "Outbox"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django_q.signals import post_spawn

        from outbox import checks  # noqa: F401  (registers the system checks)

        post_spawn.connect(_start_relay_with_the_cluster, dispatch_uid="outbox-relay-start")
        os.register_at_fork(after_in_child=_forget_inherited_connection_pools)


_inherited: list[object] = []


def _forget_inherited_connection_pools() -> None:
    # django-q2 forks its workers from a process that may have opened a connection pool. The
    # child must not use the parent's sockets, nor close them: keep the copies referenced
    # (never garbage-collected, never closed) and let the child open pools of its own.
    from django.db.backends.postgresql.base import DatabaseWrapper

    pools: dict[str, object] = getattr(DatabaseWrapper, "_connection_pools", {})
    if pools:
        _inherited.append(dict(pools))
        pools.clear()


def _start_relay_with_the_cluster(sender: Any, proc_name: str, **kwargs: Any) -> None:
    # A worker just started: make sure a relay pass is on its way, so a fresh cluster drains
    # at once instead of waiting for the minute schedule.
    from django.db import close_old_connections

    from outbox.runtime.passes import keep_passes_alive

    try:
        close_old_connections()
        keep_passes_alive()
    except Exception:
        logger.exception("could not start a relay pass from %s", proc_name)
