"""Webhook authentication by the Standard Webhooks scheme (https://www.standardwebhooks.com).

The seller signs `{webhook-id}.{webhook-timestamp}.{raw body}` with HMAC-SHA256 and a key
of `WEBHOOK_SECRET`; we check that on the raw bytes, before anything parses them. The setting
holds one secret or several, space-separated, so a key rollover needs no instant when both
sides switch together: we accept the new key beside the old, the seller switches, we drop the
old (docs/SECURITY.md). It is read per request (so a test's `override_settings` applies) and
once at start-up by `TicketsConfig.ready`, so a malformed entry stops the service instead of
refusing every call.

The headers are Standard Webhooks' `webhook-*`, or Svix's `svix-*` names for the same three
(Svix is the scheme's origin, and the scheme's libraries accept both).

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
import logging
import re
import time
from collections.abc import Mapping, Sequence
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
HEADERS = (ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER)
# Svix's names for the same three headers, in the same order.
SVIX_HEADERS = ("svix-id", "svix-timestamp", "svix-signature")

logger = logging.getLogger(__name__)

# What each header must hold once trimmed (the OpenAPI schema states the same rules,
# tickets.intake.contract): an id of 1 to MAX_WEBHOOK_ID_LENGTH characters; whole seconds;
# space-separated `<version>,<base64>` entries, one of them a SIGNATURE_VERSION entry whose
# base64 decodes to SIGNATURE_BYTES.
TIMESTAMP_PATTERN = r"^[0-9]{1,12}$"
SIGNATURE_VERSION = "v1"
SIGNATURE_BYTES = hashlib.sha256().digest_size

_TIMESTAMP = re.compile(TIMESTAMP_PATTERN)


class WebhookAuthError(Exception):
    """The request is not a fresh message signed with our key; the text says why (a 401)."""


@functools.lru_cache(maxsize=4)
def decode_secrets(raw: str) -> tuple[bytes, ...]:
    """The HMAC keys of `WEBHOOK_SECRET`: one `whsec_<base64>` secret or several,
    space-separated (a rollover). The messages name a bad entry by position, never quote it."""
    entries = raw.split()
    if len(entries) == 1:
        return (decode_secret(entries[0]),)
    keys = []
    for position, entry in enumerate(entries, start=1):
        keys.append(_decode(entry, f"WEBHOOK_SECRET (entry {position} of {len(entries)})"))
    return tuple(keys)


def decode_secret(raw: str) -> bytes:
    """The HMAC key of one `whsec_<base64>` secret. The messages never quote the secret."""
    return _decode(raw.strip(), "WEBHOOK_SECRET")


def _decode(value: str, name: str) -> bytes:
    if not value.startswith(SECRET_PREFIX):
        raise ImproperlyConfigured(
            f"{name} must be '{SECRET_PREFIX}' followed by the base64 key "
            "(the Standard Webhooks format); several secrets are separated by spaces."
        )
    try:
        key = base64.b64decode(value[len(SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise ImproperlyConfigured(
            f"{name}: the part after '{SECRET_PREFIX}' is not valid base64."
        ) from None
    if len(key) < MIN_KEY_BYTES:
        raise ImproperlyConfigured(
            f"{name}: the key is {len(key)} bytes; use at least {MIN_KEY_BYTES}."
        )
    return key


def sign(key: bytes, *, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The `v1,<base64>` signature of one message, as the sender computes it."""
    digest = _digest(key, webhook_id, str(timestamp), body)
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode()}"


@dataclass(frozen=True, slots=True)
class Verified:
    webhook_id: str
    # Which entries of WEBHOOK_SECRET signed it, from 1, in order: what the logs may say of
    # the keys. Several when the seller signs with more than one key we hold (a rollover).
    key_positions: tuple[int, ...]


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
    return verify_any(
        (key,), headers=headers, body=body, now=now, tolerance_seconds=tolerance_seconds
    ).webhook_id


