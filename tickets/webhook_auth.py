"""Webhook authentication by the Standard Webhooks scheme (https://www.standardwebhooks.com).

The seller signs `{webhook-id}.{webhook-timestamp}.{raw body}` with HMAC-SHA256 and the key
of `WEBHOOK_SECRET`; we check that on the raw bytes, before anything parses them. The secret
is read per request (so a test's `override_settings` applies) and once at start-up by
`TicketsConfig.ready`, so a malformed one stops the service instead of refusing every call.

A signed message is processed once: the intake (`tickets_status_receive` with its
`webhook_id`) stores the id in the delivery's transaction, and a replay gets the first answer
and writes nothing (docs/SECURITY.md).
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

SECRET_PREFIX = "whsec_"
# The spec's advice for a key's size; a shorter one is refused at start-up.
MIN_KEY_BYTES = 24
TOLERANCE_SECONDS = 5 * 60
MAX_WEBHOOK_ID_LENGTH = 255

ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"

_TIMESTAMP = re.compile(r"^[0-9]{1,12}$")
_SIGNATURE_BYTES = hashlib.sha256().digest_size


class WebhookAuthError(Exception):
    """The request is not a fresh message signed with our key; the text says why (a 401)."""


@functools.lru_cache(maxsize=4)
def decode_secret(raw: str) -> bytes:
    """The HMAC key of a `whsec_<base64>` secret. The messages never quote the secret."""
    value = raw.strip()
    if not value.startswith(SECRET_PREFIX):
        raise ImproperlyConfigured(
            f"WEBHOOK_SECRET must be '{SECRET_PREFIX}' followed by the base64 key "
            "(the Standard Webhooks format)."
        )
    try:
        key = base64.b64decode(value[len(SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise ImproperlyConfigured(
            f"WEBHOOK_SECRET: the part after '{SECRET_PREFIX}' is not valid base64."
        ) from None
    if len(key) < MIN_KEY_BYTES:
        raise ImproperlyConfigured(
            f"WEBHOOK_SECRET: the key is {len(key)} bytes; use at least {MIN_KEY_BYTES}."
        )
    return key


def sign(key: bytes, *, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The `v1,<base64>` signature of one message, as the sender computes it."""
    return "v1," + base64.b64encode(_digest(key, webhook_id, str(timestamp), body)).decode()


def verify(
    key: bytes,
    *,
    headers: Mapping[str, str],
    body: bytes,
    now: float,
    tolerance_seconds: int = TOLERANCE_SECONDS,
) -> str:
    """The message's `webhook-id` when it is signed with `key` and fresh; else WebhookAuthError.

    `headers` is looked up by the lower-case names (Django's `request.headers` ignores case).
    """
    webhook_id = _required(headers, ID_HEADER)
    raw_timestamp = _required(headers, TIMESTAMP_HEADER)
    raw_signatures = _required(headers, SIGNATURE_HEADER)
    if len(webhook_id) > MAX_WEBHOOK_ID_LENGTH:
        raise WebhookAuthError(f"{ID_HEADER} is longer than {MAX_WEBHOOK_ID_LENGTH} characters")
    if not _TIMESTAMP.match(raw_timestamp):
        raise WebhookAuthError(f"{TIMESTAMP_HEADER} must be whole seconds since the epoch")
    age = now - int(raw_timestamp)
    if age > tolerance_seconds:
        raise WebhookAuthError(f"{TIMESTAMP_HEADER} is more than {tolerance_seconds} seconds old")
    if age < -tolerance_seconds:
        raise WebhookAuthError(
            f"{TIMESTAMP_HEADER} is more than {tolerance_seconds} seconds in the future"
        )
    candidates = signatures(raw_signatures)
    if not candidates:
        raise WebhookAuthError(
            f"{SIGNATURE_HEADER} is malformed: expected space-separated 'v1,<base64>' entries"
        )
    expected = _digest(key, webhook_id, raw_timestamp, body)
    # Every candidate is compared, in constant time each, whichever matches.
    matched = False
    for candidate in candidates:
        matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise WebhookAuthError(f"no signature in {SIGNATURE_HEADER} matches the body")
    return webhook_id


def signatures(header: str) -> list[bytes]:
    """The decoded `v1` signatures of a header; other versions and garbage are skipped.

    A sender rotating its key signs with each key it holds: one match is enough.
    """
    found = []
    for entry in header.split():
        version, _, encoded = entry.partition(",")
        if version != "v1":
            continue
        try:
            decoded = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue
        if len(decoded) == _SIGNATURE_BYTES:
            found.append(decoded)
    return found


@dataclass(frozen=True, slots=True)
class WebhookVerifier:
    key: bytes = field(repr=False)
    tolerance_seconds: int = TOLERANCE_SECONDS

    @classmethod
    def from_settings(cls) -> WebhookVerifier | None:
        """None while WEBHOOK_SECRET is empty: the unsigned webhook of docs/API.md."""
        raw: str = settings.WEBHOOK_SECRET
        return cls(key=decode_secret(raw)) if raw else None

    def verify(self, *, headers: Mapping[str, str], body: bytes, now: float | None = None) -> str:
        return verify(
            self.key,
            headers=headers,
            body=body,
            now=time.time() if now is None else now,
            tolerance_seconds=self.tolerance_seconds,
        )


def webhook_authenticate(*, headers: Mapping[str, str], body: bytes) -> str:
    """The verified `webhook-id`, or "" while no WEBHOOK_SECRET is set."""
    verifier = WebhookVerifier.from_settings()
    return verifier.verify(headers=headers, body=body) if verifier is not None else ""


def _required(headers: Mapping[str, str], name: str) -> str:
    value = (headers.get(name) or "").strip()
    if not value:
        raise WebhookAuthError(f"the {name} header is required")
    return value


def _digest(key: bytes, webhook_id: str, timestamp: str, body: bytes) -> bytes:
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    return hmac.new(key, signed, hashlib.sha256).digest()
