"""Traces through the outbox: nothing without a provider; with one, the cause's context stored on
each task, a `process` span per try under it, errors redacted, operators' retries linked."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from outbox import tracing
from outbox.errors import TransientError
from outbox.logging import JsonFormatter, PlainFormatter
from outbox.models import Task
from outbox.retry import RetryPolicy
from outbox.runtime.relay import Relay
from outbox.services import TaskSpec, enqueue_many, tasks_retry

pytestmark = pytest.mark.django_db


@pytest.fixture
def exported() -> Iterator[InMemorySpanExporter]:
    """A provider of the test's own, handed to the engine (the global one stays unset)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use_tracer_provider(provider)
    try:
        yield exporter
    finally:
        tracing.use_tracer_provider(None)
        provider.shutdown()


def make(n: int = 1, kind: str = "test.record") -> list[int]:
    with transaction.atomic():
        return [t.id for t in enqueue_many([TaskSpec(kind=kind) for _ in range(n)])]


def relay() -> Relay:
    return Relay(policy=RetryPolicy(base_seconds=0.0, cap_seconds=0.0), threads=2, batch_size=10)


def hex_trace(span: ReadableSpan) -> str:
    return trace.format_trace_id(span.context.trace_id)


def parent_id(span: ReadableSpan) -> int | None:
    return None if span.parent is None else span.parent.span_id


def named(exporter: InMemorySpanExporter, prefix: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name.startswith(prefix)]


# Off: what the hot paths pay without a provider.


def test_without_a_provider_the_engine_has_no_tracer_and_stores_no_context(recording_handler):
    recording_handler()
    assert tracing.tracer() is None

    with CaptureQueriesContext(connection) as queries:
        [task_id] = make()
    relay().run_once()

    assert Task.objects.get(id=task_id).trace_context is None
    # The enqueue's statement is the one from before tracing: the column is not in it.
    assert not any("trace_context" in q["sql"] for q in queries.captured_queries)
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def test_without_a_provider_the_claim_does_not_read_the_stored_context(recording_handler):
    recording_handler()
    make()

    with CaptureQueriesContext(connection) as queries:
        relay().run_once()

    claims = [q["sql"] for q in queries.captured_queries if "RETURNING id, kind" in q["sql"]]
    assert claims
    assert not any("trace_context" in sql for sql in claims)


def test_log_lines_carry_no_trace_ids_without_a_provider():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello", None, None)
    record.correlation_id = "c-1"

    assert "trace_id" not in json.loads(JsonFormatter().format(record))
    assert "trace_id=" not in PlainFormatter().format(record)


# On.


def test_enqueue_stores_the_context_of_its_send_span_under_the_callers_span(
    exported, recording_handler
):
    recording_handler()
    tracer = tracing.tracer()
    assert tracer is not None
    with tracer.start_as_current_span("webhook") as cause:
        [task_id] = make()

    stored = Task.objects.get(id=task_id).trace_context
    [send] = named(exported, "send")
    assert send.kind == SpanKind.PRODUCER
    assert parent_id(send) == cause.get_span_context().span_id
    assert tracing.trace_id_of(stored) == hex_trace(send)
    assert stored["traceparent"].split("-")[2] == trace.format_span_id(send.context.span_id)


def test_each_try_is_a_process_span_under_the_stored_context(exported, recording_handler):
    failures = iter([TransientError("gateway answered 503", http_status=503)])

    def flaky(task):
        error = next(failures, None)
        if error is not None:
            raise error
        return {"ok": True}

    recording_handler(behaviour=flaky)
    [task_id] = make()
    relay().run_once()
    # Due now for sure: a retry's zero backoff may land in the same clock tick as the next
    # claim, which then finds nothing (SQLite's now() has milliseconds).
    Task.objects.filter(id=task_id).update(available_at=timezone.now() - timedelta(seconds=1))
    relay().run_once()

    [send] = named(exported, "send")
    tries = sorted(named(exported, "process"), key=lambda s: s.attributes["outbox.task.attempt"])
    assert [s.attributes["outbox.task.attempt"] for s in tries] == [1, 2]
    for span in tries:
        assert span.kind == SpanKind.CONSUMER
        assert parent_id(span) == send.context.span_id
        assert hex_trace(span) == hex_trace(send)
        assert span.name == "process test.record"
        assert span.attributes["outbox.task.id"] == task_id
        assert span.attributes["messaging.message.id"] == str(task_id)
        assert span.attributes["messaging.operation.type"] == "process"
        assert span.attributes["messaging.system"] == "outbox"
        assert span.attributes["outbox.task.kind"] == "test.record"
    assert [s.attributes["outbox.task.outcome"] for s in tries] == ["retry", "succeeded"]
    assert tries[0].attributes["http.response.status_code"] == 503
    assert tries[0].status.status_code == StatusCode.ERROR
    assert tries[1].status.status_code == StatusCode.UNSET


