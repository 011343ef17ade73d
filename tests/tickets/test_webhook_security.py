"""POST /tickets-status against forged, replayed and hostile requests (docs/SECURITY.md)."""

from __future__ import annotations

import base64
import io
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.handlers.asgi import ASGIRequest
from django.db import connection
from django.test import Client, override_settings

from devtools.fake_gateway import FakeGateway, FaultConfig, Reply, error_reply
from outbox.models import Attempt, Task
from outbox.runtime.relay import Relay
from tests.conftest import ticket
from tickets.intake.body import PayloadTooLarge, read_body
from tickets.intake.signature import (
    TOLERANCE_SECONDS,
    WebhookAuthError,
    decode_secret,
    sign,
    verify,
)
from tickets.models import Ticket, WebhookDelivery, WebhookMessage

pytestmark = pytest.mark.django_db

KEY = bytes(range(32))
SECRET = "whsec_" + base64.b64encode(KEY).decode()
OTHER_KEY = bytes(range(100, 132))
EMAIL = "grace.hopper@example.org"


def counts() -> tuple[int, int, int, int]:
    return (
        Ticket.objects.count(),
        Task.objects.count(),
        WebhookDelivery.objects.count(),
        WebhookMessage.objects.count(),
    )


NOTHING = (0, 0, 0, 0)


@pytest.fixture
def signed_mode() -> Iterator[None]:
    with override_settings(WEBHOOK_SECRET=SECRET):
        yield


@pytest.fixture
def post_signed(client: Client, signed_mode: None) -> Callable[..., Any]:
    """POST a webhook signed as the seller signs it; every part can be spoiled."""

    def post(
        tickets: list[dict[str, Any]] | None = None,
        *,
        key: str = "key-1",
        webhook_id: str = "msg_1",
        timestamp: int | None = None,
        body: bytes | None = None,
        signature: str | None = None,
        keys: tuple[bytes, ...] = (KEY,),
        drop: str = "",
    ) -> Any:
        raw = body if body is not None else json.dumps({"tickets": tickets or []}).encode()
        when = int(time.time()) if timestamp is None else timestamp
        if signature is None:
            signature = " ".join(
                sign(k, webhook_id=webhook_id, timestamp=when, body=raw) for k in keys
            )
        headers = {
            "Idempotency-Key": key,
            "webhook-id": webhook_id,
            "webhook-timestamp": str(when),
            "webhook-signature": signature,
        }
        headers.pop(drop, None)
        return client.post("/tickets-status", raw, content_type="application/json", headers=headers)

    return post


# --- Signatures -------------------------------------------------------------------------------


def test_a_validly_signed_webhook_is_accepted_and_its_id_stored(post_signed):
    response = post_signed([ticket("t-1")], webhook_id="msg_ok")

    assert response.status_code == 200
    assert counts() == (1, 2, 1, 1)
    message = WebhookMessage.objects.get()
    assert (message.webhook_id, message.idempotency_key) == ("msg_ok", "key-1")
    assert message.received_at is not None


def test_without_a_secret_an_unsigned_webhook_keeps_the_plain_contract(post_tickets):
    response = post_tickets([ticket("t-1")])

    assert response.status_code == 200
    assert counts() == (1, 2, 1, 0)


def test_a_signature_made_with_another_key_is_401_and_writes_nothing(post_signed):
    response = post_signed([ticket("t-1")], keys=(OTHER_KEY,))

    assert response.status_code == 401
    assert response.json() == {"error": "no signature in webhook-signature matches the body"}
    assert counts() == NOTHING


def test_a_body_changed_after_signing_is_401_and_writes_nothing(post_signed):
    signed_body = json.dumps({"tickets": [ticket("t-1", amount="1.00")]}).encode()
    forged_body = json.dumps({"tickets": [ticket("t-1", amount="0.01")]}).encode()
    now = int(time.time())
    signature = sign(KEY, webhook_id="msg_1", timestamp=now, body=signed_body)

    response = post_signed(body=forged_body, timestamp=now, signature=signature)

    assert response.status_code == 401
    assert counts() == NOTHING


