"""How an idle relay pass waits for new work: LISTEN on PostgreSQL, a short poll on SQLite."""

from __future__ import annotations

import logging
import select
import threading
import time
from typing import Any

from django.db import connection

from outbox.services import NOTIFY_CHANNEL
from outbox.sql import own_connection_params

# The relay's logger name, as before these modules were split out of it: operators filter on it.
logger = logging.getLogger("outbox.relay")


class Waiter:
    """Sleeps until new work is committed: LISTEN on PostgreSQL, a short poll on SQLite.

    The LISTEN connection is opened on a thread while the pass makes its first claim: a fresh
    cluster's first task does not wait for a connection it needs only once there is nothing
    to do. (A task committed before the LISTEN is in place is found by the next claim; the
    wait wakes every 0.25 s whatever happens.)
    """

    # A LISTEN connection that cannot be opened in this long is given up: the pass polls.
    CONNECT_TIMEOUT_SECONDS = 5
    # Retries and scheduled tasks become due without a NOTIFY: look at least this often.
    LISTEN_POLL_SECONDS = 0.25

    def __init__(self, poll_seconds: float) -> None:
        self.poll_seconds = poll_seconds
        self.conn: Any = None
        self._opening: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._looked_at = time.monotonic()

    def __enter__(self) -> Waiter:
        if connection.vendor == "postgresql":
            self._opening = threading.Thread(
                target=self._listen,
                args=(own_connection_params(),),
                name="outbox-listen",
                daemon=True,
            )
            self._opening.start()
        return self

    def _listen(self, params: dict[str, Any]) -> None:
        try:
            import psycopg

            params.setdefault("connect_timeout", self.CONNECT_TIMEOUT_SECONDS)
            conn = psycopg.connect(**params, autocommit=True)
            conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
        except Exception:
            logger.exception("LISTEN failed; the relay polls instead")
            return
        with self._lock:
            if self._closed:  # the pass ended while this connected
                conn.close()
                return
            self.conn = conn

    def _ready(self) -> bool:
        """Whether the LISTEN connection is settled (open, or given up); never blocks."""
        if self._opening is not None and self._opening.is_alive():
            return False
        self._opening = None
        return True

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._closed = True
            conn, self.conn = self.conn, None
        if conn is not None:
            conn.close()

    def new_work(self) -> bool:
        """Whether to claim now while the pass is busy; never blocks.

        True when a NOTIFY came since the last look, or when a poll's interval has passed
        without one (retries become due without a NOTIFY). A busy pass that claimed after every
        outcome made two claims in three that found nothing, on a seller's trickle of webhooks.
        """
        now = time.monotonic()
        interval = self.poll_seconds if self.conn is None else self.LISTEN_POLL_SECONDS
        due = now - self._looked_at >= interval
        if not due and self.conn is not None:
            try:
                ready, _, _ = select.select([self.conn.fileno()], [], [], 0)
            except Exception:
                # The wait sees the broken connection and falls back to polling.
                return True
            if ready:
                for _ in self.conn.notifies(timeout=0, stop_after=0):
                    pass
                due = True
        if due:
            self._looked_at = now
        return due

    def wait(self, timeout: float, stop_event: threading.Event) -> None:
        if timeout <= 0:
            return
        if not self._ready() or self.conn is None:
            stop_event.wait(min(timeout, self.poll_seconds))
            return
        timeout = min(timeout, self.LISTEN_POLL_SECONDS)
        try:
            ready, _, _ = select.select([self.conn.fileno()], [], [], timeout)
            if ready:
                for _ in self.conn.notifies(timeout=0, stop_after=0):
                    pass
        except Exception:
            logger.exception("LISTEN connection broke; the relay polls instead")
            self.conn.close()
            self.conn = None
