"""The seller's wire contract as OpenAPI schema, derived from the rules the validator applies.

A client generated from the schema must send only what we accept: every value the schema
allows is one the webhook's validation (`tickets.intake.validation` and the serializer in
`tickets.intake.views`) takes, and every value it refuses is outside the schema. So the schema is
built here from the validator's own constants and regular expressions, never written beside
them, and tests/e2e/test_contract.py runs Schemathesis (schema-made requests, valid and
invalid) against a live server to prove the two agree.

Where the validator is lenient in a way a schema cannot say (it trims spaces at the ends of
a field), the schema allows what the validator takes after trimming, as JSON Schema can.
"""

from __future__ import annotations

import functools
import math
import re
import unicodedata
from typing import Any

from django.conf import settings
from rest_framework import serializers

from outbox.correlation import HEADER as CORRELATION_HEADER
from outbox.plaintext import CONTROL_CATEGORIES
from tickets.intake import validation as rules
from tickets.intake.email_pattern import email_pattern, escaped_class
from tickets.intake.signature import (
    HEADERS,
    MAX_WEBHOOK_ID_LENGTH,
    SIGNATURE_BYTES,
    SIGNATURE_VERSION,
    SVIX_HEADERS,
    TIMESTAMP_PATTERN,
)
from tickets.models import TicketStatus

IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"
# The longest Idempotency-Key the webhook takes (the column's size); the view checks this one.
MAX_IDEMPOTENCY_KEY_LENGTH = 255
# DRF's DecimalField refuses a longer string before reading it.
MAX_AMOUNT_CHARS = serializers.DecimalField.MAX_STRING_LENGTH
PLAIN_TEXT = (
    "Plain text: no control, format, line- or paragraph-separator character (Unicode Cc, Cf, "
    "Zl, Zp) and no lone surrogate (a `\\ud800` escape), else 400; spaces at the ends are "
    "trimmed."
)


@functools.cache
def _refused_class_body() -> str:
    """The characters a plain-text field refuses, as the inside of a regex character class:
    the code points of outbox.plaintext.CONTROL_CATEGORIES, as `\\uXXXX` ranges.

    Only those of the Basic Multilingual Plane: ECMA-262 (without the `u` flag) and Python
    read `\\uXXXX` alike, but they share no spelling for a code point beyond it, and the
    schema tools we test with drop a pattern holding one (or a surrogate range) whole. The
    ~110 format characters beyond it (musical and tag characters) are named by the
    description instead; the validator refuses them all the same.
    """
    return escaped_class(
        {
            chr(code)
            for code in range(0x10000)
            if unicodedata.category(chr(code)) in CONTROL_CATEGORIES
        }
    )


def plain_text_pattern(*, blank: bool, also_refused: str = "", refused_values: Any = ()) -> str:
    """Text without a refused character (nor one of `also_refused`); unless `blank`, with one
    that is not a space (the validator trims the ends, then refuses an empty value); and none
    of `refused_values`, spaces around it or not."""
    refused = _refused_class_body() + "".join(re.escape(char) for char in also_refused)
    free = f"[^{refused}]"
    head = ""
    if refused_values:
        alternatives = "|".join(re.escape(value) for value in sorted(refused_values))
        head = f"(?!\\s*(?:{alternatives})\\s*$)"
    if blank:
        return f"^{head}{free}*$"
    return f"^{head}{free}*[^\\s{refused}]{free}*$"


def ticket_id_schema() -> dict[str, Any]:
    """The rule of tickets.intake.validation.ticket_id_error, from its constants."""
    return {
        "type": "string",
        "minLength": 1,
        "maxLength": rules.TICKET_ID_MAX_LENGTH,
        "pattern": plain_text_pattern(
            blank=False,
            also_refused=rules.TICKET_ID_FORBIDDEN_CHARACTERS,
            refused_values=rules.TICKET_ID_RESERVED,
        ),
        "description": rules.TICKET_ID_DESCRIPTION,
    }


# tickets.intake.validation.amount_error's rules as lookaheads before the amount's pattern:
# not zero, and (for a currency without a minor unit) no decimal but zeros.
_NOT_ZERO = r"(?!0*(?:\.0*)?$)"
_WHOLE = r"(?![0-9]*\.[0-9]*[1-9])"