@pytest.mark.parametrize("header", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_a_missing_signature_header_is_401_naming_it(post_signed, header):
    response = post_signed([ticket("t-1")], drop=header)

    assert response.status_code == 401
    assert response.json() == {"error": f"the {header} header is required"}
    assert counts() == NOTHING


def test_with_a_secret_an_unsigned_webhook_is_401(client, signed_mode):
    body = json.dumps({"tickets": [ticket("t-1")]})

    response = client.post(
        "/tickets-status", body, content_type="application/json", headers={"Idempotency-Key": "k"}
    )

    assert response.status_code == 401
    assert counts() == NOTHING


@pytest.mark.parametrize(
    ("offset", "reason"),
    [
        (-(TOLERANCE_SECONDS + 1), "webhook-timestamp is more than 300 seconds old"),
        (TOLERANCE_SECONDS + 1, "webhook-timestamp is more than 300 seconds in the future"),
    ],
)
def test_a_timestamp_outside_five_minutes_is_401_and_writes_nothing(post_signed, offset, reason):
    response = post_signed([ticket("t-1")], timestamp=int(time.time()) + offset)

    assert response.status_code == 401
    assert response.json() == {"error": reason}
    assert counts() == NOTHING


@pytest.mark.parametrize("timestamp", ["soon", "1.5e9", "-1", "\u0661\u0667" + "\u0660" * 8])
def test_a_timestamp_that_is_not_whole_seconds_is_401(client, signed_mode, timestamp):
    body = json.dumps({"tickets": [ticket("t-1")]}).encode()
    headers = {
        "Idempotency-Key": "k",
        "webhook-id": "msg_1",
        "webhook-timestamp": timestamp,
        "webhook-signature": "v1," + base64.b64encode(b"x" * 32).decode(),
    }

    response = client.post(
        "/tickets-status", body, content_type="application/json", headers=headers
    )

    assert response.status_code == 401
    assert "whole seconds" in response.json()["error"]
    assert counts() == NOTHING


@pytest.mark.parametrize(
    "signature",
    [
        "v1",
        "v1,",
        "v1,not base64!",
        "garbage",
        "v2," + base64.b64encode(b"x" * 32).decode(),
        "v1," + base64.b64encode(b"too short").decode(),
    ],
)
def test_a_malformed_signature_header_is_401(post_signed, signature):
    response = post_signed([ticket("t-1")], signature=signature)

    assert response.status_code == 401
    assert "webhook-signature is malformed" in response.json()["error"]
    assert counts() == NOTHING


def test_during_key_rotation_one_valid_signature_among_several_is_enough(post_signed):
    response = post_signed([ticket("t-1")], keys=(OTHER_KEY, KEY))

    assert response.status_code == 200
    assert counts() == (1, 2, 1, 1)


def test_entries_of_other_schemes_are_skipped_beside_a_valid_signature(post_signed):
    raw = json.dumps({"tickets": [ticket("t-1")]}).encode()
    now = int(time.time())
    valid = sign(KEY, webhook_id="msg_1", timestamp=now, body=raw)

    response = post_signed(body=raw, timestamp=now, signature=f"v1a,c2lnbmVk junk {valid}")

    assert response.status_code == 200


def test_signatures_are_compared_in_constant_time(post_signed, monkeypatch):
    import hmac

    calls = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr("tickets.intake.signature.hmac.compare_digest", spy)

    response = post_signed([ticket("t-1")], keys=(OTHER_KEY, KEY))

    assert response.status_code == 200
    assert len(calls) == 2


def test_verify_accepts_a_timestamp_exactly_at_the_tolerance_and_refuses_one_past_it():
    body = b"{}"
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": "1700000000",
        "webhook-signature": sign(KEY, webhook_id="msg_1", timestamp=1700000000, body=body),
    }

    assert verify(KEY, headers=headers, body=body, now=1700000000 + 300) == "msg_1"
    assert verify(KEY, headers=headers, body=body, now=1700000000 - 300) == "msg_1"
    with pytest.raises(WebhookAuthError, match="old"):
        verify(KEY, headers=headers, body=body, now=1700000000 + 301)


