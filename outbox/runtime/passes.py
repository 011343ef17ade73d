"""The django-q2 entry points of the relay: bounded passes that chain themselves.

A pass (`run_pass`) registers itself, runs a `Relay` for PASS_SECONDS, then hands over: it
enqueues its successor. A pass that keeps finding full batches starts another, up to
MAX_PASSES over every cluster on the database (`spawn_passes`); the minute schedule
(`keep_passes_alive`) brings one back after a crash. These dotted paths are stored by
django-q2 (schedules, queued tasks): moving a function needs a data migration and an alias.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import Any, TypeVar

from django.db import connection, transaction
from django.db.models.functions import Now
from django.utils import timezone

from outbox import tracing
from outbox.claim import DATABASE_TROUBLE
from outbox.conf import outbox_settings
from outbox.models import RelayPass
from outbox.runtime.relay import PassStats, Relay, worker_name

T = TypeVar("T")
# The relay's logger name, as before these modules were split out of it: operators filter on it.
logger = logging.getLogger("outbox.relay")

PASS_STALE_SECONDS = 20.0
# A pass that keeps claiming full batches asks for another this often (a short transaction;
# MAX_PASSES caps them). Every 2 s, a backlog of 30,000 was half drained before the third
# pass of a fresh cluster started.
SPAWN_EVERY_SECONDS = 0.5

# The django-q2 schedules the relay needs (created by migrations 0002/0005/0013); by name, so an
# operator's change of interval is kept and only a deleted one comes back.
SCHEDULES: tuple[dict[str, Any], ...] = (
    # Brings a relay pass back after a crash; passes chain themselves the rest of the time.
    {
        "name": "outbox-keep-relay-alive",
        "func": "outbox.runtime.passes.keep_passes_alive",
        "minutes": 1,
    },
    {"name": "outbox-prune", "func": "outbox.services.prune_finished_tasks", "minutes": 60},
)


def run_pass(pass_id: str | None = None) -> dict[str, Any]:
    """One bounded relay pass; the django-q2 task that keeps the outbox drained."""
    conf = outbox_settings()
    me = _retrying(lambda: _register_pass(pass_id))
    if me is None:
        return {"skipped": "enough passes are running"}
    relay = Relay.from_settings(on_backlog=_spawn_on_backlog())
    stats = PassStats()
    try:
        with _stop_on_signals(relay.stop_event):
            stats = relay.run(seconds=conf.pass_seconds, heartbeat=lambda: _beat(me))
    finally:
        try:
            _retrying(lambda: _hand_over(me, relay.stop_event.is_set(), stats.saw_backlog))
        except DATABASE_TROUBLE:
            # The minute schedule and the next worker start bring the relay back.
            logger.exception("could not hand over to the next relay pass")
        # django-q2 may end its worker without running atexit: export this pass's spans now.
        tracing.flush()
    return {
        "claimed": stats.claimed,
        "succeeded": stats.succeeded,
        "retried": stats.retried,
        "failed": stats.failed,
        "lease_lost": stats.lease_lost,
        "released": stats.released,
    }


def _retrying(action: Callable[[], T], *, tries: int = 5) -> T:
    """Run a short database action, riding out a killed connection or a restart."""
    for attempt in range(1, tries + 1):
        try:
            return action()
        except DATABASE_TROUBLE:
            if attempt == tries:
                raise
            logger.warning("database unavailable; trying again", exc_info=True)
            connection.close()
            time.sleep(0.5 * attempt)
    raise AssertionError("unreachable")


def _hand_over(me: uuid.UUID, stopping: bool, saw_backlog: bool) -> None:
    RelayPass.objects.filter(id=me).delete()
    if not stopping and (saw_backlog or _live_passes() < 1):
        spawn_passes(1)


def _register_pass(pass_id: str | None) -> uuid.UUID | None:
    with transaction.atomic():
        _lock_pass_table()
        _forget_dead_passes_here()
        if pass_id is not None and RelayPass.objects.filter(id=pass_id).update(
            heartbeat_at=Now(), worker=worker_name()
        ):
            return uuid.UUID(pass_id)
        if _live_passes() >= outbox_settings().max_passes:
            return None
        return RelayPass.objects.create(worker=worker_name()).id


def _beat(pass_id: uuid.UUID) -> None:
    RelayPass.objects.filter(id=pass_id).update(heartbeat_at=Now())


def _live_passes() -> int:
    cutoff = Now() - timedelta(seconds=PASS_STALE_SECONDS)
    return RelayPass.objects.filter(heartbeat_at__gte=cutoff).count()


def _forget_dead_passes_here() -> int:
    """Delete the records of passes whose process on this host has ended (killed, say).

    Their heartbeats stay fresh for PASS_STALE_SECONDS, counted as live against MAX_PASSES: a
    cluster started on the host where two were just killed would otherwise start no pass
    until those records go stale and the minute schedule runs (35 s in the bad-day run). A
    pass on another host is left to its heartbeat. Call it holding the pass table's lock.
    """
    host = socket.gethostname()
    dead = []
    for pk, worker in RelayPass.objects.filter(worker__startswith=f"{host}:").values_list(
        "id", "worker"
    ):
        pid = worker.split(":")[1] if worker.count(":") >= 2 else ""
        if pid.isdigit() and not _process_alive(int(pid)):
            dead.append(pk)
    if dead:
        RelayPass.objects.filter(id__in=dead).delete()
    return len(dead)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process: alive
    # A killed worker stays a zombie until some process reaps it (its parent died with it,
    # and the host's init may take its time, or never come in a container): signal 0
    # still reaches it, but it runs nothing.
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read()
    except OSError:
        return True  # no /proc (macOS): signal 0 is all there is to go by
    state = fields[fields.rfind(b")") + 2 : fields.rfind(b")") + 3]
    return state not in (b"Z", b"X")


def _lock_pass_table() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext('outbox_relay_pass'))")


def spawn_passes(count: int, *, only_if_none_live: bool = False) -> int:
    """Enqueue up to `count` passes on the django-q2 broker, never beyond MAX_PASSES live;
    with `only_if_none_live`, only when no pass is live (the keeper's rule)."""
    from django_q.tasks import async_task

    with transaction.atomic():
        _lock_pass_table()
        _forget_dead_passes_here()
        RelayPass.objects.filter(
            heartbeat_at__lt=Now() - timedelta(seconds=PASS_STALE_SECONDS)
        ).delete()
        live = _live_passes()
        if only_if_none_live and live:
            count = 0
        room = outbox_settings().max_passes - live
        reserved = [RelayPass.objects.create(worker="(queued)") for _ in range(min(count, room))]
    for reservation in reserved:
        async_task(
            "outbox.runtime.passes.run_pass",
            str(reservation.id),
            task_name=f"outbox-relay-pass-{reservation.id}",
        )
    return len(reserved)


def _spawn_on_backlog() -> Callable[[], None]:
    last = 0.0

    def spawn() -> None:
        nonlocal last
        now = time.monotonic()
        if now - last < SPAWN_EVERY_SECONDS:
            return
        last = now
        try:
            spawn_passes(1)
        except Exception:
            logger.exception("could not start another relay pass")

    return spawn


def keep_passes_alive() -> int:
    """The minute schedule: make sure at least one pass runs (after a crash, say)."""
    if not outbox_settings().autostart:
        return 0
    return spawn_passes(1, only_if_none_live=True)


@contextmanager
def _stop_on_signals(stop_event: threading.Event) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: FrameType | None) -> None:
        logger.warning("relay pass got signal %s: finishing in-flight attempts", signum)
        stop_event.set()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def all_schedules(*, applied: Iterable[tuple[str, str]] | None = None) -> list[dict[str, Any]]:
    """The relay's schedules and those apps registered (outbox.schedules); with `applied`,
    only the registered ones whose creating migration is in it."""
    from outbox import schedules

    extra = schedules.registered()
    if applied is not None:
        done = set(applied)
        extra = [spec for spec in extra if spec["migration"] in done]
    return [*SCHEDULES, *extra]


