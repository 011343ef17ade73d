"""One delivery, one trace: the seller's signed webhook through gunicorn, a real qcluster and a
flaky fake gateway, exported over OTLP/HTTP to a receiver that decodes it as a collector does."""

from __future__ import annotations

import base64
import json
from collections import defaultdict
from datetime import UTC, datetime

import pytest
import requests
from standardwebhooks import Webhook

from tests.e2e.conftest import Stack, wait_until
from tests.e2e.otlp_receiver import OtlpReceiver, ReceivedSpan
from tests.e2e.test_cluster import all_tasks_succeeded, confirmed

pytestmark = pytest.mark.e2e

SECRET = "whsec_" + base64.b64encode(b"trace-test-secret-of-32-bytes!!!").decode()
SELLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SELLER_SPAN = "00f067aa0ba902b7"
TICKETS = [f"tr-{n}" for n in range(4)]  # a receipt and a print row each: 8 tasks


def post_signed(stack: Stack, body: bytes, *, headers: dict[str, str]) -> requests.Response:
    now = datetime.now(tz=UTC)
    signature = Webhook(SECRET).sign("msg_trace_1", now, body.decode())
    return requests.post(
        f"{stack.web_url}/tickets-status",
        data=body,
        headers={
            "Content-Type": "application/json",
            "webhook-id": "msg_trace_1",
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": signature,
            **headers,
        },
        timeout=30,
    )


def tries_of(spans: list[ReceivedSpan]) -> dict[int, list[int]]:
    """Attempt numbers of the process spans, per task, in order."""
    found: dict[int, list[int]] = defaultdict(list)
    for span in spans:
        if span.kind == "consumer" and not span.attributes.get("outbox.task.deferred"):
            found[span.attributes["outbox.task.id"]].append(span.attributes["outbox.task.attempt"])
    return {task: sorted(numbers) for task, numbers in found.items()}


def test_a_signed_delivery_is_one_trace_from_the_sellers_span_to_every_api_call(stack: Stack):
    # The seed fixes the gateway's draws: the first calls include failures, so tasks retry.
    stack.start_gateway("--seed", "24", "--failure-rate", "0.2")
    with OtlpReceiver() as receiver:
        stack.env.update(
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
                "OTEL_BSP_SCHEDULE_DELAY": "200",
                "WEBHOOK_SECRET": SECRET,
                # No circuit rests on 20% failures: every try spends its attempt number.
                "OUTBOX_CIRCUIT_FAILURES": "1000",
            }
        )
        stack.start_web()
        stack.start_cluster()
        body = json.dumps({"tickets": [confirmed(t) for t in TICKETS]}).encode()

        answer = post_signed(
            stack,
            body,
            headers={
                "Idempotency-Key": "trace-1",
                "Correlation-ID": "corr-trace-1",
                # The seller's own trace: not part of the signature, and continued.
                "traceparent": f"00-{SELLER_TRACE}-{SELLER_SPAN}-01",
            },
        )

        assert answer.status_code == 200, answer.text
        version, trace_id, server_span_id, flags = answer.headers["traceresponse"].split("-")
        assert (version, trace_id, flags) == ("00", SELLER_TRACE, "01")
        wait_until(
            lambda: all_tasks_succeeded(stack, 2 * len(TICKETS)),
            timeout=20,
            what="every task to succeed",
        )
        db_tries = dict(stack.db.tries_per_task())
        calls = [c for c in stack.gateway_state()["calls"] if c["correlation_id"] == "corr-trace-1"]
        expected_spans = sum(db_tries.values()) + len(calls)
        # Only the seller's trace counts: the cluster's start-up check of GATEWAY_ADDR sends
        # client spans of its own, which let this wait end before a last try's span came.
        wait_until(
            lambda: (
                sum(
                    s.kind in ("consumer", "client") and s.trace_id == SELLER_TRACE
                    for s in receiver.received()
                )
                >= expected_spans
            ),
            timeout=10,
            what="every try's and call's span at the receiver",
        )
        spans = receiver.received()
        # Stopped while the receiver listens: their last exports find it.
        stack.stop_all()

    # One trace: every span the web and the cluster sent is in the seller's, but for the
    # cluster's start-up check of GATEWAY_ADDR (calls of its own, before any task).
    others = [s for s in spans if s.trace_id != SELLER_TRACE]
    assert all(s.kind == "client" and not s.parent_span_id for s in others), others
    spans = [s for s in spans if s.trace_id == SELLER_TRACE]
    [server] = [s for s in spans if s.kind == "server"]
    assert server.span_id == server_span_id
    assert server.parent_span_id == SELLER_SPAN
    assert server.name == "POST tickets-status"
    # One process span per try, attempt numbers 1..n as the database counts them.
    assert tries_of(spans) == {task: list(range(1, n + 1)) for task, n in db_tries.items()}
    assert sum(db_tries.values()) > len(db_tries), "20% failures: some task was retried"
    by_id = {s.span_id: s for s in spans}
    for span in spans:
        if span.kind == "consumer":
            assert by_id[span.parent_span_id].kind == "producer"
            retried = span.attributes["outbox.task.outcome"] == "retry"
            assert (span.status_code == 2) == retried  # STATUS_CODE_ERROR
    # One client span per API call, each the parent the gateway was told of in traceparent.
    clients = [s for s in spans if s.kind == "client"]
    assert len(clients) == len(calls)
    assert all(by_id[c.parent_span_id].kind == "consumer" for c in clients)
    sent = sorted(call["traceparent"].split("-")[2] for call in calls)
    assert sorted(c.span_id for c in clients) == sent
    assert {call["traceparent"].split("-")[1] for call in calls} == {SELLER_TRACE}
    failed = [c for c in calls if c["status"] >= 500]
    assert failed, "20% failures: some call failed"
    assert sum(c.attributes.get("http.response.status_code", 0) >= 500 for c in clients) == len(
        failed
    )
