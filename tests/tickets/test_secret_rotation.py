"""Key rollover on our side, and Svix's header names (issue 23 items 4 and 5).

Deliveries are signed with the `standardwebhooks` library, as a seller's own code would.
"""

from __future__ import annotations

import base64
import json
import logging
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.test import Client, override_settings
from standardwebhooks import Webhook

from outbox.models import Task
from tests.conftest import ticket
from tickets.intake.seller_auth import signed_content
from tickets.models import Ticket, WebhookMessage

pytestmark = pytest.mark.django_db

BASE_DIR = Path(__file__).resolve().parents[2]
OLD = "whsec_" + base64.b64encode(bytes(range(32))).decode()
NEW = "whsec_" + base64.b64encode(bytes(range(50, 82))).decode()
STRANGER = "whsec_" + base64.b64encode(bytes(range(100, 132))).decode()


def signed_headers(secret: str, body: bytes, *, webhook_id: str, prefix: str = "webhook"):
    """The three headers as the seller's Standard Webhooks library makes them."""
    now = datetime.now(tz=UTC)
    signature = Webhook(secret).sign(webhook_id, now, body)
    return {
        f"{prefix}-id": webhook_id,
        f"{prefix}-timestamp": str(int(now.timestamp())),
        f"{prefix}-signature": signature,
    }


def post(client: Client, secret: str, *, webhook_id: str = "msg_1", prefix: str = "webhook"):
    body = json.dumps({"tickets": [ticket(webhook_id.replace("msg", "t"))]}).encode()
    headers = signed_headers(secret, body, webhook_id=webhook_id, prefix=prefix)
    return client.post(
        "/tickets-status",
        body,
        content_type="application/json",
        headers={"Idempotency-Key": f"key-{webhook_id}", **headers},
    )


@override_settings(WEBHOOK_SECRET=f"{OLD} {NEW}")
def test_during_a_rollover_a_delivery_signed_with_either_secret_is_accepted(client):
    before = post(client, OLD, webhook_id="msg_old")
    after = post(client, NEW, webhook_id="msg_new")

    assert (before.status_code, after.status_code) == (200, 200)
    assert WebhookMessage.objects.count() == 2


@override_settings(WEBHOOK_SECRET=f"{OLD}  {NEW}\n")
def test_secrets_may_be_separated_by_any_whitespace(client):
    assert post(client, NEW).status_code == 200


@override_settings(WEBHOOK_SECRET=f"{OLD} {NEW}")
def test_during_a_rollover_a_delivery_signed_with_another_key_is_401_and_writes_nothing(client):
    response = post(client, STRANGER)

    assert response.status_code == 401
    assert "no signature in webhook-signature matches" in response.json()["error"]
    assert (Ticket.objects.count(), Task.objects.count(), WebhookMessage.objects.count()) == (
        0,
        0,
        0,
    )


@override_settings(WEBHOOK_SECRET=NEW)
def test_once_the_old_secret_is_removed_its_signature_is_refused(client):
    assert post(client, OLD).status_code == 401
    assert post(client, NEW, webhook_id="msg_2").status_code == 200


@override_settings(WEBHOOK_SECRET=f"{OLD} {NEW}")
def test_the_log_says_which_secret_matched_by_position_never_its_value(client, caplog):
    with caplog.at_level(logging.DEBUG):
        post(client, NEW, webhook_id="msg_new")
        post(client, OLD, webhook_id="msg_old")

    lines = [r.getMessage() for r in caplog.records if "WEBHOOK_SECRET entr" in r.getMessage()]
    assert lines == [
        "signature of msg_new verified: matched WEBHOOK_SECRET entry 2 of 2",
        "signature of msg_old verified: matched WEBHOOK_SECRET entry 1 of 2",
    ]
    text = "\n".join(r.getMessage() for r in caplog.records)
    for secret in (OLD, NEW):
        assert secret.removeprefix("whsec_") not in text


@override_settings(WEBHOOK_SECRET=f"{OLD} {NEW} {STRANGER}")
def test_a_delivery_signed_with_several_of_our_secrets_logs_every_one_that_matched(client, caplog):
    # The seller signs with the old key and the new one while it switches (one `v1,` entry
    # each). Only the first match was logged, so the line never showed the new key in use
    # and the operator could not tell when to drop the old.
    body = json.dumps({"tickets": [ticket("t-both")]}).encode()
    old = signed_headers(OLD, body, webhook_id="msg_both")
    new = signed_headers(NEW, body, webhook_id="msg_both")
    both = {**old, "webhook-signature": f"{old['webhook-signature']} {new['webhook-signature']}"}

    with caplog.at_level(logging.INFO):
        response = client.post(
            "/tickets-status",
            body,
            content_type="application/json",
            headers={"Idempotency-Key": "key-both", **both},
        )

    assert response.status_code == 200
    lines = [r.getMessage() for r in caplog.records if "WEBHOOK_SECRET entr" in r.getMessage()]
    assert lines == ["signature of msg_both verified: matched WEBHOOK_SECRET entries 1 and 2 of 3"]


