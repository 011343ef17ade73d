"""How an idle relay pass waits for new work: LISTEN on PostgreSQL, a short poll on SQLite."""

from __future__ import annotations

import logging
import select
import threading
from typing import Any

from django.db import connection

from outbox.services import NOTIFY_CHANNEL

# The relay's logger name, as before these modules were split out of it: operators filter on it.
logger = logging.getLogger("outbox.relay")


class Waiter:
    """Sleeps until new work is committed: LISTEN on PostgreSQL, a short poll on SQLite."""

    def __init__(self, poll_seconds: float) -> None:
        self.poll_seconds = poll_seconds
        self.conn: Any = None

    def __enter__(self) -> Waiter:
        if connection.vendor == "postgresql":
            try:
                import psycopg

                params = connection.get_connection_params()
                params.pop("cursor_factory", None)
                params.pop("context", None)
                self.conn = psycopg.connect(**params, autocommit=True)
                self.conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
            except Exception:
                logger.exception("LISTEN failed; the relay polls instead")
                self.conn = None
        return self

    def __exit__(self, *exc: object) -> None:
        if self.conn is not None:
            self.conn.close()

    def wait(self, timeout: float, stop_event: threading.Event) -> None:
        if timeout <= 0:
            return
        if self.conn is None:
            stop_event.wait(min(timeout, self.poll_seconds))
            return
        # Retries and scheduled tasks become due without a NOTIFY: wake at least every 0.25s.
        timeout = min(timeout, 0.25)
        try:
            ready, _, _ = select.select([self.conn.fileno()], [], [], timeout)
            if ready:
                for _ in self.conn.notifies(timeout=0, stop_after=0):
                    pass
        except Exception:
            logger.exception("LISTEN connection broke; the relay polls instead")
            self.conn.close()
            self.conn = None