def test_the_signed_content_is_id_dot_timestamp_dot_body():
    # The example of the Standard Webhooks specification's reference libraries.
    key = decode_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    body = b'{"test": 2432232314}'

    signature = sign(
        key, webhook_id="msg_p5jXN8AQM9LWM0D4loKWxJek", timestamp=1614265330, body=body
    )

    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


@pytest.mark.parametrize(
    ("secret", "reason"),
    [
        ("c2VjcmV0LWtleS1vZi10aGUtc2VsbGVyLTMyYnl0ZXM=", "must be 'whsec_'"),
        ("whsec_not base64!!", "not valid base64"),
        ("whsec_" + base64.b64encode(b"short").decode(), "use at least 24"),
    ],
)
def test_a_malformed_secret_is_improperly_configured_without_quoting_it(secret, reason):
    with pytest.raises(ImproperlyConfigured, match=reason) as caught:
        decode_secret(secret)

    assert secret not in str(caught.value)
    assert secret.removeprefix("whsec_") not in str(caught.value)


# --- Replays ----------------------------------------------------------------------------------


def test_a_replayed_webhook_id_gets_the_first_answer_and_writes_nothing(post_signed):
    first = post_signed([ticket("t-1")], webhook_id="msg_r", key="key-1")
    before = counts()

    # The seller's retry: the same message and id, signed again; even under another key.
    again = post_signed([ticket("t-1")], webhook_id="msg_r", key="key-2")

    assert again.status_code == 200
    assert again.json() == first.json()
    assert again["Correlation-ID"] == first["Correlation-ID"]
    assert counts() == before == (1, 2, 1, 1)


def test_a_webhook_id_replayed_with_another_body_is_422_and_writes_nothing(post_signed):
    post_signed([ticket("t-1")], webhook_id="msg_r", key="key-1")
    before = counts()

    response = post_signed([ticket("t-2")], webhook_id="msg_r", key="key-2")

    assert response.status_code == 422
    assert response.json() == {
        "error": "webhook-id 'msg_r' was already used with a different body."
    }
    assert counts() == before


def test_the_webhook_id_is_stored_in_the_transaction_of_the_delivery(post_signed, monkeypatch):
    def explode(specs):
        assert WebhookMessage.objects.count() == 1  # written first, in this transaction
        raise RuntimeError("injected failure before commit")

    monkeypatch.setattr("tickets.services.enqueue_many", explode)

    with pytest.raises(RuntimeError, match="injected failure"):
        post_signed([ticket("t-1")])

    assert counts() == NOTHING


def test_an_idempotency_key_reused_with_another_body_stores_no_webhook_id(post_signed):
    post_signed([ticket("t-1")], webhook_id="msg_1", key="k")

    response = post_signed([ticket("t-2")], webhook_id="msg_2", key="k")

    assert response.status_code == 422
    assert list(WebhookMessage.objects.values_list("webhook_id", flat=True)) == ["msg_1"]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_one_message_sent_from_several_threads_at_once_is_processed_once(postgres_only):
    raw = json.dumps({"tickets": [ticket(f"t-{i}") for i in range(20)]}).encode()
    now = int(time.time())
    signature = sign(KEY, webhook_id="msg_race", timestamp=now, body=raw)
    barrier = threading.Barrier(6)
    answers: list[tuple[int, Any]] = []

    def send(key: str) -> None:
        barrier.wait()
        try:
            response = Client().post(
                "/tickets-status",
                raw,
                content_type="application/json",
                headers={
                    "Idempotency-Key": key,
                    "webhook-id": "msg_race",
                    "webhook-timestamp": str(now),
                    "webhook-signature": signature,
                },
            )
            answers.append((response.status_code, response.json()))
        finally:
            connection.close()

    with override_settings(WEBHOOK_SECRET=SECRET):
        threads = [threading.Thread(target=send, args=(f"key-{n}",)) for n in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)

    assert [status for status, _ in answers] == [200] * 6
    assert len({json.dumps(body, sort_keys=True) for _, body in answers}) == 1
    assert counts() == (20, 40, 1, 1)