def missing_schedules(
    *, using: str = "default", applied: Iterable[tuple[str, str]] | None = None
) -> list[str]:
    """The names of the relay's schedules (and the apps' registered ones) that are not in
    django-q2's table."""
    from django_q.models import Schedule

    names = [spec["name"] for spec in all_schedules(applied=applied)]
    rows = Schedule.objects.using(using).filter(name__in=names)
    present = set(rows.values_list("name", flat=True))
    return [name for name in names if name not in present]


def next_at_hour(hour: int, *, now: datetime | None = None) -> datetime:
    """The next time the clock (UTC) shows `hour`:00, a daily schedule's first run."""
    now = now or timezone.now()
    at = now.astimezone(UTC).replace(hour=hour, minute=0, second=0, microsecond=0)
    return at if at > now else at + timedelta(days=1)


def ensure_schedules() -> list[str]:
    """Create the relay's schedules that are missing (deleted in the admin, say); returns
    the names created. `qcluster` runs it at start; `outbox_status --repair-schedules` too."""
    from django_q.models import Schedule

    created = []
    for spec in all_schedules():
        defaults: dict[str, Any] = {
            "func": spec["func"],
            "schedule_type": Schedule.MINUTES,
            "minutes": spec["minutes"],
            "repeats": -1,
        }
        if spec.get("hour") is not None:
            defaults["next_run"] = next_at_hour(int(spec["hour"]))
        _, new = Schedule.objects.get_or_create(name=spec["name"], defaults=defaults)
        if new:
            logger.warning("recreated the missing django-q2 schedule %s", spec["name"])
            created.append(str(spec["name"]))
    return created