def amount_schema(*, whole: bool = False) -> dict[str, Any]:
    rules_ahead = _NOT_ZERO + (_WHOLE if whole else "")
    return {
        "type": "string",
        "pattern": f"^{rules_ahead}(?:{rules._AMOUNT.pattern})$",
        "maxLength": MAX_AMOUNT_CHARS,
        "description": (
            'A decimal string above zero: ASCII digits, at most two decimals ("50", "50.5", '
            '"50.00"); no sign, exponent or spaces. Never a JSON number.'
            + (" A whole number: the currency has no minor unit." if whole else "")
        ),
        "example": "50" if whole else "50.00",
    }


def price_schema() -> dict[str, Any]:
    """One of two shapes, as amount_error decides by currency: a currency with a minor unit
    (or none given: USD) takes decimals; one without (JPY, KRW...) whole amounts only."""
    minor = rules.CURRENCY_MINOR_UNITS
    with_minor = sorted(code for code, exponent in minor.items() if exponent)
    without_minor = sorted(code for code, exponent in minor.items() if not exponent)
    return {
        "type": "object",
        "required": ["amount"],
        "oneOf": [
            {
                "type": "object",
                "properties": {
                    "amount": amount_schema(),
                    "currency": {
                        "type": "string",
                        "enum": with_minor,
                        "default": "USD",
                        "description": "ISO 4217 code of a currency with a minor unit.",
                    },
                },
                "required": ["amount"],
            },
            {
                "type": "object",
                "properties": {
                    "amount": amount_schema(whole=True),
                    "currency": {
                        "type": "string",
                        "enum": without_minor,
                        "description": "ISO 4217 code of a currency without a minor unit.",
                    },
                },
                "required": ["amount", "currency"],
            },
        ],
        "example": {"amount": "50.00", "currency": "EUR"},
    }


def customer_email_schema() -> dict[str, Any]:
    return {
        "type": "string",
        # No `format: email`: JSON Schema leaves its rule to each tool, and theirs is not
        # Django's (Schemathesis' refused the stored `"a\\tb"@[192.0.2.1]`); the pattern is.
        "maxLength": rules._MAX_EMAIL,
        "pattern": email_pattern(),
        "description": (
            "An address Django's EmailValidator takes: a dot-atom or quoted local part, and a "
            "domain with a dot and a top-level label of letters (or `localhost`, or an IPv4 "
            "or IPv6 literal in brackets)."
        ),
    }


def ticket_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "ticket_id": ticket_id_schema(),
            "status": {"type": "string", "enum": list(TicketStatus.values)},
            "customer_email": customer_email_schema(),
            "price": price_schema(),
            "booking_id": {
                "type": "string",
                "nullable": True,
                "maxLength": rules.TICKET_ID_MAX_LENGTH,
                "pattern": plain_text_pattern(blank=True),
                "description": PLAIN_TEXT,
            },
        },
        "required": ["ticket_id", "status", "customer_email", "price"],
        "example": {
            "ticket_id": "t-1",
            "status": "confirmed",
            "customer_email": "ada@example.com",
            "price": {"amount": "50.00", "currency": "EUR"},
            "booking_id": "b-7",
        },
    }


def webhook_request_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "tickets": {
                "type": "array",
                "items": ticket_schema(),
                "minItems": 1,
                # maxItems: WEBHOOK_MAX_TICKETS, set when the schema is made (the hook below).
            }
        },
        "required": ["tickets"],
    }


def idempotency_key_schema() -> dict[str, Any]:
    return {
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_IDEMPOTENCY_KEY_LENGTH,
        "pattern": plain_text_pattern(blank=False),
    }


def correlation_id_schema() -> dict[str, Any]:
    # Any plain text is taken; one that is not 1-64 of [A-Za-z0-9._:-] is replaced by a fresh
    # id (answered back), so it is not refused and the schema does not say it is.
    return {"type": "string", "pattern": plain_text_pattern(blank=True)}


