"""The engine's settings: `settings.OUTBOX` (upper-case keys) over these defaults.

This dataclass is the one place a default is written. `project/settings.py` passes only what
the environment sets; `Relay`, `RetryPolicy` and `Task.max_attempts` take their defaults from
here; docs/GATEWAY.md's table is checked against it (tests/outbox/test_conf.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


@dataclass(frozen=True, slots=True)
class OutboxSettings:
    pass_seconds: float = 20.0
    max_task_seconds: float = 15.0
    # A lease is renewed every renew_seconds while its handler runs, so it can be short: a
    # dead node's tasks run again elsewhere soon after it stops renewing.
    lease_seconds: float = 12.0
    renew_seconds: float = 2.0
    # The total deadline of one external call; it starts only if the lease outlives it.
    call_seconds: float = 8.0
    # A kind this worker has no handler for (a rolling deploy) waits this long for one that has.
    unknown_kind_retry_seconds: float = 60.0
    batch_size: int = 200
    threads: int = 32
    max_passes: int = 3
    # False leaves the cluster to other django-q2 work: no relay pass starts by itself.
    autostart: bool = True
    poll_seconds: float = 0.05
    queue_weights: dict[str, int] = field(
        default_factory=lambda: {"critical": 6, "default": 3, "low": 1}
    )
    # Stripe's own clients start at 0.5 s and double: an API that answered a 500 is asked
    # again soon; one that is really down is rested by its circuit, not by the backoff.
    backoff_base_seconds: float = 0.5
    backoff_cap_seconds: float = 600.0
    # A handler's `Defer` that names no delay waits this long (without spending an attempt).
    defer_seconds: float = 5.0
    default_max_attempts: int = 25
    retention_days: int = 30
    circuit_failures: int = 10
    circuit_cooldown_seconds: float = 1.0
    circuit_max_cooldown_seconds: float = 30.0


def outbox_settings() -> OutboxSettings:
    raw: dict[str, Any] = getattr(settings, "OUTBOX", {})
    known = {f.name for f in fields(OutboxSettings)}
    values = {key.lower(): value for key, value in raw.items()}
    unknown = set(values) - known
    if unknown:
        raise ImproperlyConfigured(f"unknown OUTBOX settings: {', '.join(sorted(unknown))}")
    if "queue_weights" in values:
        # A weight set alone (one environment variable, say) keeps the other queues' defaults.
        values["queue_weights"] = {**DEFAULTS.queue_weights, **values["queue_weights"]}
    return OutboxSettings(**values)


# The defaults themselves, for what is built without settings (a `Relay()` in a test).
DEFAULTS = OutboxSettings()
