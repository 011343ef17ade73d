from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
from django.db import connection, transaction

from outbox.models import Attempt, Task, TaskState
from outbox.runtime.relay import Relay
from outbox.services import TaskSpec, enqueue_many

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_two_relays_never_run_one_task_at_the_same_time(postgres_only, recording_handler):
    running: Counter[int] = Counter()
    overlaps: list[int] = []
    runs: Counter[int] = Counter()
    lock = threading.Lock()

    def handle(task):
        with lock:
            running[task.id] += 1
            runs[task.id] += 1
            if running[task.id] > 1:
                overlaps.append(task.id)
        time.sleep(0.001)  # widen the window in which an overlap would show
        with lock:
            running[task.id] -= 1

    recording_handler(behaviour=handle)
    with transaction.atomic():
        enqueue_many([TaskSpec(kind="test.record") for _ in range(600)])

    def drain() -> None:
        try:
            Relay(threads=8, batch_size=25).drain()
        finally:
            connection.close()

    relays = [threading.Thread(target=drain) for _ in range(3)]
    for relay in relays:
        relay.start()
    for relay in relays:
        relay.join(120)

    assert overlaps == []
    assert set(runs.values()) == {1}
    assert len(runs) == 600
    assert Task.objects.filter(state=TaskState.SUCCEEDED).count() == 600
    # One try each, a success, kept on its task row: no Attempt row at all.
    assert not Attempt.objects.exists()
    assert Task.objects.filter(attempts=1, succeeded_started_at__isnull=False).count() == 600