def test_a_failed_try_records_its_error_on_the_span_without_the_customers_email(
    exported, recording_handler
):
    def fail(task):
        raise TransientError("gateway answered 500: no receipt for jane.doe@example.com")

    recording_handler(behaviour=fail)
    make()
    relay().run_once()

    [span] = named(exported, "process")
    [event] = [e for e in span.events if e.name == "exception"]
    text = json.dumps({**dict(event.attributes or {}), "status": span.status.description})
    assert "jane.doe@example.com" not in text
    assert "no receipt for [email]" in event.attributes["exception.message"]
    assert "[email]" in (span.status.description or "")


def test_log_lines_inside_a_try_carry_its_trace_and_span_ids(exported):
    tracer = tracing.tracer()
    assert tracer is not None
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello", None, None)
    record.correlation_id = "c-1"
    with tracer.start_as_current_span("try") as span:
        line = json.loads(JsonFormatter().format(record))
        plain = PlainFormatter().format(record)

    ids = span.get_span_context()
    assert line["trace_id"] == trace.format_trace_id(ids.trace_id)
    assert line["span_id"] == trace.format_span_id(ids.span_id)
    assert plain.endswith(f"trace_id={line['trace_id']} span_id={line['span_id']}"), (
        "at the end of the plain line"
    )


def test_an_operators_retry_is_a_span_linked_to_the_original_trace_and_says_who(
    exported, recording_handler
):
    recording_handler(behaviour=lambda task: (_ for _ in ()).throw(ValueError("boom")))
    [task_id] = make()
    original = Task.objects.get(id=task_id).trace_context
    Task.objects.filter(id=task_id).update(state="failed")

    changed = tasks_retry(tasks=Task.objects.filter(id=task_id), started_by="admin user ann")
    relay().run_once()

    assert changed == 1
    [retry] = named(exported, "retry")
    assert retry.attributes["outbox.started_by"] == "admin user ann"
    assert retry.attributes["outbox.task.count"] == 1
    assert [trace.format_trace_id(link.context.trace_id) for link in retry.links] == [
        tracing.trace_id_of(original)
    ]
    stored = Task.objects.get(id=task_id).trace_context
    assert stored["origin"] == original["traceparent"]
    assert tracing.trace_id_of(stored) == hex_trace(retry)
    # The try after the retry is the retry's child, and links back to the original trace.
    [after] = named(exported, "process")
    assert parent_id(after) == retry.context.span_id
    assert [trace.format_trace_id(link.context.trace_id) for link in after.links] == [
        tracing.trace_id_of(original)
    ]


def test_a_second_retry_keeps_the_first_trace_as_the_origin(exported, recording_handler):
    recording_handler()
    [task_id] = make()
    original = Task.objects.get(id=task_id).trace_context
    for who in ("ann", "bob"):
        Task.objects.filter(id=task_id).update(state="failed")
        tasks_retry(tasks=Task.objects.filter(id=task_id), started_by=who)

    assert Task.objects.get(id=task_id).trace_context["origin"] == original["traceparent"]


def test_a_retry_without_a_provider_leaves_the_stored_context_alone(recording_handler):
    recording_handler()
    [task_id] = make()
    carrier = {"traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01"}
    Task.objects.filter(id=task_id).update(state="failed", trace_context=carrier)

    tasks_retry(tasks=Task.objects.filter(id=task_id), started_by="ann")

    assert Task.objects.get(id=task_id).trace_context == carrier


@pytest.mark.parametrize(
    ("carrier", "expected"),
    [
        ({"traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01"}, "a" * 32),
        ({"traceparent": "00-" + "0" * 32 + "-" + "b" * 16 + "-01"}, None),
        ({"traceparent": "garbage"}, None),
        (None, None),
        ("00-" + "a" * 32 + "-" + "b" * 16 + "-01", None),
    ],
)
def test_the_trace_id_is_read_only_from_a_valid_traceparent(carrier, expected):
    assert tracing.trace_id_of(carrier) == expected


