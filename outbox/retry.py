"""Retry policy: data plus one pure function that answers "when next, or never".

Every delay the engine chooses is decided here: the backoff of a failed try, a `Defer` that
named no delay, and the wait of a kind this worker has no handler for. What counts as
transient or permanent is the handler's call (it raises `TransientError`/`PermanentError`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from outbox.conf import DEFAULTS, OutboxSettings, outbox_settings


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    base_seconds: float = DEFAULTS.backoff_base_seconds
    cap_seconds: float = DEFAULTS.backoff_cap_seconds
    defer_seconds: float = DEFAULTS.defer_seconds
    unknown_kind_seconds: float = DEFAULTS.unknown_kind_retry_seconds

    @classmethod
    def from_settings(cls, conf: OutboxSettings | None = None) -> RetryPolicy:
        conf = conf or outbox_settings()
        return cls(
            base_seconds=conf.backoff_base_seconds,
            cap_seconds=conf.backoff_cap_seconds,
            defer_seconds=conf.defer_seconds,
            unknown_kind_seconds=conf.unknown_kind_retry_seconds,
        )

    def next_delay(
        self,
        *,
        attempt: int,
        max_attempts: int,
        permanent: bool,
        retry_after: float | None = None,
        rand: random.Random | None = None,
    ) -> float | None:
        """Seconds until the next try after `attempt` failed, or None when the task is dead.

        Full jitter (uniform in [0, `ceiling(attempt)`]) spreads a burst of retries out; a
        Retry-After named by the API wins, within the cap.
        """
        if permanent or attempt >= max_attempts:
            return None
        if retry_after is not None:
            return min(self.cap_seconds, max(0.0, retry_after))
        return (rand or random).uniform(0.0, self.ceiling(attempt))

    def ceiling(self, attempt: int) -> float:
        """The longest backoff after failed try `attempt`: min(cap, base * 2**(attempt - 1)).

        The first retry comes within `base` (0.5 s by default), then 1, 2, 4 s...: an API that
        answered a 500 is asked again soon, and one that keeps failing less and less often.
        """
        return min(self.cap_seconds, self.base_seconds * 2 ** min(max(attempt - 1, 0), 60))

    def defer_delay(self, retry_after: float | None) -> float:
        """How long a deferred task waits: what the handler named, or `defer_seconds`."""
        return retry_after if retry_after is not None else self.defer_seconds
