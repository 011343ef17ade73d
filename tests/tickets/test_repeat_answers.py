"""A repeated delivery answers the first answer byte for byte (docs/API.md, issue 23 item 6).

PostgreSQL's jsonb keeps no key order: an answer rebuilt from the JSON column came back as
`{"tasks":...,"tickets":...,"correlation_id":...}`. These tests fail there when the answer is
re-rendered instead of stored.
"""

from __future__ import annotations

import base64
import json
import time

import pytest
from django.test import override_settings
from rest_framework.renderers import JSONRenderer

from tests.conftest import ticket
from tickets.intake.signature import sign
from tickets.models import WebhookDelivery

pytestmark = pytest.mark.django_db

KEY = bytes(range(32))
SECRET = "whsec_" + base64.b64encode(KEY).decode()


def test_a_repeat_with_the_same_key_answers_the_first_answers_bytes(post_tickets):
    tickets = [ticket("t-2", email="zoe@bücher.example"), ticket("t-1", "canceled")]
    first = post_tickets(tickets, key="k", correlation_id="c-1")

    again = post_tickets(tickets, key="k", correlation_id="c-2")

    assert first.status_code == again.status_code == 200
    assert again.content == first.content
    assert again["Content-Type"] == first["Content-Type"] == "application/json"
    assert again["Correlation-ID"] == "c-1"
    # The order the contract shows (docs/API.md), not the database's.
    assert list(json.loads(first.content)) == ["correlation_id", "tickets", "tasks"]
    assert list(json.loads(first.content)["tickets"][0]) == ["ticket_id", "status"]


def test_a_replayed_webhook_id_answers_the_first_answers_bytes(client):
    raw = json.dumps({"tickets": [ticket("t-1")]}).encode()

    def post(idempotency_key: str):
        when = int(time.time())
        return client.post(
            "/tickets-status",
            raw,
            content_type="application/json",
            headers={
                "Idempotency-Key": idempotency_key,
                "webhook-id": "msg_1",
                "webhook-timestamp": str(when),
                "webhook-signature": sign(KEY, webhook_id="msg_1", timestamp=when, body=raw),
            },
        )

    with override_settings(WEBHOOK_SECRET=SECRET):
        first = post("key-1")
        again = post("key-2")

    assert first.status_code == again.status_code == 200
    assert again.content == first.content


def test_a_delivery_stored_before_its_text_was_kept_answers_what_it_answered_then(post_tickets):
    # Rows from before migration tickets.0006 (or written by an older process during a rolling
    # deploy) hold only the JSON column: their repeat must still be the first answer's bytes,
    # which DRF's JSONRenderer wrote from the dict in the order the intake built it.
    tickets = [ticket("t-2", email="zoe@bücher.example"), ticket("t-1", "canceled")]
    first = post_tickets(tickets, key="k", correlation_id="c-1")
    delivery = WebhookDelivery.objects.get()
    WebhookDelivery.objects.filter(pk=delivery.pk).update(response_body="")
    as_drf_rendered_it = JSONRenderer().render(json.loads(first.content))

    again = post_tickets(tickets, key="k")

    assert again.content == as_drf_rendered_it == first.content
