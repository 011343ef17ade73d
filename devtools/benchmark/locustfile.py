"""The sellers of figure (p), for locust: `MixedLoad` posts signed webhooks as a seller's load
would, `PlainInsert` calls the benchmark's plain one-INSERT view (the baseline).

Run by `devtools.benchmark.mixed_load` as `locust -f <this file> --headless -u 20 -r 20 -t 30s
--host <web> MixedLoad`; it needs `LOAD_WEBHOOK_SECRET` (the web's WEBHOOK_SECRET) and
`LOAD_RUN` (a prefix that keeps this run's ticket ids and keys apart from earlier runs').
Locust's users are greenlets: no Django is set up here, only the signing function imported.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import time
import uuid
from typing import Any

from locust import FastHttpUser, constant, task

from tickets.intake.signature import (
    ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    decode_secret,
    sign,
)

_KEY = decode_secret(os.environ.get("LOAD_WEBHOOK_SECRET", ""))
_RUN = os.environ.get("LOAD_RUN", uuid.uuid4().hex[:8])
_USERS = itertools.count()


def _signed(webhook_id: str, content: bytes) -> dict[str, str]:
    now = int(time.time())
    return {
        ID_HEADER: webhook_id,
        TIMESTAMP_HEADER: str(now),
        SIGNATURE_HEADER: sign(_KEY, webhook_id=webhook_id, timestamp=now, body=content),
    }


class MixedLoad(FastHttpUser):
    """A seller: webhooks of 1-5 new confirmed tickets; 10% a repeat of an earlier delivery
    (same key, same body), 5% a refund of a ticket it sent, 5% a read of the ticket list."""

    wait_time = constant(0)

    def on_start(self) -> None:
        self.user = next(_USERS)
        self.sent: list[tuple[str, bytes]] = []
        self.refundable: list[str] = []
        self.counter = itertools.count()
        self.rand = random.Random(f"{_RUN}-{self.user}")

    def _post(self, key: str, body: bytes, name: str) -> None:
        headers = {"Content-Type": "application/json", "Idempotency-Key": key}
        headers.update(_signed(key, body))
        with self.client.post(
            # ASCII JSON: sent as the very bytes the signature covers.
            "/tickets-status",
            data=body.decode(),
            headers=headers,
            name=name,
            catch_response=True,
        ) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}: {response.text[:200]}")

    @task(80)
    def new_webhook(self) -> None:
        n = next(self.counter)
        key = f"{_RUN}-u{self.user}-d{n}"
        ids = [f"{key}-t{i}" for i in range(self.rand.randint(1, 5))]
        tickets: list[dict[str, Any]] = [
            {
                "ticket_id": ticket_id,
                "status": "confirmed",
                "customer_email": f"seller-load-{self.user}@example.com",
                "price": {"amount": "25.00", "currency": "EUR"},
            }
            for ticket_id in ids
        ]
        body = json.dumps({"tickets": tickets}).encode()
        self._post(key, body, "POST /tickets-status")
        self.sent.append((key, body))
        self.refundable.extend(ids)

    @task(10)
    def repeat_webhook(self) -> None:
        if not self.sent:
            return self.new_webhook()
        key, body = self.rand.choice(self.sent)
        self._post(key, body, "POST /tickets-status (repeat)")

    @task(5)
    def refund(self) -> None:
        if not self.refundable:
            return self.new_webhook()
        ticket_id = self.refundable.pop(self.rand.randrange(len(self.refundable)))
        path = f"/ticket-refund/{ticket_id}"
        headers = _signed(f"{_RUN}-refund-{ticket_id}", f"PUT {path}".encode())
        with self.client.put(
            path, headers=headers, name="PUT /ticket-refund/{id}", catch_response=True
        ) as response:
            if response.status_code != 202:
                response.failure(f"HTTP {response.status_code}: {response.text[:200]}")

    @task(5)
    def list_tickets(self) -> None:
        headers = _signed(f"{_RUN}-list-{uuid.uuid4().hex}", b"GET /tickets")
        with self.client.get(
            "/tickets?limit=20", headers=headers, name="GET /tickets", catch_response=True
        ) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}: {response.text[:200]}")


class PlainInsert(FastHttpUser):
    """The baseline: a plain Django view that does one INSERT, on the same server."""

    wait_time = constant(0)

    @task
    def insert(self) -> None:
        with self.client.post(
            "/benchmark/plain-insert", data='{"n": 1}', catch_response=True
        ) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}: {response.text[:200]}")
