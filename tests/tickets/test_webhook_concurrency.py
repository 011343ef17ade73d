from __future__ import annotations

import json
import threading

import pytest
from django.db import connection
from django.test import Client

from outbox.models import Task
from tests.conftest import ticket
from tickets.models import Ticket, WebhookDelivery

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def post_from_threads(bodies: list[tuple[str, dict]]) -> list[int]:
    barrier = threading.Barrier(len(bodies))
    statuses: list[int] = []

    def send(key: str, body: dict) -> None:
        client = Client()
        barrier.wait()
        try:
            response = client.post(
                "/tickets-status",
                json.dumps(body),
                content_type="application/json",
                headers={"Idempotency-Key": key},
            )
            statuses.append(response.status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=send, args=item) for item in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return statuses


def test_the_same_webhook_from_several_threads_leaves_one_set_of_rows(postgres_only):
    body = {"tickets": [ticket(f"t-{i}") for i in range(20)]}

    statuses = post_from_threads([("same-key", body)] * 6)

    assert statuses == [200] * 6
    assert WebhookDelivery.objects.count() == 1
    assert Ticket.objects.count() == 20
    assert Task.objects.count() == 40


def test_different_deliveries_of_the_same_tickets_at_once_enqueue_each_effect_once(
    postgres_only,
):
    tickets = [ticket(f"t-{i}") for i in range(20)]
    bodies = [
        (f"key-{n}", {"tickets": list(reversed(tickets)) if n % 2 else tickets}) for n in range(6)
    ]

    statuses = post_from_threads(bodies)

    assert statuses == [200] * 6
    assert WebhookDelivery.objects.count() == 6
    assert Ticket.objects.count() == 20
    assert Task.objects.count() == 40
