"""Traces across the outbox: the cause's W3C trace context stored on each task, a span per try.

The engine uses only the OpenTelemetry API. The application installs an SDK provider and hands
it over with `use_tracer_provider` (project.telemetry does, from the OTEL_* variables). Until
then `tracer()` is None and every hot path pays one check of it: no span, no context, and the
`trace_context` column is left out of the enqueue's INSERT (NULL).

What a task stores (`Task.trace_context`) is a W3C carrier, `{"traceparent": .., "tracestate":
..}`, of the span that enqueued it; each try is a `process` span whose parent is that context,
so a retry hours later joins the same trace. An operator's retry starts a span of its own
(who, how many), linked to the tasks' traces; the task then stores that span's context, and
`origin`, the first trace's traceparent, which each later try links to.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING, Any, Protocol

from outbox.storable import redact, storable_text

if TYPE_CHECKING:
    from opentelemetry import trace
    from opentelemetry.trace import Link

    from outbox.registry import TaskContext

# The OpenTelemetry API is imported by the functions that run only in a process that traces
# (its `propagate` module reads the propagators' entry points on import: ~10 ms at every
# start of a process that never traces).


class _Finished(Protocol):
    """What `end_process_span` reads of a try's outcome (outbox.outcomes.Outcome)."""

    verdict: Any
    error: str
    http_status: int | None
    retry_in: float | None
    deferred: bool


SYSTEM = "outbox"
DEFAULT_TRACE_URL = "http://localhost:16686/trace/{trace_id}"
# A link per original trace, up to the SDK's default limit of links on a span.
MAX_LINKS = 128
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")
_NO_TRACE = "0" * 32
# What a task keeps of its cause's `tracestate`: W3C Trace Context asks a vendor to pass on at
# least 512 characters and says how to cut a longer one. A caller's 8 KB (the most the
# propagator accepts) is not copied onto every task row, nor sent on to each API.
TRACESTATE_LIMIT = 512
_TRACESTATE_MEMBER_LIMIT = 128
# The end of a relay pass waits this long for its spans to leave, and no longer: the SDK's
# force_flush ignores its timeout, so a collector that accepts and never answers held the
# worker 10 s per batch of 512 spans (the exporter's own timeout).
FLUSH_TIMEOUT_MILLIS = 2000

_tracer: trace.Tracer | None = None
_provider: trace.TracerProvider | None = None
_flushing: threading.Thread | None = None


def use_tracer_provider(provider: trace.TracerProvider | None) -> None:
    """Trace with `provider` from now on; None turns tracing off again (tests)."""
    global _tracer, _provider
    _provider = provider
    _tracer = None if provider is None else provider.get_tracer("outbox")


def tracer() -> trace.Tracer | None:
    """The engine's tracer, or None when the process does not trace."""
    return _tracer


def current_carrier() -> dict[str, str] | None:
    """The current span's context as W3C headers, or None outside a sampled span; a
    `tracestate` longer than TRACESTATE_LIMIT cut as W3C Trace Context says."""
    carrier: dict[str, str] = {}
    _w3c().inject(carrier)
    if "traceparent" not in carrier:
        return None
    if "tracestate" in carrier:
        tracestate = bounded_tracestate(carrier["tracestate"])
        if tracestate:
            carrier["tracestate"] = tracestate
        else:
            del carrier["tracestate"]
    return carrier


def _w3c() -> Any:
    # What a task stores is W3C Trace Context whatever OTEL_PROPAGATORS says (b3 for the
    # HTTP calls, say), and reading it back is not the gate on callers' headers
    # (project.telemetry): always this propagator, never the global one.
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    return TraceContextTextMapPropagator()


def bounded_tracestate(header: str, limit: int = TRACESTATE_LIMIT) -> str:
    """`header` cut to `limit` characters by whole members: those over 128 characters go
    first, then members from the end (W3C Trace Context, "tracestate Limits")."""
    if len(header) <= limit:
        return header
    members = [m.strip() for m in header.split(",") if m.strip()]
    members = [m for m in members if len(m) <= _TRACESTATE_MEMBER_LIMIT]
    while members and len(",".join(members)) > limit:
        members.pop()
    return ",".join(members)


def trace_id_of(carrier: Any) -> str | None:
    """The trace id (32 hex digits) a stored trace context names, or None."""
    if not isinstance(carrier, dict):
        return None
    match = _TRACEPARENT.match(str(carrier.get("traceparent", "")))
    if match is None or match.group(1) == _NO_TRACE:
        return None
    return match.group(1)


def trace_url(trace_id: str | None) -> str | None:
    """Where a trace is shown: settings.TRACE_URL_TEMPLATE with `{trace_id}` filled in."""
    if not trace_id:
        return None
    from django.conf import settings

    template = getattr(settings, "TRACE_URL_TEMPLATE", DEFAULT_TRACE_URL)
    return template.replace("{trace_id}", trace_id) if template else None


def log_ids() -> tuple[str, str] | None:
    """(trace_id, span_id) of the current span for a log line, or None."""
    if _tracer is None:
        return None
    from opentelemetry import trace

    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        return None
    return trace.format_trace_id(span_context.trace_id), trace.format_span_id(span_context.span_id)


def annotate(attributes: dict[str, Any]) -> None:
    """Add attributes to the current span, when there is one that records."""
    if _tracer is None:
        return
    from opentelemetry import trace

    span = trace.get_current_span()
    if span.is_recording():
        span.set_attributes(attributes)


