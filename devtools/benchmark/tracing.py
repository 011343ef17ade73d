"""Figure (o): what tracing costs the drain and the webhook, off and on, in one run.

Off is how every process runs without OTEL_* variables (no provider; the hot paths check one
flag). On installs, in this process, the SDK the processes install (a tracer provider, a batch
span processor), the Django instrumentation for the webhook, and an exporter that encodes every
batch to OTLP protobuf, as the OTLP exporter does, then drops the bytes: the export's CPU is
counted, the network is not. Rounds alternate off and on, and each figure is a median.
"""

from __future__ import annotations

import statistics
import time
import timeit
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from django.db import transaction
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from devtools.benchmark.base import Options, enqueue_noops, percentile, vacuum, wipe
from devtools.benchmark.handlers import NOOP
from devtools.benchmark.report import Report
from devtools.benchmark.webhook import webhook_samples
from outbox import tracing
from outbox.runtime.relay import Relay
from outbox.services import TaskSpec, enqueue_many

ROUNDS = 3


class EncodingExporter(SpanExporter):
    """Encodes each batch as the OTLP/HTTP exporter would send it, and sends nothing."""

    def __init__(self) -> None:
        self.spans = 0
        self.bytes = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.bytes += len(encode_spans(spans).SerializePartialToString())
        self.spans += len(spans)
        return SpanExportResult.SUCCESS


@contextmanager
def traced(*, django: bool = False) -> Iterator[EncodingExporter]:
    from opentelemetry.instrumentation.django import DjangoInstrumentor
    from opentelemetry.instrumentation.propagators import (
        TraceResponsePropagator,
        set_global_response_propagator,
    )
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    exporter = EncodingExporter()
    provider = TracerProvider()
    # A queue deep enough that no span is dropped at thousands a second: every one is paid for.
    provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=2**17))
    tracing.use_tracer_provider(provider)
    if django:
        DjangoInstrumentor().instrument(tracer_provider=provider)
        set_global_response_propagator(TraceResponsePropagator())
    try:
        yield exporter
    finally:
        provider.force_flush()
        if django:
            DjangoInstrumentor().uninstrument()
            set_global_response_propagator(None)
        tracing.use_tracer_provider(None)
        provider.shutdown()


def _enqueue_traced(count: int) -> None:
    tracer = tracing.tracer()
    assert tracer is not None
    for start in range(0, count, 100):
        # One cause per 100 tasks, as a webhook with 100 tickets enqueues 200.
        with tracer.start_as_current_span("cause"), transaction.atomic():
            enqueue_many([TaskSpec(kind=NOOP) for _ in range(min(100, count - start))])


def _drain(options: Options) -> float:
    relay = Relay(threads=options.threads, batch_size=options.batch_size)
    started = time.perf_counter()
    stats = relay.drain(max_batches=10**6)
    return stats.succeeded / (time.perf_counter() - started)


def tracing_cost(options: Options, report: Report) -> None:
    off_rates: list[float] = []
    on_rates: list[float] = []
    spans = 0
    for _ in range(ROUNDS):
        wipe()
        enqueue_noops(options.drain_tasks)
        vacuum()
        off_rates.append(_drain(options))
        wipe()
        with traced() as exporter:
            _enqueue_traced(options.drain_tasks)
            vacuum()
            on_rates.append(_drain(options))
        spans = exporter.spans
    wipe()
    off, on = statistics.median(off_rates), statistics.median(on_rates)
    report.add(
        "(o) one relay in this process, no-op handler, tracing off",
        f"{off:,.0f} tasks/s",
        f"(median of {ROUNDS}: {', '.join(f'{r:,.0f}' for r in off_rates)}; "
        f"{options.drain_tasks:,} tasks, as (b'))",
    )
    report.add(
        "(o) the same, tracing on",
        f"{on:,.0f} tasks/s",
        f"({on / off:.0%} of off; median of {ROUNDS}: "
        f"{', '.join(f'{r:,.0f}' for r in on_rates)}; {spans:,} spans encoded in the last round)",
    )
    per_task_ns = _off_checks_ns()
    report.add(
        "(o) the off state's checks, per task",
        f"{per_task_ns:,.0f} ns",
        f"({per_task_ns / (1e9 / off):.2%} of a task's time at the off rate; the tracer checks "
        "of enqueue, claim and try, timed alone)",
    )
    _webhook(options, report)


def _off_checks_ns() -> float:
    # What a task pays without a provider that it did not pay before tracing existed: the
    # enqueue's, the claim's and the try's check of the tracer, and the pass's flush check
    # (once per pass, left out). The *rest unpack of the claim's rows is timed too.
    row: tuple[Any, ...] = (1, "k", {}, "key", 1, 5, "", None)
    setup = "from outbox import tracing; from outbox.registry import TaskContext"
    code = (
        "tracing.tracer() is None\n"
        "tracing.tracer() is not None\n"
        "tracing.start_process_span(None, None, '')\n"
        "pk, kind, payload, key, attempts, max_attempts, correlation_id, created_at, *more = row\n"
        "more[0] if more else None"
    )
    runs = 200_000
    best = min(timeit.repeat(code, setup, number=runs, repeat=5, globals={"row": row}))
    return best / runs * 1e9


def _webhook(options: Options, report: Report) -> None:
    off: list[float] = []
    on: list[float] = []
    for round_ in range(ROUNDS):
        off += webhook_samples(options, 100, prefix=f"off{round_}")
        with traced(django=True):
            on += webhook_samples(options, 100, prefix=f"on{round_}")
    for label, samples in (("off", off), ("on", on)):
        report.add(
            f"(o) webhook with 100 tickets, tracing {label}, server time",
            f"p50 {percentile(samples, 0.5):,.1f} ms, p99 {percentile(samples, 0.99):,.1f} ms",
            f"({len(samples)} requests in {ROUNDS} alternating rounds"
            + (
                ", the Django instrumentation's server span and traceresponse"
                if label == "on"
                else ""
            )
            + ")",
        )