def verify_any(
    keys: Sequence[bytes],
    *,
    headers: Mapping[str, str],
    body: bytes,
    now: float,
    tolerance_seconds: int = TOLERANCE_SECONDS,
) -> Verified:
    """The message's id and the key that signed it, when one of `keys` did and it is fresh;
    else WebhookAuthError."""
    id_name, timestamp_name, signature_name = header_names(headers)
    webhook_id = _required(headers, id_name)
    raw_timestamp = _required(headers, timestamp_name)
    raw_signatures = _required(headers, signature_name)
    if len(webhook_id) > MAX_WEBHOOK_ID_LENGTH:
        raise WebhookAuthError(f"{id_name} is longer than {MAX_WEBHOOK_ID_LENGTH} characters")
    if not _TIMESTAMP.match(raw_timestamp):
        raise WebhookAuthError(f"{timestamp_name} must be whole seconds since the epoch")
    age = now - int(raw_timestamp)
    if age > tolerance_seconds:
        raise WebhookAuthError(f"{timestamp_name} is more than {tolerance_seconds} seconds old")
    if age < -tolerance_seconds:
        raise WebhookAuthError(
            f"{timestamp_name} is more than {tolerance_seconds} seconds in the future"
        )
    candidates = signatures(raw_signatures)
    if not candidates:
        raise WebhookAuthError(
            f"{signature_name} is malformed: expected space-separated 'v1,<base64>' entries"
        )
    # Every key against every candidate, in constant time each, whichever matches: the time
    # taken tells nothing of which key or entry matched.
    positions = []
    for index, key in enumerate(keys, start=1):
        expected = _digest(key, webhook_id, raw_timestamp, body)
        matched = False
        for candidate in candidates:
            matched |= hmac.compare_digest(expected, candidate)
        if matched:
            positions.append(index)
    if not positions:
        raise WebhookAuthError(f"no signature in {signature_name} matches the body")
    return Verified(webhook_id, tuple(positions))


def header_names(headers: Mapping[str, str]) -> tuple[str, str, str]:
    """The names the message's headers go by: `webhook-*`, or `svix-*` when it sends none of
    those. One set whole, never a mix, so an error names the headers the sender used."""
    if any(headers.get(name) for name in HEADERS):
        return HEADERS
    if any(headers.get(name) for name in SVIX_HEADERS):
        return SVIX_HEADERS
    return HEADERS


def signatures(header: str) -> list[bytes]:
    """The decoded `v1` signatures of a header; other versions and garbage are skipped.

    A sender rotating its key signs with each key it holds: one match is enough.
    """
    found = []
    for entry in header.split():
        version, _, encoded = entry.partition(",")
        if version != SIGNATURE_VERSION:
            continue
        try:
            decoded = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue
        if len(decoded) == SIGNATURE_BYTES:
            found.append(decoded)
    return found


@dataclass(frozen=True, slots=True)
class WebhookVerifier:
    keys: tuple[bytes, ...] = field(repr=False)
    tolerance_seconds: int = TOLERANCE_SECONDS

    @classmethod
    def from_settings(cls) -> WebhookVerifier | None:
        """None while WEBHOOK_SECRET is empty: the unsigned webhook of docs/API.md."""
        raw: str = settings.WEBHOOK_SECRET
        return cls(keys=decode_secrets(raw)) if raw.strip() else None

    def verify(self, *, headers: Mapping[str, str], body: bytes, now: float | None = None) -> str:
        verified = verify_any(
            self.keys,
            headers=headers,
            body=body,
            now=time.time() if now is None else now,
            tolerance_seconds=self.tolerance_seconds,
        )
        # By position only, every key that matched: while the seller signs with the old key
        # and the new, the line names both; once it names the new one alone, the old can go
        # (docs/SECURITY.md). Never a key.
        logger.info(
            "signature of %s verified: matched %s of %d",
            verified.webhook_id,
            describe_positions(verified.key_positions),
            len(self.keys),
        )
        return verified.webhook_id


def describe_positions(positions: Sequence[int]) -> str:
    """`WEBHOOK_SECRET entry 2`, `WEBHOOK_SECRET entries 1 and 2`, `... entries 1, 2 and 3`."""
    if len(positions) == 1:
        return f"WEBHOOK_SECRET entry {positions[0]}"
    *first, last = positions
    return f"WEBHOOK_SECRET entries {', '.join(map(str, first))} and {last}"


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
