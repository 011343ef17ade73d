"""OpenTelemetry for this process, from the standard OTEL_* variables only.

Tracing is on when the environment names where spans go: `OTEL_EXPORTER_OTLP_ENDPOINT` or
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, or an `OTEL_TRACES_EXPORTER` other than `none`. With
none of them (or `OTEL_SDK_DISABLED=true`) nothing is installed: no SDK provider, no Django or
requests instrumentation, and the engine's hot paths check one flag (outbox.tracing). The
specification's default exporter is `otlp` to localhost; ours is off, so a deployment that
never asked for traces neither pays for them nor logs a failed export every few seconds.

`manage.py` (qcluster, runserver, the operators' commands) and `project.wsgi` call
`start_tracing` before Django builds its middleware; tests configure their own provider.

A caller's `traceparent` is continued only when the service knows who its callers are
(WEBHOOK_SECRET set: the seller signs). On the open webhook anyone may send one, choosing the
trace its spans, its tasks' tries and their API calls join, and (with a parent-based sampler)
whether they are sampled; there each request starts a trace of its own, linked to the caller's,
as OpenTelemetry advises for a public endpoint. Span attributes carry no customer email (a
query string is redacted as stored errors are), and captured headers never carry a secret.
"""

from __future__ import annotations

import os
from typing import Any, cast
from urllib.parse import unquote_plus

from django.core.exceptions import ImproperlyConfigured

from outbox import tracing
from outbox.storable import redact

DEFAULT_SERVICE_NAME = "tickets-outbox"
# Always among OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS, should an operator
# capture headers: the seller's signature and token, the staff's session and API token.
SECRET_HEADERS = ("authorization", "cookie", "set-cookie", "webhook-signature", ".*token.*")
SANITIZE_VARIABLE = "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS"
# The URL attributes the HTTP instrumentations set, old and stable conventions.
URL_ATTRIBUTES = ("url.query", "url.full", "http.target", "http.url")
EXPORTERS = ("otlp", "console", "none")
_started = False