# --- Hostile input ----------------------------------------------------------------------------


class UnreadableStream:
    """A request body that fails the test if anything reads it."""

    def read(self, *args: Any) -> bytes:
        pytest.fail("the body was read")

    def readline(self, *args: Any) -> bytes:
        pytest.fail("the body was read")


class CountingStream(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.bytes_read = 0

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        self.bytes_read += len(chunk)
        return chunk


def test_a_declared_length_over_the_limit_is_413_before_a_byte_is_read(client):
    response = client.generic(
        "POST",
        "/tickets-status",
        headers={"Idempotency-Key": "k"},
        CONTENT_TYPE="application/json",
        CONTENT_LENGTH=str(10**12),
        **{"wsgi.input": UnreadableStream()},
    )

    assert response.status_code == 413
    assert response.json() == {
        "error": "The request body is larger than 1048576 bytes (WEBHOOK_MAX_BODY_BYTES)."
    }
    assert counts() == NOTHING


@override_settings(WEBHOOK_MAX_BODY_BYTES=2000)
def test_a_real_body_over_the_limit_is_413_and_writes_nothing(post_tickets):
    tickets = [ticket(f"t-{i}") for i in range(30)]
    assert len(json.dumps({"tickets": tickets})) > 2000

    response = post_tickets(tickets)

    assert response.status_code == 413
    assert "2000 bytes" in response.json()["error"]
    assert counts() == NOTHING


@override_settings(WEBHOOK_MAX_BODY_BYTES=2000)
def test_a_body_just_under_the_limit_is_taken(post_tickets):
    tickets = [ticket(f"t-{i}") for i in range(10)]
    assert len(json.dumps({"tickets": tickets})) <= 2000

    assert post_tickets(tickets).status_code == 200


def _scope(*, content_length: int | None) -> dict[str, Any]:
    headers = [(b"content-type", b"application/json")]
    if content_length is not None:
        headers.append((b"content-length", str(content_length).encode()))
    return {"type": "http", "method": "POST", "path": "/tickets-status", "headers": headers}


def test_a_body_without_a_length_is_read_no_further_than_the_limit_plus_one_byte():
    stream = CountingStream(b"x" * 10_000_000)
    request = ASGIRequest(_scope(content_length=None), stream)

    with pytest.raises(PayloadTooLarge, match="1000 bytes"):
        read_body(request, limit=1000)

    assert stream.bytes_read == 1001


def test_a_body_without_a_length_under_the_limit_is_read_whole():
    stream = CountingStream(b"y" * 999)
    request = ASGIRequest(_scope(content_length=None), stream)

    assert read_body(request, limit=1000) == b"y" * 999


@override_settings(WEBHOOK_MAX_TICKETS=3)
def test_more_tickets_than_the_limit_is_400_naming_it_and_writes_nothing(post_tickets):
    response = post_tickets([ticket(f"t-{i}", email="not-an-email") for i in range(4)])

    assert response.status_code == 400
    # Counted before any ticket is validated: the bad emails are not even reported.
    assert response.json()["errors"] == [
        {"field": "tickets", "message": "Ensure this field has no more than 3 elements."}
    ]
    assert "no more than 3" in response.json()["error"]
    assert counts() == NOTHING


@override_settings(WEBHOOK_MAX_TICKETS=3)
def test_as_many_tickets_as_the_limit_are_taken(post_tickets):
    assert post_tickets([ticket(f"t-{i}") for i in range(3)]).status_code == 200


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]
)
def test_another_content_type_is_415_in_the_error_shape_and_writes_nothing(
    post_tickets, content_type
):
    response = post_tickets(body='{"tickets": []}', content_type=content_type)

    assert response.status_code == 415
    assert set(response.json()) == {"error"}
    assert "Unsupported media type" in response.json()["error"]
    assert counts() == NOTHING


