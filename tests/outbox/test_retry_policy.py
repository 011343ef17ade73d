from __future__ import annotations

import random

import pytest

from outbox.retry import RetryPolicy


def test_a_permanent_error_is_never_retried():
    assert RetryPolicy().next_delay(attempt=1, max_attempts=10, permanent=True) is None


def test_the_last_attempt_is_not_retried():
    assert RetryPolicy().next_delay(attempt=10, max_attempts=10, permanent=False) is None


@pytest.mark.parametrize("attempt", [1, 2, 3, 5, 8])
def test_backoff_is_full_jitter_below_an_exponential_ceiling(attempt):
    policy = RetryPolicy(base_seconds=1.0, cap_seconds=60.0)
    rand = random.Random(attempt)

    delays = [
        policy.next_delay(attempt=attempt, max_attempts=99, permanent=False, rand=rand)
        for _ in range(500)
    ]

    ceiling = min(60.0, 2.0 ** (attempt - 1))  # the first retry within the base
    assert all(d is not None and 0.0 <= d <= ceiling for d in delays)
    assert max(d for d in delays if d is not None) > ceiling * 0.9  # it uses the whole range


def test_backoff_never_exceeds_the_cap_even_after_many_attempts():
    policy = RetryPolicy(base_seconds=1.0, cap_seconds=30.0)

    delay = policy.next_delay(attempt=500, max_attempts=1000, permanent=False)

    assert delay is not None
    assert delay <= 30.0


def test_retry_after_from_the_api_wins_within_the_cap():
    policy = RetryPolicy(base_seconds=1.0, cap_seconds=30.0)

    assert policy.next_delay(attempt=1, max_attempts=5, permanent=False, retry_after=7) == 7
    assert policy.next_delay(attempt=1, max_attempts=5, permanent=False, retry_after=999) == 30