def tracing_wanted(environ: os._Environ[str] | dict[str, str] = os.environ) -> bool:
    """Whether the environment asks for traces (the rule in this module's docstring)."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = _exporter_names(environ)
    if exporters is not None:
        return exporters != ["none"]
    return any(
        environ.get(name, "").strip()
        for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def _exporter_names(environ: os._Environ[str] | dict[str, str]) -> list[str] | None:
    raw = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if not raw:
        return None
    names = [name.strip() for name in raw.split(",") if name.strip()]
    unknown = [name for name in names if name not in EXPORTERS]
    if unknown:
        raise ImproperlyConfigured(
            f"OTEL_TRACES_EXPORTER={raw!r}: {', '.join(unknown)} is not installed; use "
            f"{', '.join(EXPORTERS)} (otlp is OTLP over HTTP/protobuf)."
        )
    return names


def start_tracing() -> bool:
    """Install the SDK and the instrumentations when the environment asks; once per process.

    Returns whether tracing is on. A bad variable raises ImproperlyConfigured naming it.
    """
    global _started
    if _started:
        return tracing.tracer() is not None
    _started = True
    if not tracing_wanted():
        return False
    protocol = os.environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "")
    ).strip()
    if protocol not in ("", "http/protobuf"):
        raise ImproperlyConfigured(
            f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r}: only http/protobuf is installed "
            "(the collector's port 4318)."
        )
    # The stable HTTP conventions (`http.response.status_code`, `url.full`), which the
    # process spans share, unless the operator chose: the instrumentations read it once.
    os.environ.setdefault("OTEL_SEMCONV_STABILITY_OPT_IN", "http")
    from opentelemetry import trace
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        # Neither OTEL_SERVICE_NAME nor OTEL_RESOURCE_ATTRIBUTES named the service.
        resource = resource.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
    # The sampler (OTEL_TRACES_SAMPLER[_ARG]), span limits and the batch processor's timings
    # (OTEL_BSP_*) are read from the environment by the SDK itself.
    provider = TracerProvider(resource=resource)
    for name in _exporter_names(os.environ) or ["otlp"]:
        if name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            # Endpoint, headers, timeout, compression: OTEL_EXPORTER_OTLP_[TRACES_]*.
            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        elif name == "console":
            provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    trace.set_tracer_provider(provider)
    tracing.use_tracer_provider(provider)
    instrument(provider)
    return True


def instrument(provider: Any) -> None:
    """The Django and requests instrumentations, and the propagators, tracing to `provider`."""
    from opentelemetry import propagate
    from opentelemetry.instrumentation.django import DjangoInstrumentor
    from opentelemetry.instrumentation.propagators import (
        TraceResponsePropagator,
        set_global_response_propagator,
    )
    from opentelemetry.instrumentation.requests import RequestsInstrumentor
    from opentelemetry.propagators.textmap import TextMapPropagator

    # Read per request by the instrumentations: the operator's fields, and ours always.
    theirs = [f.strip() for f in os.environ.get(SANITIZE_VARIABLE, "").split(",") if f.strip()]
    os.environ[SANITIZE_VARIABLE] = ",".join(dict.fromkeys([*theirs, *SECRET_HEADERS]))
    inner = propagate.get_global_textmap()
    if not isinstance(inner, CallerGate):
        propagate.set_global_textmap(cast(TextMapPropagator, CallerGate(inner)))
    # The webhook's answer names its trace (W3C Trace Context Level 2 `traceresponse`).
    set_global_response_propagator(TraceResponsePropagator())
    django_options: dict[str, Any] = {
        "request_hook": _link_untrusted_caller,
        "response_hook": _tag_server_span,
    }
    if "OTEL_PYTHON_DJANGO_EXCLUDED_URLS" not in os.environ:
        # Probes and scrapes every few seconds would bury the traces people look for.
        django_options["excluded_urls"] = "health,metrics,static/"
    DjangoInstrumentor().instrument(tracer_provider=provider, **django_options)
    RequestsInstrumentor().instrument(tracer_provider=provider, request_hook=_name_client_span)


def callers_trusted() -> bool:
    """Whether a request's own trace context is continued (the module's docstring)."""
    from django.conf import settings

    return bool(getattr(settings, "WEBHOOK_SECRET", ""))


class CallerGate:
    """The global propagator, but for the server spans' extraction from an untrusted caller:
    that one finds no parent (the span starts its own trace, linked by
    `_link_untrusted_caller`). Injection into the API calls is the inner propagator's."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def extract(self, carrier: Any, context: Any = None, getter: Any = None) -> Any:
        from opentelemetry.context import Context

        # Only a server's WSGI environ has `wsgi.input`; anything else is passed through.
        if isinstance(carrier, dict) and "wsgi.input" in carrier and not callers_trusted():
            return context if context is not None else Context()
        if getter is None:
            return self.inner.extract(carrier, context)
        return self.inner.extract(carrier, context, getter)

    def inject(self, carrier: Any, context: Any = None, setter: Any = None) -> None:
        if setter is None:
            self.inner.inject(carrier, context)
        else:
            self.inner.inject(carrier, context, setter)

    @property
    def fields(self) -> set[str]:
        return set(self.inner.fields)


def _link_untrusted_caller(span: Any, request: Any) -> None:
    if callers_trusted() or not span.is_recording():
        return
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    headers = {"traceparent": request.META.get("HTTP_TRACEPARENT", "")}
    caller = trace.get_current_span(TraceContextTextMapPropagator().extract(headers))
    if caller.get_span_context().is_valid:
        span.add_link(caller.get_span_context(), {"outbox.link": "caller's trace (unsigned)"})


def _tag_server_span(span: Any, request: Any, response: Any) -> None:
    if not span.is_recording():
        return
    # The id sellers quote, as the correlation middleware cleaned (or made) it.
    correlation_id = getattr(request, "correlation_id", "")
    if correlation_id:
        span.set_attribute("correlation_id", correlation_id)
    # An admin search by a customer's email is in the query string: redacted as stored errors.
    # Percent-encoded on the wire (`ada%40example.com`): matched, and replaced, decoded.
    for name in URL_ATTRIBUTES:
        value = (getattr(span, "attributes", None) or {}).get(name)
        decoded = unquote_plus(value) if isinstance(value, str) else ""
        if redact(decoded) != decoded:
            span.set_attribute(name, redact(decoded))


def _name_client_span(span: Any, request: Any) -> None:
    # "PUT /receipts-api/receipts" reads better in a waterfall than "PUT"; the gateway's
    # paths name an API and a sheet, never a customer.
    if span.is_recording():
        path = (request.path_url or "/").split("?", 1)[0]
        span.update_name(f"{request.method} {path}")
