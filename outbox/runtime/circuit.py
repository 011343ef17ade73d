"""Per-destination circuit breakers, shared through the database by every process.

After CIRCUIT_FAILURES transient failures in a row (counted in each process), a destination
opens for a cool-down that doubles while it stays down (up to CIRCUIT_MAX_COOLDOWN_SECONDS).
While it is open, calls raise `CircuitOpen`, a `Defer`: the task waits for the cool-down and
spends no attempt. After the cool-down a single call, whichever process wins the probe lease,
tries the destination; its success closes the circuit for everyone.

The state is read from the database at most every REFRESH_SECONDS per process and written
only on transitions, so a healthy destination costs no query per call.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass
from datetime import timedelta

from django.db import transaction
from django.db.models import DurationField, ExpressionWrapper, F, Q
from django.db.models.functions import Coalesce, Now

from outbox.conf import outbox_settings
from outbox.errors import Defer
from outbox.models import Circuit
from outbox.storable import storable_text

REFRESH_SECONDS = 0.5
PROBE_LEASE_SECONDS = 30.0


class CircuitOpen(Defer):
    """The destination is resting after repeated failures; try again after the cool-down."""


@dataclass
class _View:
    open_until: float = 0.0  # time.monotonic() deadline; 0 when closed
    refreshed_at: float = -1e9


class CircuitBreaker:
    def __init__(
        self,
        name: str,
        *,
        failures: int | None = None,
        cooldown: float | None = None,
        max_cooldown: float | None = None,
    ) -> None:
        conf = outbox_settings()
        self.name = name
        self.threshold = failures or conf.circuit_failures
        self.base_cooldown = cooldown or conf.circuit_cooldown_seconds
        self.max_cooldown = max_cooldown or conf.circuit_max_cooldown_seconds
        self._lock = threading.Lock()
        self._refreshing = threading.Lock()
        self._failures = 0
        self._view = _View()
        self._probing = False

    def before_call(self) -> None:
        """Raise CircuitOpen unless the destination may be called now (or we won the probe)."""
        view = self._current()
        now = time.monotonic()
        if not view.open_until:
            return
        if now < view.open_until:
            self._defer(view.open_until - now)
        # The cool-down is over: exactly one call anywhere probes the destination.
        if self._win_probe():
            with self._lock:
                self._probing = True
            return
        self._defer(1.0)

    def record_success(self) -> None:
        with self._lock:
            self._failures = 0
            was_open = bool(self._view.open_until) or self._probing
            self._probing = False
        if was_open:
            Circuit.objects.filter(name=self.name).update(
                opened_until=None,
                probe_until=None,
                cooldown_seconds=self.base_cooldown,
                down_since=None,
                updated_at=Now(),
            )
            with self._lock:
                self._view = _View(open_until=0.0, refreshed_at=time.monotonic())

    def record_failure(self, *, open_now: bool = False, error: str = "") -> None:
        """Count a transient failure; `open_now` for one that no retry can fix soon (the
        destination is misconfigured or not listening), which opens the circuit at once.

        `error` is kept on the circuit when this failure opens it, for the operators' pages.
        """
        with self._lock:
            self._failures += 1
            probing, self._probing = self._probing, False
            should_open = probing or open_now or self._failures >= self.threshold
            if should_open:
                self._failures = 0
        if should_open:
            self._open(longer=probing, error=error)

    def _open(self, *, longer: bool, error: str = "") -> None:
        with transaction.atomic():
            circuit, _ = Circuit.objects.select_for_update().get_or_create(name=self.name)
            if circuit.opened_until is not None and not longer:
                # Another process opened it already: read its deadline on the next call.
                with self._lock:
                    self._view = _View(open_until=self._view.open_until, refreshed_at=-1e9)
                return
            cooldown = (
                min(self.max_cooldown, circuit.cooldown_seconds * 2)
                if longer
                else self.base_cooldown
            )
            Circuit.objects.filter(name=self.name).update(
                opened_until=Now() + timedelta(seconds=cooldown),
                cooldown_seconds=cooldown,
                probe_until=None,
                opened_count=F("opened_count") + 1,
                # A failed probe keeps the outage's start; a fresh open starts one.
                down_since=Coalesce(F("down_since"), Now()),
                last_error=storable_text(error, limit=1000),
                updated_at=Now(),
            )
        with self._lock:
            self._view = _View(
                open_until=time.monotonic() + cooldown, refreshed_at=time.monotonic()
            )

    def _win_probe(self) -> bool:
        won = (
            Circuit.objects.filter(name=self.name, opened_until__lte=Now())
            .filter(Q(probe_until__isnull=True) | Q(probe_until__lt=Now()))
            .update(probe_until=Now() + timedelta(seconds=PROBE_LEASE_SECONDS))
        )
        return bool(won)

    def _current(self) -> _View:
        now = time.monotonic()
        with self._lock:
            view = self._view
            if now - view.refreshed_at < REFRESH_SECONDS:
                return view
        # Single flight: one thread per process reads the database, the others go on with the
        # view they have (at most REFRESH_SECONDS old) instead of each taking a connection.
        if not self._refreshing.acquire(blocking=False):
            return view
        try:
            return self._refresh(now)
        finally:
            self._refreshing.release()

    def _refresh(self, now: float) -> _View:
        remaining = (
            Circuit.objects.filter(name=self.name, opened_until__isnull=False)
            .annotate(
                left=ExpressionWrapper(F("opened_until") - Now(), output_field=DurationField())
            )
            .values_list("left", flat=True)
            .first()
        )
        if remaining is None:
            view = _View(open_until=0.0, refreshed_at=now)
        else:
            # A past deadline still means "open, probe due": keep it non-zero.
            view = _View(open_until=now + max(remaining.total_seconds(), 1e-6), refreshed_at=now)
        with self._lock:
            self._view = view
        return view

    def _defer(self, seconds: float) -> None:
        # Spread the waiting tasks over a second so they do not all come back at once.
        raise CircuitOpen(
            f"circuit open for {self.name}: the destination failed repeatedly",
            retry_after=seconds + random.uniform(0.0, 1.0),
        )


_breakers: dict[str, CircuitBreaker] = {}
_breakers_lock = threading.Lock()


def breaker_for(name: str) -> CircuitBreaker:
    with _breakers_lock:
        breaker = _breakers.get(name)
        if breaker is None:
            breaker = _breakers[name] = CircuitBreaker(name)
        return breaker


def reset_breakers() -> None:
    """Forget in-process state (tests)."""
    with _breakers_lock:
        _breakers.clear()
