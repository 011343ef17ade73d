"""Whether the relay can work: each destination's circuit and the passes' heartbeats."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import (
    Count,
    Q,
)
from django.db.models.functions import Now
from django.utils import timezone

from outbox.models import (
    Circuit,
    RelayPass,
    Task,
)

CIRCUIT_CLOSED = "closed"
CIRCUIT_OPEN = "open"
CIRCUIT_PROBING = "probing"


@dataclass(frozen=True, slots=True)
class CircuitHealth:
    """A destination's circuit as an operator reads it."""

    destination: str
    state: str
    """closed; open (resting until `next_probe_at`); probing (the rest is over: the next call,
    or the one in flight, decides)."""
    down_since: datetime | None
    next_probe_at: datetime | None
    last_error: str
    opened_count: int

    @property
    def is_closed(self) -> bool:
        return self.state == CIRCUIT_CLOSED


def circuit_health(*, now: datetime | None = None) -> list[CircuitHealth]:
    """Every destination that ever had a circuit, by name; one query."""
    now = now or timezone.now()
    rows = []
    for circuit in Circuit.objects.order_by("name"):
        if circuit.opened_until is None:
            state = CIRCUIT_CLOSED
        elif circuit.opened_until > now:
            state = CIRCUIT_OPEN
        else:
            state = CIRCUIT_PROBING
        down_since = circuit.down_since
        if down_since is None and circuit.opened_until is not None:
            # A circuit opened before `down_since` existed: this rest's start.
            down_since = circuit.opened_until - timedelta(seconds=circuit.cooldown_seconds)
        rows.append(
            CircuitHealth(
                destination=circuit.name,
                state=state,
                down_since=None if state == CIRCUIT_CLOSED else down_since,
                next_probe_at=circuit.opened_until,
                last_error=circuit.last_error,
                opened_count=circuit.opened_count,
            )
        )
    return rows


@dataclass(frozen=True, slots=True)
class PassHealth:
    worker: str
    node: str
    started_at: datetime
    heartbeat_at: datetime
    stale: bool


@dataclass(frozen=True, slots=True)
class RelayHealth:
    passes: list[PassHealth]
    running_by_node: dict[str, int]
    """Tasks in state running per node (host:pid of `leased_by`)."""

    @property
    def live(self) -> int:
        return sum(1 for p in self.passes if not p.stale)

    @property
    def stale(self) -> int:
        return sum(1 for p in self.passes if p.stale)


def node_of(worker: str) -> str:
    """`host:pid` of a `host:pid:thread` worker name; anything else as it is."""
    parts = worker.split(":")
    return ":".join(parts[:2]) if len(parts) >= 3 else worker


def relay_health(*, stale_after: timedelta, now: datetime | None = None) -> RelayHealth:
    """The registered relay passes (stale: no heartbeat within `stale_after`) and the running
    tasks per node; two queries."""
    now = now or timezone.now()
    passes = [
        PassHealth(
            worker=row.worker,
            node=node_of(row.worker),
            started_at=row.started_at,
            heartbeat_at=row.heartbeat_at,
            stale=row.heartbeat_at < now - stale_after,
        )
        for row in RelayPass.objects.order_by("worker", "started_at")
    ]
    running: dict[str, int] = {}
    rows = Task.objects.running().order_by().values_list("leased_by").annotate(n=Count("id"))
    for leased_by, n in rows.values_list("leased_by", "n"):
        node = node_of(leased_by) or "(unknown)"
        running[node] = running.get(node, 0) + n
    return RelayHealth(passes=passes, running_by_node=dict(sorted(running.items())))


def relay_pass_counts(*, stale_after: timedelta) -> tuple[int, int]:
    """(live, stale) registered relay passes, by the database clock; one query."""
    fresh = Q(heartbeat_at__gte=Now() - stale_after)
    row = RelayPass.objects.aggregate(
        live=Count("id", filter=fresh), stale=Count("id", filter=~fresh)
    )
    return row["live"], row["stale"]