@override_settings(WEBHOOK_SECRET=f"{OLD} {NEW}")
def test_during_a_rollover_a_refund_signed_with_the_new_key_is_accepted(client):
    with override_settings(WEBHOOK_SECRET=""):
        assert (
            client.post(
                "/tickets-status",
                json.dumps({"tickets": [ticket("t-1")]}),
                content_type="application/json",
                headers={"Idempotency-Key": "k"},
            ).status_code
            == 200
        )
    path = "/ticket-refund/t-1"
    headers = signed_headers(NEW, signed_content("PUT", path), webhook_id="msg_r")

    response = client.put(path, headers=headers)

    assert response.status_code == 202


@pytest.mark.parametrize(
    ("value", "named"),
    [
        (f"{OLD} {NEW.removeprefix('whsec_')}", "WEBHOOK_SECRET (entry 2 of 2) must be 'whsec_'"),
        (f"{OLD} whsec_not-base64! {NEW}", "WEBHOOK_SECRET (entry 2 of 3): the part after"),
        (f"whsec_{base64.b64encode(b'short').decode()} {NEW}", "(entry 1 of 2): the key is 5"),
        (NEW.removeprefix("whsec_"), "WEBHOOK_SECRET must be 'whsec_'"),
    ],
)
def test_a_bad_secret_entry_stops_start_up_in_one_line_naming_its_position(value, named):
    env = {"PATH": "/usr/bin:/bin", "DEBUG": "1", "ENV_FILE": "", "WEBHOOK_SECRET": value}
    for argv in (["manage.py", "check"], ["-c", "import project.wsgi"]):
        result = subprocess.run(
            [sys.executable, *argv],
            cwd=BASE_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

        assert result.returncode in (2, 3), argv
        assert result.stdout == ""
        assert result.stderr.count("\n") == 1, result.stderr
        assert result.stderr.startswith("Configuration error: ")
        assert named in result.stderr
        assert "Traceback" not in result.stderr
        for entry in value.split():
            assert entry.removeprefix("whsec_") not in result.stderr


# --- Svix's header names (item 5) --------------------------------------------------------------


@override_settings(WEBHOOK_SECRET=NEW)
def test_svix_header_names_are_accepted_as_the_standard_ones(client):
    response = post(client, NEW, prefix="svix")

    assert response.status_code == 200
    assert WebhookMessage.objects.get().webhook_id == "msg_1"


@override_settings(WEBHOOK_SECRET=NEW)
def test_a_svix_signature_made_with_another_key_is_401(client):
    response = post(client, STRANGER, prefix="svix")

    assert response.status_code == 401
    assert "svix-signature" in response.json()["error"]


@pytest.mark.parametrize("dropped", ["svix-id", "svix-timestamp", "svix-signature"])
@override_settings(WEBHOOK_SECRET=NEW)
def test_a_missing_svix_header_is_401_naming_it(client, dropped):
    body = json.dumps({"tickets": [ticket("t-1")]}).encode()
    headers = signed_headers(NEW, body, webhook_id="msg_1", prefix="svix")
    del headers[dropped]

    response = client.post(
        "/tickets-status",
        body,
        content_type="application/json",
        headers={"Idempotency-Key": "k", **headers},
    )

    assert response.status_code == 401
    assert response.json() == {"error": f"the {dropped} header is required"}


@override_settings(WEBHOOK_SECRET=NEW)
def test_a_replay_under_svix_names_of_a_message_sent_under_standard_ones_is_the_same_message(
    client,
):
    first = post(client, NEW, prefix="webhook")
    again = post(client, NEW, prefix="svix")

    assert again.status_code == 200
    assert again.content == first.content
    assert WebhookMessage.objects.count() == 1


def test_a_refund_signed_under_svix_names_is_accepted(client):
    client.post(
        "/tickets-status",
        json.dumps({"tickets": [ticket("t-1")]}),
        content_type="application/json",
        headers={"Idempotency-Key": "k"},
    )
    path = "/ticket-refund/t-1"
    headers = signed_headers(NEW, signed_content("PUT", path), webhook_id="r", prefix="svix")

    with override_settings(WEBHOOK_SECRET=NEW):
        response = client.put(path, headers=headers)

    assert response.status_code == 202
