"""A claimed task's lease, as the worker running its handler sees it.

The database holds the truth (`lease_expires_at`, by the database's clock). The worker keeps a
conservative local estimate: the lease runs from the moment the claim or renewal was *sent*,
which is never later than the database's own start, so the estimate never outlives the row.

Before every external call a handler asks `before_external_call()` for its time budget: the
call may only start when the lease will still hold when the call's deadline has passed. That
is what makes a lease that could not be renewed safe: whatever is in flight ends before another
pass can take the task over.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

from django.db import connections

from outbox.conf import outbox_settings
from outbox.errors import LeaseLost

# A call is not started with less than this left after its deadline, for the clock skew
# between the local estimate and the database and for the write of the outcome.
SAFETY_MARGIN_SECONDS = 1.0
# A call that could not run for at least this long is not worth starting.
MIN_CALL_SECONDS = 0.5


@dataclass(eq=False)
class Lease:
    token: uuid.UUID
    seconds: float
    expires: float = 0.0  # time.monotonic() deadline, set from the claim's send time
    # Set once, never cleared, read by the handler's thread: a plain flag is enough (one
    # Event per task was a Condition and two locks for every claimed task).
    _lost: bool = field(default=False)

    @classmethod
    def starting(cls, token: uuid.UUID, seconds: float, sent_at: float) -> Lease:
        return cls(token=token, seconds=seconds, expires=sent_at + seconds)

    def renewed(self, sent_at: float) -> None:
        if not self.lost:
            self.expires = max(self.expires, sent_at + self.seconds)

    def lose(self) -> None:
        """Another pass owns the task now, or this pass gave it up: no further calls."""
        self._lost = True

    @property
    def lost(self) -> bool:
        return self._lost

    def remaining(self) -> float:
        return 0.0 if self.lost else self.expires - time.monotonic()


_current: ContextVar[Lease | None] = ContextVar("outbox_lease", default=None)


@contextmanager
def holding(lease: Lease) -> Iterator[Lease]:
    """Make `lease` the one `before_external_call()` checks while a handler runs."""
    token = _current.set(lease)
    try:
        yield lease
    finally:
        _current.reset(token)


def hold(lease: Lease) -> None:
    """`holding` for code that runs in a context of its own (each task's handler does)."""
    _current.set(lease)


def current_lease() -> Lease | None:
    return _current.get()


def before_external_call(limit: float | None = None) -> float:
    """Seconds the next external call may take in all; raises LeaseLost if it must not start.

    Call it right before every external call, and enforce the answer as the call's total
    deadline. It also gives this thread's database connections back: a handler thread holds
    one only while it talks to the database, never across a network call. Outside a handler
    (a shell, a start-up check) there is no lease and the budget is the configured limit.
    """
    budget = outbox_settings().call_seconds if limit is None else limit
    lease = _current.get()
    if lease is not None:
        if lease.lost:
            raise LeaseLost("the task's lease was lost; the call was not started")
        left = lease.remaining() - SAFETY_MARGIN_SECONDS
        if left < MIN_CALL_SECONDS:
            raise LeaseLost(
                f"the task's lease has {max(0.0, lease.remaining()):.1f}s left, too little for "
                "another external call; the call was not started"
            )
        budget = min(budget, left)
    release_connections()
    return budget


def release_connections() -> None:
    """Close this thread's idle database connections (back to the pool on PostgreSQL)."""
    for conn in connections.all(initialized_only=True):
        if not conn.in_atomic_block:
            conn.close()