def signature_header_parameters() -> list[dict[str, Any]]:
    """The Standard Webhooks headers, and Svix's names for them, as free strings: the rules of
    signature_header_schemas are set per schema by postprocess_schema, while WEBHOOK_SECRET is
    set. Without one the headers are ignored, so no value of theirs is refused."""
    described = {
        HEADERS[0]: f"The message's id (1 to {MAX_WEBHOOK_ID_LENGTH} characters).",
        HEADERS[1]: "Whole seconds since the epoch, within 5 minutes of our clock.",
        HEADERS[2]: (
            f"Space-separated `<version>,<base64>` entries; one `{SIGNATURE_VERSION}` entry "
            "(a base64 HMAC-SHA256) must match."
        ),
    }
    svix = dict(zip(HEADERS, SVIX_HEADERS, strict=True))
    parameters = []
    for name, text in described.items():
        for sent_as, note in (
            (name, f"Svix's name `{svix[name]}` is taken in its place."),
            (svix[name], f"Svix's name for `{name}`: one set or the other, never a mix."),
        ):
            parameters.append(
                {
                    "in": "header",
                    "name": sent_as,
                    "required": False,
                    "schema": {"type": "string"},
                    "description": (
                        f"{text} With a WEBHOOK_SECRET a signature is needed (else 401), or "
                        "where the operation's security allows it a staff token instead; "
                        f"ignored without a secret. {note}"
                    ),
                }
            )
    return parameters


def _signature_entry_pattern() -> str:
    """One `v1,<base64>` entry whose base64 decodes (validate=True: padded, alphabet only) to
    SIGNATURE_BYTES bytes: the entry signatures() keeps, standing alone among spaces."""
    data_chars = math.ceil(SIGNATURE_BYTES * 4 / 3)
    padding = 4 * math.ceil(SIGNATURE_BYTES / 3) - data_chars
    return f"{re.escape(SIGNATURE_VERSION)},[A-Za-z0-9+/]{{{data_chars}}}={{{padding}}}"


def signature_header_schemas() -> dict[str, dict[str, Any]]:
    """Each signature header's rule, as tickets.intake.signature's verifier applies it to the
    value (HTTP servers trim a header's ends, as the verifier does)."""
    rules_by_role: list[dict[str, Any]] = [
        {"type": "string", "minLength": 1, "maxLength": MAX_WEBHOOK_ID_LENGTH, "pattern": r"\S"},
        {"type": "string", "pattern": TIMESTAMP_PATTERN},
        {"type": "string", "pattern": f"(?:^|\\s){_signature_entry_pattern()}(?:\\s|$)"},
    ]
    return {
        name: dict(rule)
        for names in (HEADERS, SVIX_HEADERS)
        for name, rule in zip(names, rules_by_role, strict=True)
    }


# The security scheme of each signature header: a scheme names one header, so a signature is
# the requirement of all three, and Svix's names are a requirement of their own.
_SCHEME_OF_HEADER = {
    name: f"{prefix}{role}"
    for prefix, names in (("webhook", HEADERS), ("svix", SVIX_HEADERS))
    for name, role in zip(names, ("Id", "Timestamp", "Signature"), strict=True)
}
# The seller's operations, and whether a staff token is an alternative to the signature
# (tickets.intake.seller_auth) or not (the webhook takes only the signature).
SELLER_OPERATIONS = {"tickets_status": False, "ticket_refund": True, "tickets_list": True}


def _seller_security(result: dict[str, Any]) -> None:
    """Each seller operation's `security`, while WEBHOOK_SECRET is set: alternatives (a list
    of requirements, any one of which will do), a signature under either set of names and,
    where the view takes one, a staff token. Without a secret they stay open: no `security`."""
    schemes = result.setdefault("components", {}).setdefault("securitySchemes", {})
    for name, scheme in _SCHEME_OF_HEADER.items():
        schemes[scheme] = {
            "type": "apiKey",
            "in": "header",
            "name": name,
            "description": "Part of the seller's Standard Webhooks signature.",
        }
    signed: list[dict[str, list[str]]] = [
        {_SCHEME_OF_HEADER[name]: [] for name in names} for names in (HEADERS, SVIX_HEADERS)
    ]
    for item in result.get("paths", {}).values():
        for operation in item.values():
            token = SELLER_OPERATIONS.get(operation.get("operationId", ""))
            if token is not None:
                operation["security"] = ([{"tokenAuth": []}] if token else []) + signed


