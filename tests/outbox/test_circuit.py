from __future__ import annotations

from datetime import timedelta

import pytest
from django.db.models.functions import Now

from outbox.errors import Defer
from outbox.models import Circuit
from outbox.runtime import circuit
from outbox.runtime.circuit import CircuitBreaker, CircuitOpen

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_caching(monkeypatch):
    # Read the shared state on every call, as another process would after its refresh.
    monkeypatch.setattr(circuit, "REFRESH_SECONDS", 0.0)


def breaker(**options) -> CircuitBreaker:
    options.setdefault("failures", 3)
    options.setdefault("cooldown", 10.0)
    options.setdefault("max_cooldown", 40.0)
    return CircuitBreaker("api", **options)


def end_cooldown() -> None:
    Circuit.objects.update(opened_until=Now() - timedelta(seconds=1))


def test_a_healthy_destination_is_called_without_writing_anything():
    b = breaker()

    for _ in range(5):
        b.before_call()
        b.record_success()

    assert not Circuit.objects.exists()


def test_it_opens_after_the_threshold_of_failures_in_a_row():
    b = breaker()
    for _ in range(3):
        b.before_call()
        b.record_failure()

    with pytest.raises(CircuitOpen) as opened:
        b.before_call()

    assert isinstance(opened.value, Defer)  # a deferral: no attempt is spent
    assert 9.0 <= (opened.value.retry_after or 0) <= 11.0
    assert Circuit.objects.get().opened_count == 1


def test_a_success_resets_the_count_of_failures():
    b = breaker()
    for _ in range(2):
        b.record_failure()
    b.record_success()
    for _ in range(2):
        b.record_failure()

    b.before_call()  # still closed


def test_another_process_sees_an_open_circuit():
    breaker().record_failure()
    opener = breaker(failures=1)
    opener.record_failure()

    with pytest.raises(CircuitOpen):
        breaker().before_call()


def test_after_the_cooldown_a_single_call_probes():
    breaker(failures=1).record_failure()
    end_cooldown()
    first, second = breaker(), breaker()

    first.before_call()  # wins the probe

    with pytest.raises(CircuitOpen):
        second.before_call()


def test_a_successful_probe_closes_the_circuit_for_everyone():
    breaker(failures=1).record_failure()
    end_cooldown()
    prober = breaker()
    prober.before_call()

    prober.record_success()

    breaker().before_call()
    assert Circuit.objects.get().opened_until is None


def test_a_failed_probe_opens_it_again_for_twice_as_long_up_to_the_cap():
    breaker(failures=1).record_failure()
    cooldowns = []
    for _ in range(4):
        end_cooldown()
        prober = breaker()
        prober.before_call()
        prober.record_failure()
        cooldowns.append(Circuit.objects.get().cooldown_seconds)

    assert cooldowns == [20.0, 40.0, 40.0, 40.0]
    with pytest.raises(CircuitOpen):
        breaker().before_call()
