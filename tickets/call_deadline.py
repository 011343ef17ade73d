"""A call's total deadline, for `requests`: its sockets are shut down when the deadline passes.

`requests` has only per-operation timeouts: an API that trickles a byte every few seconds keeps a
call alive for ever. The deadline is what lets a lease bound every call. `DeadlineAdapter`'s pools
note the connections a call takes; `CallDeadline` is one call's deadline; one watcher thread per
process shuts down the sockets of the calls whose deadline passed. (A `threading.Timer` per call
started a thread per call: a third of the client's CPU time on a seller's load.)
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import os
import socket
import threading
import time
from typing import Any

from requests.adapters import HTTPAdapter
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

# Connections a call in this thread takes from the pool, so its deadline can cut them.
_watched = threading.local()


class _Watched:
    """Hands each connection a call takes to the call's deadline (a pool mix-in)."""

    def _get_conn(self, timeout: float | None = None) -> Any:
        conn = super()._get_conn(timeout)  # type: ignore[misc]
        holder = getattr(_watched, "connections", None)
        if holder is not None:
            holder.append(conn)
        return conn


class _WatchedHTTPConnectionPool(_Watched, HTTPConnectionPool):
    pass


class _WatchedHTTPSConnectionPool(_Watched, HTTPSConnectionPool):
    pass


class DeadlineAdapter(HTTPAdapter):
    """An adapter whose connections a `CallDeadline` can cut."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _WatchedHTTPConnectionPool,
            "https": _WatchedHTTPSConnectionPool,
        }


class CallDeadline:
    """`with CallDeadline(seconds) as deadline:` around one call; `deadline.fired` after it
    says whether the deadline cut it (the call then raised)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.fired = False
        self.connections: list[Any] = []
        # Set by the call's end or by the watcher, under the watcher's lock: never both.
        self.over = False
        self._started = 0.0

    def __enter__(self) -> CallDeadline:
        _watched.connections = self.connections
        self._started = time.monotonic()
        _watcher.watch(self, self._started + self.seconds)
        return self

    def elapsed(self) -> float:
        return time.monotonic() - self._started

    def __exit__(self, *exc: object) -> None:
        _watched.connections = None
        _watcher.end(self)

    def cut(self) -> None:
        """Shut the call's sockets down (the watcher calls it once the deadline has passed)."""
        self.fired = True
        for conn in self.connections:
            sock = getattr(conn, "sock", None)
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


class _Watcher:
    """The deadlines of the calls in flight in this process, in a heap, and one thread that
    cuts the calls whose deadline passed. An ended call stays in the heap, marked over, until
    its deadline comes; the thread wakes at most every `GRANULARITY` seconds, however many
    calls end, so a deadline is kept to within that much."""

    GRANULARITY = 0.05

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._wakeup = threading.Condition(threading.Lock())
        self._heap: list[tuple[float, int, CallDeadline]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def watch(self, deadline: CallDeadline, at: float) -> None:
        with self._wakeup:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="gateway-call-deadlines", daemon=True
                )
                self._thread.start()
            earlier = not self._heap or at < self._heap[0][0]
            heapq.heappush(self._heap, (at, next(self._order), deadline))
            if earlier:
                self._wakeup.notify()

    def end(self, deadline: CallDeadline) -> None:
        with self._wakeup:
            deadline.over = True
        # Its connections went back to the pool: never cut one later.
        deadline.connections = []

    def _run(self) -> None:
        with self._wakeup:
            while True:
                now = time.monotonic()
                while self._heap and self._heap[0][0] <= now:
                    _, _, deadline = heapq.heappop(self._heap)
                    if not deadline.over:
                        deadline.over = True
                        deadline.cut()
                wait = self._heap[0][0] - now if self._heap else None
                self._wakeup.wait(None if wait is None else max(wait, self.GRANULARITY))


_watcher = _Watcher()
# A forked child (django-q2's workers) has no watcher thread, and perhaps a lock held at the
# fork: it starts afresh.
os.register_at_fork(after_in_child=_watcher._reset)