def test_the_trace_link_follows_the_template_setting(settings):
    settings.TRACE_URL_TEMPLATE = "https://tempo.example/explore?trace={trace_id}"

    assert tracing.trace_url("ab" * 16) == f"https://tempo.example/explore?trace={'ab' * 16}"
    assert tracing.trace_url(None) is None


def test_an_admin_retry_says_which_user_started_it(exported, recording_handler, admin_client):
    from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME

    recording_handler()
    [task_id] = make()
    Task.objects.filter(id=task_id).update(state="failed")

    admin_client.post(
        "/admin/outbox/task/",
        {"action": "retry_now", ACTION_CHECKBOX_NAME: [task_id], "index": 0},
    )

    [retry] = named(exported, "retry")
    assert retry.attributes["outbox.started_by"] == "admin user admin"


def test_a_replay_says_which_operator_started_it(exported, recording_handler):
    from io import StringIO

    from django.core.management import call_command

    recording_handler()
    [task_id] = make()
    Task.objects.filter(id=task_id).update(state="failed")

    call_command("replay_tasks", "--yes", "--by", "bob", stdout=StringIO())

    [retry] = named(exported, "retry")
    assert retry.attributes["outbox.started_by"] == "replay_tasks by bob"
    assert tracing.trace_id_of(Task.objects.get(id=task_id).trace_context) == hex_trace(retry)


# What a caller's context may cost, and a collector that never answers.


def test_a_callers_long_tracestate_is_cut_to_512_characters_before_every_task_stores_it(
    exported, recording_handler
):
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    recording_handler()
    # 32 members (the most the propagator takes), 5 KB: 12 of them over 128 characters.
    members = ["first=1", *(f"v{n}={'x' * 100}" for n in range(19))]
    members += [f"big{n}={'y' * 240}" for n in range(12)]
    assert len(",".join(members)) > 4000
    seller = TraceContextTextMapPropagator().extract(
        {
            "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "tracestate": ",".join(members),
        }
    )
    with trace.use_span(trace.NonRecordingSpan(trace.get_current_span(seller).get_span_context())):
        ids = make(3)

    for stored in Task.objects.filter(id__in=ids).values_list("trace_context", flat=True):
        assert len(stored["tracestate"]) <= tracing.TRACESTATE_LIMIT
        assert stored["tracestate"].startswith("first=1,v0=")
        assert stored["traceparent"].split("-")[1] == "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.mark.parametrize(
    ("header", "kept"),
    [
        ("a=1,b=2", "a=1,b=2"),
        ("a=1," + "b=" + "x" * 600, "a=1"),
        (
            ",".join(f"k{n}={'v' * 100}" for n in range(8)),
            ",".join(f"k{n}={'v' * 100}" for n in range(4)),
        ),
    ],
)
def test_a_long_tracestate_loses_its_big_members_first_then_members_from_the_end(header, kept):
    assert tracing.bounded_tracestate(header) == kept


def test_a_pass_end_flush_gives_up_in_time_when_the_collector_never_answers():
    import threading
    import time

    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    answered = threading.Event()

    class Blackhole(SpanExporter):
        """A collector that takes the connection and never answers, until the test ends."""

        def export(self, spans):
            answered.wait(10)
            return SpanExportResult.FAILURE

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Blackhole(), schedule_delay_millis=60_000))
    tracing.use_tracer_provider(provider)
    try:
        tracer = tracing.tracer()
        for _ in range(3):
            with tracer.start_as_current_span("try"):
                pass
        started = time.monotonic()
        first = tracing.flush(timeout_millis=200)
        # A second pass's flush while the first is still stuck waits for that one, no more.
        second = tracing.flush(timeout_millis=200)
        waited = time.monotonic() - started
        flushing = threading.enumerate()
    finally:
        answered.set()
        tracing.use_tracer_provider(None)
        provider.shutdown()

    assert (first, second) == (False, False)
    assert waited < 1.0, f"the flush held the pass {waited:.1f} s"
    assert sum(t.name == "outbox-span-flush" for t in flushing) == 1
