"""The published schema says what the validator takes (issue 23 item 2, "one source").

Deterministic companions of tests/e2e/test_contract.py: the webhook's corpus of good, bad and
mutated bodies (tests/tickets/test_webhook_validation.py) against the request schema the
service publishes, and the bounds the schema states against the ones the views enforce.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.test import override_settings
from drf_spectacular.generators import SchemaGenerator
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from outbox.models import AttemptOutcome
from tests.conftest import ticket
from tests.tickets.test_webhook_validation import CORPUS
from tickets.intake import contract
from tickets.intake.serializers import validate_with_serializer
from tickets.intake.signature import (
    HEADERS,
    MAX_WEBHOOK_ID_LENGTH,
    SVIX_HEADERS,
    WebhookAuthError,
    sign,
    verify,
)

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

    assert set(operation["responses"]) == {"200", "400", "401", "413", "414", "415", "422"}
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


@pytest.mark.django_db
@override_settings(WEBHOOK_MAX_TICKETS=3, WEBHOOK_MAX_BODY_BYTES=2000)
def test_a_body_over_both_limits_is_outside_the_schema_and_its_413_counts_as_a_refusal(client):
    # Schemathesis seed 2038463122 (ST201): 1,132,321 bytes of more than WEBHOOK_MAX_TICKETS
    # tickets and no Idempotency-Key, refused with 413, a status its default list of refusals
    # lacks. Here the same case at small limits.
    body = {"tickets": [ticket(f"t-{i}", note="x" * 600) for i in range(4)]}
    raw = json.dumps(body)
    assert len(raw.encode()) > 2000
    schema = published()
    operation = schema["paths"]["/tickets-status"]["post"]
    key = next(p for p in operation["parameters"] if p["name"] == "Idempotency-Key")

    assert key["required"] is True
    assert not jsonschema.Draft7Validator(webhook_body_schema(schema)).is_valid(body)
    response = client.post("/tickets-status", raw, content_type="application/json")

    assert response.status_code == 413
    assert "413" in operation["responses"]
    # The contract test counts every refusal the webhook declares as one.
    from tests.e2e.test_contract import CONFIG

    checks = tomllib.loads(CONFIG)["checks"]
    declared = {code for code in operation["responses"] if code.startswith("4")}
    assert declared <= set(checks["negative_data_rejection"]["expected-statuses"])
    # And a schema-valid body can be over the byte limit too: no JSON Schema bounds bytes.
    assert "413" in checks["positive_data_acceptance"]["expected-statuses"]
    assert "WEBHOOK_MAX_BODY_BYTES" in operation["requestBody"]["description"]


def email_schema() -> dict[str, Any]:
    body = webhook_body_schema(published())
    return body["properties"]["tickets"]["items"]["properties"]["customer_email"]


def email_accepted(value: str) -> bool:
    # What the webhook does with the field: DRF's EmailField trims, then runs Django's
    # EmailValidator.
    item = ticket("t-1", email=value)
    return not validate_with_serializer({"tickets": [item]})[1]


def email_inside_schema(value: str) -> bool:
    return jsonschema.Draft7Validator(email_schema()).is_valid(value)


TRICKY_EMAILS = [
    # Accepted by Django, so inside the pattern.
    "ada@example.com",
    "a.b+tag@sub.example.co",
    "!#$%&'*+/=?^_`{}|~-@example.com",
    '"quoted text\\ with a pair"@example.com',
    '"a@b"@example.com',
    '"\x01"@example.com',
    "\u017f@example.com",  # IGNORECASE: the long s is an S
    "\u212a@example.com",  # and the Kelvin sign a K
    "ada@bücher.example",
    "ada@example.xn--p1ai",
    "ada@localhost",
    "ada@1.example.com",
    "ada@[127.0.0.1]",
    "ada@[::1]",
    "ada@[::ffff:192.0.2.1]",
    "ada@[2001:db8::8:800:200c:417a]",
    "ada@[1:2:3:4:5:6:7::]",
    "ada@[1:2:3:4:5:6:1.2.3.4]",
    "  ada@example.com\t",
    "\u3000ada@example.com",
    "ada@" + "a" * 63 + ".com",
    # Refused by Django, so outside the pattern.
    "ada",
    "ada@",
    "@example.com",
    "ada@example",
    "ada@example.c",
    "ada@example.com.",
    "ada@example.1com",
    "ada@example.xn--ü1",
    "ada@-example.com",
    "ada@example-.com",
    "ada@example.com-",
    "ada@" + "a" * 64 + ".com",
    "ada@LOCALHOST",
    "a..b@example.com",
    ".ada@example.com",
    "ada.@example.com",
    '"a b"@example.com',
    '"a\\"@example.com',
    "ada@@example.com",
    "ada@exa mple.com",
    "ada@example.c\u3000",
    "ada@[127.0.0.01]",
    "ada@[256.0.0.1]",
    "ada@[1:2:3:4:5:6:7:8:9]",
    "ada@[1::2::3]",
    "ada@[0000:0000:0000:0000:0000:0000:255.255.255.255]",
    "ada@[IPv6:::1]",
    "ada@[::1%eth0]",
    "x" * 250 + "@example.com",
]


@pytest.mark.parametrize("value", TRICKY_EMAILS)
def test_the_email_pattern_takes_exactly_what_djangos_validator_takes(value):
    # Issue 23 (audit): the schema said `format: email`, looser than the validator, so a
    # generated client could send an address we refuse.
    assert email_inside_schema(value) is email_accepted(value)


def test_the_tricky_emails_hold_both_verdicts():
    verdicts = {email_accepted(value) for value in TRICKY_EMAILS}

    assert verdicts == {True, False}


EMAIL_PATTERN = re.compile(contract.email_pattern()[:-1] + r"\Z")
LOCAL_PARTS = st.text(alphabet=st.sampled_from('aZ9.!~"\\ @[]-\x01\u017f'), max_size=8)
DOMAINS = st.text(alphabet=st.sampled_from("aZ9.-:[]xn\u00fc\u3000 1f"), max_size=14)


@settings(max_examples=400, deadline=None, derandomize=True)
@given(
    st.one_of(
        st.emails(),
        st.builds(lambda local, domain: f"{local}@{domain}", LOCAL_PARTS, DOMAINS),
        st.from_regex(EMAIL_PATTERN),
    )
)
def test_generated_emails_inside_the_pattern_are_the_ones_django_accepts(value):
    # The maxLength is checked apart (after trimming); lone surrogates: holds_a_lone_surrogate.
    assume(len(value.strip()) <= 254 and not holds_a_lone_surrogate(value))
    try:
        validate_email(value.strip())
        django_accepts = True
    except ValidationError:
        django_accepts = False

    assert bool(EMAIL_PATTERN.match(value)) is django_accepts


SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()
KEY = base64.b64decode(SECRET.removeprefix("whsec_"))
NOW = 1_767_225_600
GOOD = {
    "id": "msg_1",
    "timestamp": str(NOW),
    "signature": sign(KEY, webhook_id="msg_1", timestamp=NOW, body=b"{}"),
}


def signature_header_schema(name: str) -> dict[str, Any]:
    operation = published()["paths"]["/tickets-status"]["post"]
    parameter = next(p for p in operation["parameters"] if p["name"] == name)
    return as_json_schema(parameter["schema"])


@pytest.mark.parametrize("prefix", ["webhook", "svix"])
@pytest.mark.parametrize(
    ("role", "value", "refusal"),
    [
        ("id", "m" * MAX_WEBHOOK_ID_LENGTH, None),
        ("id", "m" * (MAX_WEBHOOK_ID_LENGTH + 1), "longer than"),
        ("id", "", "is required"),
        ("id", "   ", "is required"),
        ("timestamp", "1" * 13, "whole seconds"),
        ("timestamp", "-1", "whole seconds"),
        ("timestamp", "1767225600.5", "whole seconds"),
        ("timestamp", "", "is required"),
        ("signature", "v1,abc", "malformed"),
        ("signature", "v2," + GOOD["signature"][3:], "malformed"),
        ("signature", GOOD["signature"][:-1], "malformed"),
        ("signature", f"v1,{'A' * 42}==", "malformed"),
        ("signature", f"v0,x {GOOD['signature']} v2,y", None),
    ],
)
def test_with_a_secret_the_signature_headers_carry_the_verifiers_rules(
    prefix, role, value, refusal
):
    # Issue 23 (audit): the headers had no length or pattern, so a generated client learned
    # none of the verifier's rules. A value outside the schema is one the verifier refuses
    # for its form; one inside passes the form (a matching signature then decides).
    with override_settings(WEBHOOK_SECRET=SECRET):
        schema = signature_header_schema(f"{prefix}-{role}")
    sent = {**GOOD, role: value}
    if role == "id":
        sent["signature"] = sign(KEY, webhook_id=value, timestamp=NOW, body=b"{}")
    headers = {f"{prefix}-{name}": text for name, text in sent.items()}
    try:
        verify(KEY, headers=headers, body=b"{}", now=NOW)
        reason = None
    except WebhookAuthError as exc:
        reason = str(exc)

    assert jsonschema.Draft7Validator(schema).is_valid(value) is (refusal is None)
    assert (reason is None) is (refusal is None)
    assert refusal is None or refusal in str(reason)


def test_without_a_secret_the_ignored_signature_headers_are_free_strings():
    # The webhook ignores them then: a rule would make Schemathesis expect a refusal.
    operation = published()["paths"]["/tickets-status"]["post"]
    named = {p["name"]: p["schema"] for p in operation["parameters"]}

    assert [named[name] for name in (*HEADERS, *SVIX_HEADERS)] == [{"type": "string"}] * 6


SELLER_OPERATIONS = {
    ("/tickets-status", "post"),
    ("/ticket-refund/{ticket_id}", "put"),
    ("/tickets", "get"),
}


@pytest.mark.parametrize("secret", ["", SECRET], ids=["open", "with-secret"])
@pytest.mark.parametrize(("path", "method"), sorted(SELLER_OPERATIONS))
def test_every_seller_endpoint_declares_the_correlation_and_signature_headers(path, method, secret):
    # Issue 23 (audit): the refund and the list declared neither, though both read them.
    with override_settings(WEBHOOK_SECRET=secret):
        operation = published()["paths"][path][method]

    assert {p["name"] for p in operation["parameters"] if p["in"] == "header"} >= {
        "Correlation-ID",
        *HEADERS,
        *SVIX_HEADERS,
    }


def test_with_a_secret_refund_and_list_take_a_token_or_a_signature_and_the_webhook_a_signature():
    with override_settings(WEBHOOK_SECRET=SECRET):
        schema = published()
    signed = [
        {"webhookId": [], "webhookTimestamp": [], "webhookSignature": []},
        {"svixId": [], "svixTimestamp": [], "svixSignature": []},
    ]
    schemes = schema["components"]["securitySchemes"]

    assert schema["paths"]["/ticket-refund/{ticket_id}"]["put"]["security"] == [
        {"tokenAuth": []},
        *signed,
    ]
    assert schema["paths"]["/tickets"]["get"]["security"] == [{"tokenAuth": []}, *signed]
    assert schema["paths"]["/tickets-status"]["post"]["security"] == signed
    assert {name: schemes[name]["name"] for requirement in signed for name in requirement} == dict(
        zip(
            [name for requirement in signed for name in requirement],
            [*HEADERS, *SVIX_HEADERS],
            strict=True,
        )
    )


def test_without_a_secret_the_seller_endpoints_declare_no_security():
    # Open by contract then: a declared scheme would tell clients (and Schemathesis'
    # ignored_auth check) that an anonymous call is refused.
    paths = published()["paths"]

    assert [paths[path][method].get("security") for path, method in SELLER_OPERATIONS] == [None] * 3


@pytest.mark.django_db
def test_the_list_refuses_a_correlation_id_with_a_control_character_as_its_schema_says(client):
    response = client.get("/tickets", headers={"Correlation-ID": "c-1\x7f"})

    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "Correlation-ID"


def formats_in(node: Any) -> set[str]:
    if isinstance(node, list):
        return set().union(*(formats_in(item) for item in node)) if node else set()
    if not isinstance(node, dict):
        return set()
    found = {node["format"]} if isinstance(node.get("format"), str) else set()
    return found.union(*(formats_in(value) for value in node.values()))


def test_every_answer_states_a_stored_email_by_the_rule_it_was_accepted_under():
    # Schemathesis (seed 23) read a stored `"A\u0016\\tD>"@[172.201.220.229]`, which the
    # webhook took, as a schema violation of the list's `format: email` answer.
    schema = published()
    components = schema["components"]["schemas"]

    assert "email" not in formats_in(schema)
    for name in ("TicketListEntry", "TicketDetail"):
        assert components[name]["properties"]["customer_email"] == contract.customer_email_schema()