def flush(timeout_millis: int = FLUSH_TIMEOUT_MILLIS) -> bool:
    """Export the spans ended so far (a pass's end: its worker may exit without atexit),
    waiting at most `timeout_millis`; whether they left in time.

    The export runs in a thread of its own, which goes on after the timeout (the exporter's
    own timeout, OTEL_EXPORTER_OTLP_TIMEOUT, ends it); a flush while one is still under way
    waits for that one only, so a collector that never answers costs each pass the timeout
    and starts no pile of threads.
    """
    global _flushing
    force_flush = getattr(_provider, "force_flush", None)
    if force_flush is None:
        return True
    if _flushing is None or not _flushing.is_alive():
        _flushing = threading.Thread(
            target=force_flush, args=(timeout_millis,), name="outbox-span-flush", daemon=True
        )
        _flushing.start()
    _flushing.join(timeout_millis / 1000)
    return not _flushing.is_alive()


def _link(traceparent: Any, **attributes: str) -> Link | None:
    if not isinstance(traceparent, str):
        return None
    from opentelemetry import trace
    from opentelemetry.trace import Link

    span_context = trace.get_current_span(
        _w3c().extract({"traceparent": traceparent})
    ).get_span_context()
    return Link(span_context, attributes) if span_context.is_valid else None


def internal_span(name: str, attributes: dict[str, Any]) -> AbstractContextManager[Any]:
    """A span around a step (the intake's transaction, say); nothing when not tracing."""
    if _tracer is None:
        return nullcontext()
    return _tracer.start_as_current_span(name, attributes=attributes)


@contextmanager
def send_span(tracer_: trace.Tracer, count: int) -> Iterator[dict[str, str] | None]:
    """A producer span around an enqueue; yields the carrier its tasks store."""
    from opentelemetry.trace import SpanKind

    with tracer_.start_as_current_span(
        f"send {SYSTEM}",
        kind=SpanKind.PRODUCER,
        attributes={
            "messaging.system": SYSTEM,
            "messaging.operation.type": "send",
            "messaging.operation.name": "send",
            "messaging.batch.message_count": count,
        },
    ):
        yield current_carrier()


def start_process_span(context: TaskContext, carrier: Any, worker: str) -> trace.Span | None:
    """A consumer span for one try, child of the stored context, and current from now on;
    None when the process does not trace.

    Call it in the try's own contextvars context (run_task's copy): nothing detaches it.
    """
    tracer_ = _tracer
    if tracer_ is None:
        return None
    from opentelemetry import context as otel_context
    from opentelemetry import trace
    from opentelemetry.trace import SpanKind

    stored = carrier if isinstance(carrier, dict) else {}
    parent = _w3c().extract(stored) if "traceparent" in stored else otel_context.Context()
    origin = _link(stored.get("origin"), **{"outbox.link": "original trace"})
    span = tracer_.start_span(
        f"process {context.kind}",
        context=parent,
        kind=SpanKind.CONSUMER,
        links=[origin] if origin is not None else None,
        attributes={
            "messaging.system": SYSTEM,
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
            "messaging.destination.name": context.kind,
            "messaging.message.id": str(context.id),
            "outbox.task.id": context.id,
            "outbox.task.kind": context.kind,
            "outbox.task.attempt": context.attempt,
            "outbox.task.max_attempts": context.max_attempts,
            "outbox.worker": worker,
        },
    )
    otel_context.attach(trace.set_span_in_context(span))
    return span


def end_process_span(span: trace.Span, outcome: _Finished) -> None:
    """The try's outcome on its span: the verdict, the HTTP status, the error as stored
    (storable, emails redacted), then the span's end."""
    from opentelemetry.trace import Status, StatusCode

    if span.is_recording():
        span.set_attribute("outbox.task.outcome", str(outcome.verdict))
        if outcome.deferred:
            span.set_attribute("outbox.task.deferred", True)
        if outcome.retry_in is not None:
            span.set_attribute("outbox.task.retry_in_seconds", round(outcome.retry_in, 3))
        if outcome.http_status is not None:
            span.set_attribute("http.response.status_code", outcome.http_status)
        if outcome.error and not outcome.deferred and str(outcome.verdict) != "succeeded":
            error = redact(storable_text(outcome.error))
            last_line = error.strip().splitlines()[-1] if error.strip() else error
            span.add_event(
                "exception",
                {
                    "exception.type": _error_type(error),
                    "exception.message": last_line,
                    "exception.stacktrace": error,
                },
            )
            span.set_status(Status(StatusCode.ERROR, last_line))
    span.end()


def _error_type(error: str) -> str:
    # A traceback's last line starts with the exception's name; a handler's error is a sentence.
    head = error.strip().splitlines()[-1].partition(":")[0] if error.strip() else ""
    return head if head.replace(".", "").replace("_", "").isalnum() else "TaskError"


@contextmanager
def retry_span(
    tracer_: trace.Tracer, *, started_by: str, carriers: Iterable[Any]
) -> Iterator[str | None]:
    """A span for an operator's retry, linked to the traces of the tasks it retries; yields its
    traceparent, which the retried tasks store."""
    links = []
    for carrier in carriers:
        link = _link(carrier.get("traceparent") if isinstance(carrier, dict) else None)
        if link is not None:
            links.append(link)
        if len(links) >= MAX_LINKS:
            break
    with tracer_.start_as_current_span(
        "retry outbox tasks",
        links=links,
        attributes={"messaging.system": SYSTEM, "outbox.started_by": started_by or "unknown"},
    ):
        carrier = current_carrier()
        yield None if carrier is None else carrier["traceparent"]