def test_json_with_a_charset_parameter_is_taken(post_tickets):
    response = post_tickets([ticket("t-1")], content_type="application/json; charset=utf-8")

    assert response.status_code == 200


@pytest.mark.parametrize("depth", [10_000, 100])
def test_deeply_nested_json_is_400_and_writes_nothing(post_tickets, depth):
    body = '{"tickets": [' + json.dumps(ticket("t-1")) + ', {"x": ' + "[" * depth
    body += "]" * depth + "}]}"

    response = post_tickets(body=body)

    assert response.status_code == 400
    assert response.json() == {"error": "JSON parse error - nested deeper than 32 levels."}
    assert counts() == NOTHING


def test_a_body_that_is_not_utf8_is_400_and_writes_nothing(post_tickets):
    body = json.dumps({"tickets": [ticket("t-1")]}).encode().replace(b"t-1", b"t-\xff")

    response = post_tickets(body=body)

    assert response.status_code == 400
    assert "not UTF-8" in response.json()["error"]
    assert counts() == NOTHING


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_json_constants_that_are_not_json_are_400(post_tickets, constant):
    response = post_tickets(body='{"tickets": [], "x": ' + constant + "}")

    assert response.status_code == 400
    assert "is not valid JSON" in response.json()["error"]


def test_a_hostile_body_is_refused_before_the_signature_is_even_checked(client, signed_mode):
    response = client.generic(
        "POST",
        "/tickets-status",
        CONTENT_TYPE="application/json",
        CONTENT_LENGTH=str(10**12),
        **{"wsgi.input": UnreadableStream()},
    )

    assert response.status_code == 413


# --- Logs -------------------------------------------------------------------------------------


class EchoingGateway(FakeGateway):
    """An API that quotes the request back in its errors, as real APIs sometimes do."""

    def handle(
        self,
        method: str,
        target: str,
        body: bytes,
        correlation_id: str | None,
        traceparent: str | None = None,
    ) -> Reply:
        if method == "POST" and "/spreadsheets-api/" in target:
            return error_reply(500, f"could not append {body.decode()}")
        if method == "PUT" and target == "/receipts-api/receipts":
            return error_reply(400, f"refused {body.decode()} for {EMAIL}")
        return super().handle(method, target, body, correlation_id, traceparent)


@pytest.fixture
def gateway() -> FakeGateway:
    return EchoingGateway(FaultConfig(seed=0))


@pytest.fixture
def all_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Every record at INFO and above, `django.*` too (it does not propagate to the root)."""
    django_logger = logging.getLogger("django")
    django_logger.addHandler(caplog.handler)
    caplog.set_level(logging.INFO)
    yield caplog
    django_logger.removeHandler(caplog.handler)


@pytest.mark.django_db(transaction=True)
def test_no_customer_email_or_secret_reaches_the_logs_or_the_stored_errors(
    client, post_signed, gateway_url, all_logs
):
    response = post_signed([ticket("t-1", email=EMAIL)], webhook_id="msg_log")
    assert response.status_code == 200
    forged = post_signed([ticket("t-2", email=EMAIL)], webhook_id="msg_2", keys=(OTHER_KEY,))
    assert forged.status_code == 401

    stats = Relay(threads=2, batch_size=10).run_once()

    assert stats.claimed == 2
    assert (stats.retried, stats.failed) == (1, 1)
    text = all_logs.text
    # The attempts were logged with the APIs' (redacted) echo of the rows.
    assert "outcome=retry" in text
    assert "outcome=failed" in text
    assert "[email]" in text
    assert "Unauthorized: /tickets-status" in text
    assert EMAIL not in text
    assert SECRET not in text
    assert SECRET.removeprefix("whsec_") not in text
    stored = list(Attempt.objects.values_list("error", flat=True))
    stored += list(Task.objects.values_list("last_error", flat=True))
    assert all("[email]" in error for error in stored if error)
    assert not any(EMAIL in error for error in stored)
