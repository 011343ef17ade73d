"""What the webhook's and the admin's server spans take from a caller: its trace only when the
seller is authenticated, never a customer's email from a query string, never a secret header."""

from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.parse import unquote

import pytest
from opentelemetry import propagate, trace
from opentelemetry.instrumentation.django import DjangoInstrumentor
from opentelemetry.instrumentation.propagators import set_global_response_propagator
from opentelemetry.instrumentation.requests import RequestsInstrumentor
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from outbox import tracing
from outbox.models import Task
from project import telemetry
from tests.conftest import ticket

pytestmark = pytest.mark.django_db

SELLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SELLER_PARENT = f"00-{SELLER_TRACE}-00f067aa0ba902b7-01"


@pytest.fixture
def exported() -> Iterator[InMemorySpanExporter]:
    """The instrumentations as start_tracing installs them, tracing to the test's provider."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    textmap = propagate.get_global_textmap()
    tracing.use_tracer_provider(provider)
    telemetry.instrument(provider)
    try:
        yield exporter
    finally:
        DjangoInstrumentor().uninstrument()
        RequestsInstrumentor().uninstrument()
        set_global_response_propagator(None)
        propagate.set_global_textmap(textmap)
        tracing.use_tracer_provider(None)
        provider.shutdown()


def server_span(exporter: InMemorySpanExporter) -> ReadableSpan:
    [span] = [s for s in exporter.get_finished_spans() if s.kind == SpanKind.SERVER]
    return span


def post(client, headers: dict[str, str]):
    body = json.dumps({"tickets": [ticket("t-1")]})
    return client.post(
        "/tickets-status",
        body,
        content_type="application/json",
        headers={"Idempotency-Key": "k-1", **headers},
    )


def test_an_unsigned_callers_traceparent_is_linked_not_continued(exported, client, settings):
    settings.WEBHOOK_SECRET = ""

    answer = post(client, {"traceparent": SELLER_PARENT})

    assert answer.status_code == 200, answer.content
    server = server_span(exporter=exported)
    own_trace = trace.format_trace_id(server.context.trace_id)
    assert own_trace != SELLER_TRACE
    assert server.parent is None
    [link] = server.links
    assert trace.format_trace_id(link.context.trace_id) == SELLER_TRACE
    # The tasks' tries join the service's own trace, the one the answer names.
    assert answer.headers["traceresponse"].split("-")[1] == own_trace
    stored = {tracing.trace_id_of(c) for c in Task.objects.values_list("trace_context", flat=True)}
    assert stored == {own_trace}


def test_an_authenticated_sellers_traceparent_is_continued(exported, client, settings):
    # With WEBHOOK_SECRET set the webhook answers only its seller; a GET the gate treats alike.
    settings.WEBHOOK_SECRET = "whsec_" + "A" * 44

    client.get("/admin/login/", headers={"traceparent": SELLER_PARENT})

    server = server_span(exporter=exported)
    assert trace.format_trace_id(server.context.trace_id) == SELLER_TRACE
    assert server.parent is not None
    assert not server.links


@pytest.mark.parametrize(
    "traceparent",
    [
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        "00-4bf92f3577b34da6a3ce929d0e0e4736\x00-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" + " " * 600,
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0\u00e9",
    ],
)
def test_a_malformed_traceparent_starts_a_trace_of_its_own(exported, client, settings, traceparent):
    settings.WEBHOOK_SECRET = "whsec_" + "A" * 44

    answer = client.get("/admin/login/", headers={"traceparent": traceparent})

    assert answer.status_code == 200
    server = server_span(exporter=exported)
    assert trace.format_trace_id(server.context.trace_id) != SELLER_TRACE
    assert server.parent is None


def test_ten_thousand_tracestate_members_are_dropped_and_the_webhook_answers(
    exported, client, settings
):
    settings.WEBHOOK_SECRET = ""
    members = ",".join(f"k{n}=v" for n in range(10_000))

    answer = post(client, {"traceparent": SELLER_PARENT, "tracestate": members})

    assert answer.status_code == 200, answer.content
    for carrier in Task.objects.values_list("trace_context", flat=True):
        assert "tracestate" not in carrier


def test_a_customers_email_in_a_query_string_stays_off_the_server_span(exported, admin_client):
    # The staff's search by email, as gunicorn hands it over (RAW_URI: url.path, url.query).
    raw = "/admin/tickets/ticket/?q=ada%40example.com"
    admin_client.get("/admin/tickets/ticket/", {"q": "ada@example.com"}, RAW_URI=raw)

    attributes = dict(server_span(exporter=exported).attributes)
    urls = {k: v for k, v in attributes.items() if k in telemetry.URL_ATTRIBUTES}
    assert urls, attributes
    for value in urls.values():
        assert "ada" not in unquote(str(value))
        assert "q=[email]" in value


def test_captured_headers_never_carry_a_secret(exported, client, settings, monkeypatch):
    settings.WEBHOOK_SECRET = ""
    monkeypatch.setenv("OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST", ".*")

    post(
        client,
        {
            "Authorization": "Bearer seller-secret-token",
            "webhook-signature": "v1,c2VjcmV0",
            "Cookie": "sessionid=staff-session",
            "User-Agent": "seller/1.0",
        },
    )

    attributes = dict(server_span(exporter=exported).attributes)
    text = json.dumps({k: list(v) if isinstance(v, tuple) else v for k, v in attributes.items()})
    assert "http.request.header.user_agent" in attributes, "headers were captured"
    for secret in ("seller-secret-token", "c2VjcmV0", "staff-session"):
        assert secret not in text