def postprocess_schema(result: dict[str, Any], generator: Any, **kwargs: Any) -> dict[str, Any]:
    """drf-spectacular hook (SPECTACULAR_SETTINGS): what its decorators cannot say.

    - the webhook's body as required, and its WEBHOOK_MAX_TICKETS;
    - the `{ticket_id}` of the refund and of the staff read, by the ticket-id rule;
    - the answers' `customer_email` by the webhook's rule for it;
    - the signature headers' rules and the seller operations' security (a signature, or a
      staff token where the view takes one), while WEBHOOK_SECRET is set;
    - the `Correlation-ID` every answer carries (outbox.correlation's middleware), and the
      ticket list's `Link` to its next page;
    - OpenAPI links from the webhook's answer to the refund and to the reads of the ticket, so
      a client (and Schemathesis' stateful phase) can follow a ticket through the contract.
    """
    paths = result.get("paths", {})
    # Read when the schema is made: the rules bind only while a secret makes them checked.
    signature_rules = signature_header_schemas() if settings.WEBHOOK_SECRET.strip() else {}
    for item in paths.values():
        for operation in item.values():
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "path" and parameter["name"] == "ticket_id":
                    parameter["schema"] = ticket_id_schema()
                if parameter["in"] == "header" and parameter["name"] in signature_rules:
                    parameter["schema"] = signature_rules[parameter["name"]]
            for answer in operation.get("responses", {}).values():
                answer.setdefault("headers", {})[CORRELATION_HEADER] = {
                    "schema": {"type": "string"},
                    "required": True,
                    "description": "The request's Correlation-ID, or the one made for it.",
                }
            # The server refuses a request line over its limit before the application reads
            # it (gunicorn's 4,094 bytes; project/wsgi.py makes the answer JSON): no
            # Correlation-ID, none was read.
            operation.setdefault("responses", {}).setdefault(
                "414",
                {
                    "description": "The request line (method, path and query) is over the "
                    "server's limit (gunicorn's limit_request_line, 4,094 bytes by default).",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                    },
                },
            )
    if signature_rules:
        _seller_security(result)
    # The answers that carry a stored email (the list, the staff read) by the webhook's rule:
    # their serializers' EmailField says `format: email`, which is not what was accepted.
    for component in result.get("components", {}).get("schemas", {}).values():
        properties = component.get("properties", {})
        if "customer_email" in properties:
            properties["customer_email"] = customer_email_schema()
    listing = paths.get("/tickets", {}).get("get")
    if listing is not None:
        listing["responses"]["200"]["headers"]["Link"] = {
            "schema": {"type": "string"},
            "required": False,
            "description": 'The next page while there is one: `</tickets?...>; rel="next"`.',
        }
    webhook = paths.get("/tickets-status", {}).get("post")
    if webhook is None:
        return result
    # A raw request schema loses drf-spectacular's `required`; the webhook has no default body.
    webhook["requestBody"]["required"] = True
    # A bound in bytes, which no JSON Schema keyword can state (whitespace, escapes and the
    # fields not listed count too): said here, and answered 413 before any field is read.
    webhook["requestBody"]["description"] = (
        f"At most {settings.WEBHOOK_MAX_BODY_BYTES} bytes (WEBHOOK_MAX_BODY_BYTES), else 413 "
        "before any field or header rule is checked."
    )
    body = webhook["requestBody"]["content"]["application/json"]["schema"]
    # Read when the schema is made, as the view reads it per request.
    body["properties"]["tickets"]["maxItems"] = settings.WEBHOOK_MAX_TICKETS
    first_ticket = "$response.body#/tickets/0/ticket_id"
    links: dict[str, dict[str, Any]] = {
        "RefundTheTicket": {
            "operationId": "ticket_refund",
            "parameters": {"ticket_id": first_ticket},
        },
        "ReadTheTicket": {
            "operationId": "ticket_detail",
            "parameters": {"ticket_id": first_ticket},
        },
        "ListTheTickets": {"operationId": "tickets_list"},
    }
    known = {op.get("operationId") for item in paths.values() for op in item.values()}
    webhook["responses"]["200"]["links"] = {
        name: link for name, link in links.items() if link["operationId"] in known
    }
    refund = paths.get("/ticket-refund/{ticket_id}", {}).get("put")
    if refund is not None and "ticket_detail" in known:
        refund["responses"]["202"]["links"] = {
            "ReadTheTicket": {
                "operationId": "ticket_detail",
                "parameters": {"ticket_id": "$response.body#/ticket_id"},
            }
        }
    return result


__all__ = [
    "CORRELATION_HEADER",
    "IDEMPOTENCY_KEY_HEADER",
    "MAX_IDEMPOTENCY_KEY_LENGTH",
    "correlation_id_schema",
    "customer_email_schema",
    "email_pattern",
    "idempotency_key_schema",
    "plain_text_pattern",
    "postprocess_schema",
    "signature_header_parameters",
    "signature_header_schemas",
    "ticket_id_schema",
    "webhook_request_schema",
]
