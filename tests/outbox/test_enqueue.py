from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from outbox.errors import NotInTransaction, UnknownTaskKind
from outbox.models import Task, TaskState
from outbox.services import TaskSpec, enqueue, enqueue_many


@pytest.mark.django_db(transaction=True)
def test_enqueue_refuses_to_run_outside_a_transaction(recording_handler):
    recording_handler("test.record")

    with pytest.raises(NotInTransaction, match=r"transaction\.atomic"):
        enqueue("test.record", {"n": 1})

    assert Task.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_enqueue_many_refuses_to_run_outside_a_transaction(recording_handler):
    recording_handler("test.record")

    with pytest.raises(NotInTransaction):
        enqueue_many([TaskSpec(kind="test.record")])


@pytest.mark.django_db(transaction=True)
def test_tasks_roll_back_with_the_transaction_that_enqueued_them(recording_handler):
    recording_handler("test.record")

    with pytest.raises(RuntimeError), transaction.atomic():
        enqueue("test.record", {"n": 1})
        raise RuntimeError("the cause failed")

    assert Task.objects.count() == 0


@pytest.mark.django_db
def test_a_second_enqueue_with_the_same_dedupe_key_is_a_no_op(recording_handler):
    recording_handler("test.record")

    with transaction.atomic():
        first = enqueue("test.record", {"n": 1}, dedupe_key="effect-1")
        second = enqueue("test.record", {"n": 2}, dedupe_key="effect-1")

    assert first is not None
    assert second is None
    assert Task.objects.get().payload == {"n": 1}


@pytest.mark.django_db
def test_enqueue_many_returns_only_the_tasks_it_created_in_order(recording_handler):
    recording_handler("test.record")
    with transaction.atomic():
        enqueue("test.record", dedupe_key="b")

        created = enqueue_many(
            [
                TaskSpec(kind="test.record", dedupe_key="a"),
                TaskSpec(kind="test.record", dedupe_key="b"),
                TaskSpec(kind="test.record", dedupe_key="c"),
                TaskSpec(kind="test.record"),
            ]
        )

    assert [task.dedupe_key for task in created] == ["a", "c", None]
    assert {task.id for task in created} <= set(Task.objects.values_list("id", flat=True))


@pytest.mark.django_db
def test_a_task_takes_its_handlers_queue_and_attempt_budget(recording_handler):
    recording_handler("test.critical", queue="critical", max_attempts=7)

    with transaction.atomic():
        enqueue("test.critical")

    task = Task.objects.get()
    assert (task.queue, task.max_attempts, task.state) == ("critical", 7, TaskState.PENDING)
    assert len(task.idempotency_key) == 32


@pytest.mark.django_db
def test_run_after_schedules_the_task_for_later(recording_handler):
    recording_handler("test.record")
    later = timezone.now() + timedelta(hours=1)

    with transaction.atomic():
        enqueue("test.record", run_after=later)

    assert abs((Task.objects.get().available_at - later).total_seconds()) < 0.01
    assert not Task.objects.due().exists()


@pytest.mark.django_db
def test_an_unknown_kind_is_refused_with_its_name(recording_handler):
    with pytest.raises(UnknownTaskKind, match=r"no\.such\.kind"), transaction.atomic():
        enqueue("no.such.kind")


@pytest.mark.django_db
def test_enqueue_many_writes_a_thousand_tasks(recording_handler):
    recording_handler("test.record")

    with transaction.atomic():
        created = enqueue_many(
            [TaskSpec(kind="test.record", payload={"i": i}) for i in range(1000)]
        )

    assert len(created) == 1000
    assert Task.objects.count() == 1000


AWKWARD = ['q"uote', "back\\slash", "{brace}", "a,b", "NULL", "", " pad ", "Zürich · 東京", "'"]


@pytest.mark.django_db
def test_enqueue_many_stores_every_text_and_payload_as_given(recording_handler):
    # The arrays travel in binary on PostgreSQL: quotes, braces, commas and "NULL" must come
    # back as they went, in every text column and in the payload.
    recording_handler("test.record")
    specs = [
        TaskSpec(
            kind="test.record",
            payload={"text": text, "n": 2**40},
            dedupe_key=f"d{n}{text}",
            correlation_id=text,
        )
        for n, text in enumerate(AWKWARD)
    ]

    with transaction.atomic():
        enqueue_many(specs)

    stored = list(
        Task.objects.order_by("id").values_list("payload", "dedupe_key", "correlation_id")
    )
    assert stored == [
        ({"text": text, "n": 2**40}, f"d{n}{text}", text) for n, text in enumerate(AWKWARD)
    ]
