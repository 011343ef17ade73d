"""The published schema says what the validator takes (issue 23 item 2, "one source").

Deterministic companions of tests/e2e/test_contract.py: the webhook's corpus of good, bad and
mutated bodies (tests/tickets/test_webhook_validation.py) against the request schema the
service publishes, and the bounds the schema states against the ones the views enforce.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.test import override_settings
from drf_spectacular.generators import SchemaGenerator

from outbox.models import AttemptOutcome
from tests.conftest import ticket
from tests.tickets.test_webhook_validation import CORPUS
from tickets.intake import contract
from tickets.intake.serializers import validate_with_serializer

ROOT = Path(__file__).resolve().parents[2]


def published() -> dict[str, Any]:
    return SchemaGenerator().get_schema(request=None, public=True)


def as_json_schema(node: Any) -> Any:
    """OpenAPI 3.0's schema in the words the jsonschema library reads as the spec means them:
    `nullable` as a null type, and a pattern's closing `$` as `\\Z`. Patterns are ECMA-262,
    whose `$` is the end of the text; Python's also matches before a final newline, so the
    library would take `t-1\\n` as matching `^[^\\n]*$` (Schemathesis translates it too)."""
    if isinstance(node, list):
        return [as_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: as_json_schema(value) for key, value in node.items() if key != "nullable"}
    if isinstance(out.get("pattern"), str) and out["pattern"].endswith("$"):
        out["pattern"] = out["pattern"][:-1] + r"\Z"
    if node.get("nullable"):
        out["type"] = [node["type"], "null"]
    return out


def webhook_body_schema(schema: dict[str, Any]) -> dict[str, Any]:
    operation = schema["paths"]["/tickets-status"]["post"]
    return as_json_schema(operation["requestBody"]["content"]["application/json"]["schema"])


def django_email(value: str) -> bool:
    # `format: email` means what the field's description says: Django's EmailValidator (the
    # one DRF's EmailField runs); JSON Schema leaves a format's exact rule to the API.
    try:
        validate_email(value)
    except ValidationError:
        return False
    return True


FORMATS = jsonschema.FormatChecker(formats=())
FORMATS.checks("email")(django_email)


def holds_a_lone_surrogate(body: Any) -> bool:
    # Only a JSON escape (\\ud800) can carry one: no UTF-8 text holds it, so no client sends it
    # from a schema's strings; the serializer refuses it and the description says so.
    return any(0xD800 <= ord(c) <= 0xDFFF for c in json.dumps(body, ensure_ascii=False))


def test_every_corpus_body_the_schema_allows_the_validator_accepts():
    validator = jsonschema.Draft7Validator(webhook_body_schema(published()), format_checker=FORMATS)
    allowed = [
        body
        for body in CORPUS
        if not holds_a_lone_surrogate(body) and validator.is_valid(copy.deepcopy(body))
    ]

    refused_yet_allowed = [
        (body, errors)
        for body in allowed
        if (errors := validate_with_serializer(copy.deepcopy(body))[1])
    ]
    assert refused_yet_allowed == []
    # Not vacuous: the good bodies and a good share of the mutations are inside the schema.
    assert len(allowed) > 100


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("amount", "-1.00"),
        ("amount", ""),
        ("amount", "+5"),
        ("amount", "5e1"),
        ("amount", "12345678901"),
        ("currency", "eur"),
        ("currency", "EURO"),
        ("ticket_id", ""),
        ("ticket_id", "   "),
        ("ticket_id", "t-1\n2026 INFO forged"),
        ("ticket_id", "t\u202e1"),
        ("ticket_id", "x" * 256),
    ],
)
def test_each_value_the_issue_found_loose_is_outside_the_schema(field, value):
    # Issue 23: amount allowed a sign and "", currency any string, ticket_id anything.
    item = ticket("t-1")
    if field in ("amount", "currency"):
        item["price"][field] = value
    else:
        item[field] = value
    schema = webhook_body_schema(published())

    assert not jsonschema.Draft7Validator(schema).is_valid({"tickets": [item]})
    assert validate_with_serializer({"tickets": [item]})[1]


def test_the_ticket_count_bounds_are_the_validators():
    with override_settings(WEBHOOK_MAX_TICKETS=3):
        tickets = webhook_body_schema(published())["properties"]["tickets"]

    assert (tickets["minItems"], tickets["maxItems"]) == (1, 3)


@pytest.mark.django_db
def test_the_idempotency_key_bound_is_the_one_the_view_enforces(post_tickets):
    parameters = published()["paths"]["/tickets-status"]["post"]["parameters"]
    key = next(p for p in parameters if p["name"] == "Idempotency-Key")
    limit = key["schema"]["maxLength"]

    assert limit == contract.MAX_IDEMPOTENCY_KEY_LENGTH
    assert key["required"] is True
    assert post_tickets([ticket("t-1")], key="k" * limit).status_code == 200
    assert post_tickets([ticket("t-1")], key="k" * (limit + 1)).status_code == 400


def test_the_webhook_declares_every_answer_and_header_it_uses():
    operation = published()["paths"]["/tickets-status"]["post"]

    assert set(operation["responses"]) == {"200", "400", "401", "413", "415", "422"}
    assert {p["name"] for p in operation["parameters"]} >= {
        "Idempotency-Key",
        "Correlation-ID",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
    }
    assert operation["requestBody"]["required"] is True


def test_the_schema_links_the_webhooks_answer_to_the_refund_and_the_reads():
    schema = published()
    links = schema["paths"]["/tickets-status"]["post"]["responses"]["200"]["links"]
    operations = {op["operationId"] for item in schema["paths"].values() for op in item.values()}

    assert (
        {link["operationId"] for link in links.values()}
        == {
            "ticket_refund",
            "ticket_detail",
            "tickets_list",
        }
        <= operations
    )


def test_the_plain_text_pattern_refuses_exactly_the_control_characters_of_the_bmp():
    from outbox.plaintext import is_control

    pattern = re.compile(contract.plain_text_pattern(blank=True))
    for code in range(0x10000):
        char = chr(code)
        if 0xD800 <= code <= 0xDFFF:
            continue
        assert bool(pattern.search(f"a{char}b")) is not is_control(char), hex(code)


def test_the_schema_serializes_to_json():
    json.dumps(published())


def test_docs_list_every_attempt_outcome():
    # docs/API.md lacked `canceled` (issue 23).
    text = (ROOT / "docs" / "API.md").read_text()
    line = next(line for line in text.splitlines() if line.startswith("`outcome` is one of"))

    assert re.findall(r"`([a-z_]+)`", line.split("is one of", 1)[1].split(".")[0]) == list(
        AttemptOutcome.values
    )
