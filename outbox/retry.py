"""Retry policy: data plus one pure function that answers "when next, or never"."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    base_seconds: float = 1.0
    cap_seconds: float = 600.0

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

        Full jitter (uniform in [0, min(cap, base * 2**attempt)]) spreads a burst of retries
        out; a Retry-After named by the API wins, within the cap.
        """
        if permanent or attempt >= max_attempts:
            return None
        if retry_after is not None:
            return min(self.cap_seconds, max(0.0, retry_after))
        ceiling = min(self.cap_seconds, self.base_seconds * 2 ** min(attempt, 60))
        return (rand or random).uniform(0.0, ceiling)
