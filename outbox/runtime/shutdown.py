"""How a `qcluster` stops: in order on the first SIGTERM/SIGINT, at once on the second.

django-q2 stops a cluster when its main process gets SIGTERM or SIGINT, but it tells its
workers only by queueing a STOP after their current task: a pass would go on claiming for up
to PASS_SECONDS. Our `qcluster` creates a shared event before the cluster forks its processes,
so every worker sees it, and sets it from the main process's signal handlers.

A service manager (systemd's KillMode=control-group, `timeout`, `kill -- -PGID`) sends the
signal to every process of the cluster at once. django-q2's sentinel keeps SIGTERM's default
action, so it died on the spot, possibly inside a wait on the cluster's stop event; the main
process then blocked forever in that event's `set()` (a multiprocessing Condition waits for the
dead sleeper to wake). So the processes under the main one ignore the signal - the main process
alone coordinates the stop - except for django-q2's own kill of a worker past its timeout.

The main process allows a grace period for the orderly stop. A second signal, or the grace
period running out, kills the cluster's processes at once and logs which tasks were left to
their leases (another pass takes them again when the leases expire).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import threading
from pathlib import Path
from types import FrameType
from typing import Any

logger = logging.getLogger("outbox.shutdown")

_event: Any = None
_main_pid: int | None = None
_signals_seen = 0
_forcing = threading.Lock()
FORCED_EXIT_CODE = 1


def install(grace_seconds: float) -> None:
    """Create the shared event and chain it in front of the current SIGTERM/SIGINT handlers.

    Call in the main process after django-q2's Cluster() installed its handlers and before
    the cluster forks.
    """
    global _event, _main_pid, _signals_seen
    _event = multiprocessing.get_context("fork").Event()
    _main_pid = os.getpid()
    _signals_seen = 0
    _patch_sentinel()
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(sig)

        def handler(signum: int, frame: FrameType | None, previous: Any = previous) -> None:
            global _signals_seen
            if os.getpid() != _main_pid:
                # A forked process that has not installed its own handler yet.
                _in_child(signum, frame)
                return
            _signals_seen += 1
            if _signals_seen > 1:
                force_stop(f"second signal {signal.Signals(signum).name}")
                return
            logger.warning(
                "qcluster got %s: relay passes finish their running attempts and give back "
                "the rest; stopping at once after %.0f s or on a second signal",
                signal.Signals(signum).name,
                grace_seconds,
            )
            timer = threading.Timer(
                grace_seconds, force_stop, args=(f"grace period of {grace_seconds:.0f} s over",)
            )
            timer.daemon = True
            timer.start()
            _event.set()
            if callable(previous):
                previous(signum, frame)  # django-q2's: returns once the cluster has stopped
            timer.cancel()
            if not _forcing.acquire(blocking=False):
                # The grace period ran out just now: let force_stop finish its report and exit.
                threading.Event().wait()

        signal.signal(sig, handler)


def cluster_stopping() -> bool:
    return _event is not None and _event.is_set()


def _in_child(signum: int, frame: FrameType | None) -> None:
    """The handler of every process under the main one (sentinel, workers, monitor, pusher)."""
    if signum == signal.SIGTERM and _timed_out_worker():
        # django-q2's sentinel kills a worker past Q_TIMEOUT with SIGTERM: let that work.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
    # Otherwise the main process got the same signal and stops the cluster in order.


def _timed_out_worker() -> bool:
    from django_q.worker import worker

    process = multiprocessing.current_process()
    args: Any = getattr(process, "_args", ())
    if getattr(process, "_target", None) is not worker or len(args) < 3:
        return False
    return bool(args[2].value == 0)  # the sentinel's countdown for this worker's task


def _patch_sentinel() -> None:
    """Make django-q2's sentinel (and so every process it forks) use `_in_child`."""
    from django_q import cluster

    base = cluster.Sentinel
    if getattr(base, "outbox_patched", False):
        return

    class Sentinel(base):  # type: ignore[misc,valid-type]
        outbox_patched = True

        def start(self) -> None:
            # Sentinel.__init__ has just set SIGTERM to its default action; its children
            # inherit whatever is installed when it forks them, below.
            signal.signal(signal.SIGTERM, _in_child)
            signal.signal(signal.SIGINT, _in_child)
            super().start()

    cluster.Sentinel = Sentinel


def force_stop(reason: str) -> None:
    """Kill every process of the cluster now and exit; their tasks wait out their leases."""
    if not _forcing.acquire(blocking=False):
        return  # the grace timer and a second signal at once: one of them does it
    pids = _descendants(os.getpid())
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    left = _leased_tasks(pids)
    if left:
        logger.error(
            "qcluster stops at once (%s): tasks %s left to their leases, taken again when "
            "they expire",
            reason,
            ", ".join(left),
        )
    else:
        logger.error("qcluster stops at once (%s): no task was left to a lease", reason)
    for handler in logging.getLogger().handlers:
        handler.flush()
    os._exit(FORCED_EXIT_CODE)


def _descendants(root: int) -> list[int]:
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: the fields follow the last ")".
        fields = text[text.rfind(")") + 2 :].split()
        parents[int(stat.parent.name)] = int(fields[1])
    found: list[int] = []
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent]
        found.extend(children)
        frontier.extend(children)
    return found


def _leased_tasks(pids: list[int], timeout: float = 5.0) -> list[str]:
    """Tasks leased by these processes, as `id (kind)`; asked in a thread that may not hang."""
    found: list[str] = []

    def ask() -> None:
        from django.db import connection
        from django.db.models import Q

        from outbox.models import Task, TaskState

        host = socket.gethostname()
        leased_by = Q()
        for pid in pids:
            leased_by |= Q(leased_by__startswith=f"{host}:{pid}:")
        try:
            rows = Task.objects.filter(leased_by, state=TaskState.RUNNING).values_list("id", "kind")
            found.extend(f"{task_id} ({kind})" for task_id, kind in rows[:200])
        except Exception:
            logger.exception("could not list the tasks left to their leases")
        finally:
            connection.close()

    if pids:
        asker = threading.Thread(target=ask, daemon=True)
        asker.start()
        asker.join(timeout)
    return found
