"""Tells relay passes, inside django-q2's worker processes, that their cluster is stopping.

django-q2 stops a cluster when its main process gets SIGTERM or SIGINT, but it tells its
workers only by queueing a STOP after their current task: a pass would go on claiming for up
to PASS_SECONDS. Our `qcluster` creates this event before the cluster forks its processes, so
every worker shares it, and sets it from the main process's signal handlers.
"""

from __future__ import annotations

import multiprocessing
import signal
from types import FrameType
from typing import Any

_event: Any = None


def install() -> None:
    """Create the shared event and chain it in front of the current SIGTERM/SIGINT handlers."""
    global _event
    _event = multiprocessing.get_context("fork").Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(sig)

        def handler(signum: int, frame: FrameType | None, previous: Any = previous) -> None:
            _event.set()
            if callable(previous):
                previous(signum, frame)

        signal.signal(sig, handler)


def cluster_stopping() -> bool:
    return _event is not None and _event.is_set()
