"""Identifiers are plain text and amounts canonical: forged ids and odd numbers are refused.

Each test is an attack on `POST /tickets-status` or `PUT /ticket-refund/{id}`; every refusal
is a 400 naming the field, in the validation shape, and writes nothing.
"""

from __future__ import annotations

import json
import logging
from decimal import Decimal
from urllib.parse import quote

import pytest

from outbox.models import Task
from tests.conftest import ticket
from tickets import kinds
from tickets.models import Ticket, WebhookDelivery

pytestmark = pytest.mark.django_db

# Line breaks, a NUL, NEL, the Unicode line/paragraph separators, a right-to-left override,
# a zero-width joiner and a terminal escape: each breaks or hides a log line.
CONTROLS = ["\n", "\r", "\x00", "\t", "\x85", "\u2028", "\u2029", "\u202e", "\u200d", "\x1b"]
FORGED = "\n2026-01-01 00:00:00,000 INFO tickets.services [-] refund of t-9 approved"


def counts() -> tuple[int, int, int]:
    return Ticket.objects.count(), Task.objects.count(), WebhookDelivery.objects.count()


def four_tickets(**fourth: str) -> list[dict]:
    return [ticket(f"t-{i}") for i in range(3)] + [ticket("t-3", **fourth)]


def assert_refused(response, field: str) -> None:
    assert response.status_code == 400, response.content
    body = response.json()
    assert [e["field"] for e in body["errors"]] == [field]
    assert "control character" in body["errors"][0]["message"]
    assert body["error"].startswith(f"invalid request: {field}: must be plain text")


@pytest.mark.parametrize("char", CONTROLS, ids=repr)
def test_a_ticket_id_with_a_control_character_is_400_naming_the_field_and_writes_nothing(
    post_tickets, char
):
    tickets = four_tickets()
    tickets[3]["ticket_id"] = f"t-3{char}x"

    response = post_tickets(tickets)

    assert_refused(response, "tickets[3].ticket_id")
    assert counts() == (0, 0, 0)


def test_a_ticket_id_that_forges_a_log_line_is_refused_even_at_its_end(post_tickets):
    # DRF's CharField trims whitespace at the ends only: the middle of an id was kept.
    for ticket_id in (f"t-1{FORGED}", "t-1\n"):
        response = post_tickets([ticket(ticket_id)], key=f"k-{len(ticket_id)}")

        assert_refused(response, "tickets[0].ticket_id")
    assert counts() == (0, 0, 0)


@pytest.mark.parametrize("booking_id", ["b-1\nforged", "\n", "b\u2028", "\u202eb-1"], ids=repr)
def test_a_booking_id_with_a_control_character_is_400_naming_the_field(post_tickets, booking_id):
    response = post_tickets(four_tickets(booking_id=booking_id))

    assert_refused(response, "tickets[3].booking_id")
    assert counts() == (0, 0, 0)


@pytest.mark.parametrize("char", ["\n", "\r", "\x00", "\u2028", "\u202e"], ids=repr)
def test_an_idempotency_key_with_a_control_character_is_400_naming_the_header(client, char):
    response = client.post(
        "/tickets-status",
        {"tickets": [ticket("t-1")]},
        content_type="application/json",
        headers={"Idempotency-Key": f"key{char}1"},
    )

    assert_refused(response, "Idempotency-Key")
    assert counts() == (0, 0, 0)


@pytest.mark.parametrize("char", ["\n", "\r", "\x00", "\u2028", "\u202e"], ids=repr)
def test_a_correlation_id_with_a_control_character_is_400_naming_the_header(post_tickets, char):
    response = post_tickets([ticket("t-1")], correlation_id=f"corr{char}1")

    assert_refused(response, "Correlation-ID")
    assert counts() == (0, 0, 0)


def test_plain_identifiers_with_spaces_and_non_ascii_letters_are_taken(post_tickets):
    response = post_tickets(
        [ticket("Zürich stand 7 · 東京", booking_id="order 12/b")], correlation_id="c-1"
    )

    assert response.status_code == 200, response.content
    assert Ticket.objects.get().ticket_id == "Zürich stand 7 · 東京"


@pytest.mark.parametrize("char", ["\n", "\r", "\u2028", "\u202e"], ids=repr)
def test_a_refund_of_a_ticket_id_with_a_control_character_is_400_and_writes_nothing(
    client, post_tickets, char
):
    post_tickets([ticket("t-1")])
    before = counts()

    response = client.put("/ticket-refund/" + quote(f"t-1{char}forged"))

    assert_refused(response, "ticket_id")
    assert counts() == before
    assert Ticket.objects.get().refund_requested_at is None


def test_a_refund_with_a_forged_correlation_id_is_400_and_writes_nothing(client, post_tickets):
    post_tickets([ticket("t-1")])
    before = counts()

    response = client.put("/ticket-refund/t-1", headers={"Correlation-ID": "c\n1"})

    assert_refused(response, "Correlation-ID")
    assert counts() == before


def test_a_refused_forged_id_leaves_no_line_break_in_the_logs(post_tickets, caplog):
    caplog.set_level(logging.DEBUG)

    post_tickets([ticket(f"t-1{FORGED}")])

    assert "refund of t-9 approved" not in caplog.text


# --- amounts ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "amount",
    [
        "-0",  # was stored 0.00 and sent on as "-0.00"
        "-0.00",
        "-1.00",
        "\u0661\u0662",  # Arabic-Indic "12": was read as 12.00
        "\u0661\u0662.\u0665\u0660",
        "\uff11\uff12",  # fullwidth "12"
        "5e1",
        "1E+1",
        "+50",
        " 50.00",
        "50.00 ",
        "50.",
        ".5",
        "50.001",
        "0x10",
        "50,00",
        "",
    ],
    ids=repr,
)
def test_an_amount_that_is_not_plain_ascii_digits_is_400_naming_it(post_tickets, amount):
    response = post_tickets(four_tickets(amount=amount))

    assert response.status_code == 400, response.content
    assert [e["field"] for e in response.json()["errors"]] == ["tickets[3].price.amount"]
    assert counts() == (0, 0, 0)


@pytest.mark.parametrize(
    ("amount", "canonical"),
    [
        ("50", "50.00"),
        ("50.5", "50.50"),
        ("50.50", "50.50"),
        ("0.01", "0.01"),
        ("0050.00", "50.00"),
        ("9999999999.99", "9999999999.99"),
    ],
)
def test_an_accepted_amount_is_stored_and_sent_as_the_same_two_decimal_string(
    post_tickets, amount, canonical
):
    response = post_tickets([ticket("t-1", amount=amount)])

    assert response.status_code == 200, response.content
    assert f"{Ticket.objects.get().price_amount:.2f}" == canonical
    receipt = Task.objects.get(kind=kinds.ISSUE_RECEIPT)
    assert receipt.payload["amount"] == canonical
    assert Decimal(canonical).as_tuple().sign == 0


# --- ids: what the webhook stores, a refund can name -------------------------------------------


@pytest.mark.parametrize("ticket_id", ["A/1", "/", "a\\b", ".", "..", " .. "], ids=repr)
def test_a_ticket_id_no_refund_path_can_name_is_refused_by_the_webhook(post_tickets, ticket_id):
    # `A/1` was stored, and PUT /ticket-refund/A%2F1 answered 404 for ever: Django decodes
    # %2F before routing. `..` and `.` are resolved away by the client before it sends.
    tickets = four_tickets()
    tickets[3]["ticket_id"] = ticket_id

    response = post_tickets(tickets)

    assert response.status_code == 400, response.content
    errors = response.json()["errors"]
    assert [e["field"] for e in errors] == ["tickets[3].ticket_id"]
    assert "URL path" in errors[0]["message"]
    assert counts() == (0, 0, 0)


@pytest.mark.parametrize(
    "ticket_id",
    ["t 1", "Zürich · 東京", "t%2F1", "t?x=1", "t#1", "t;1", "...", ".t", "t.", "x" * 255],
    ids=repr,
)
def test_every_ticket_id_the_webhook_accepts_can_be_refunded_through_its_path(
    client, post_tickets, ticket_id
):
    assert post_tickets([ticket(ticket_id)]).status_code == 200

    response = client.put("/ticket-refund/" + quote(ticket_id, safe=""))

    assert response.status_code == 202, response.content
    assert response.json()["ticket_id"] == ticket_id
    assert Ticket.objects.get().refund_requested_at is not None


@pytest.mark.parametrize("path_id", ["..", ".", "%2E%2E", "a%5Cb", "x" * 256], ids=repr)
def test_a_refund_path_holding_an_id_no_ticket_can_have_is_400_not_a_lookup(client, path_id):
    response = client.put(f"/ticket-refund/{path_id}")

    assert response.status_code == 400, response.content
    assert [e["field"] for e in response.json()["errors"]] == ["ticket_id"]
    assert counts() == (0, 0, 0)


# --- an id is a JSON string --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ("100", "ticket_id"),  # was stored as "100"
        ("1e2", "ticket_id"),  # as "100.0"
        ("1e309", "ticket_id"),  # as "inf"
        ("-0.0", "ticket_id"),
        ("true", "ticket_id"),
        ("7", "booking_id"),
        ("1.5", "booking_id"),
    ],
)
def test_a_number_sent_as_an_id_is_400_not_stored_as_text(post_tickets, raw, field):
    first = ticket("t-1")
    first[field] = "PLACEHOLDER"
    body = json.dumps({"tickets": [ticket("t-0"), first]}).replace('"PLACEHOLDER"', raw)

    response = post_tickets(body=body)

    assert response.status_code == 400, response.content
    errors = response.json()["errors"]
    assert [e["field"] for e in errors] == [f"tickets[1].{field}"]
    assert errors[0]["message"].startswith("must be a JSON string")
    assert counts() == (0, 0, 0)


# --- currencies and zero ---------------------------------------------------------------------


@pytest.mark.parametrize("currency", ["ZZZ", "ABC", "XTS", "XXX", "XAU", "eur", "EURO"])
def test_a_currency_that_is_not_iso_4217_is_400_naming_it(post_tickets, currency):
    # XTS is ISO's code for tests, XXX "no currency", XAU gold: none is a ticket's price.
    response = post_tickets(four_tickets(currency=currency))

    assert response.status_code == 400, response.content
    assert [e["field"] for e in response.json()["errors"]] == ["tickets[3].price.currency"]
    assert counts() == (0, 0, 0)


@pytest.mark.parametrize(
    ("currency", "amount"), [("EUR", "50.00"), ("JPY", "1500"), ("KWD", "12.50"), ("CHF", "9.9")]
)
def test_iso_4217_currencies_of_every_minor_unit_are_accepted(post_tickets, currency, amount):
    response = post_tickets([ticket("t-1", currency=currency, amount=amount)])

    assert response.status_code == 200, response.content
    assert Ticket.objects.get().price_currency == currency


@pytest.mark.parametrize("amount", ["0", "0.00", "000"])
def test_a_price_of_zero_is_400_and_makes_no_receipt(post_tickets, amount):
    response = post_tickets(four_tickets(amount=amount))

    assert response.status_code == 400, response.content
    errors = response.json()["errors"]
    assert errors == [{"field": "tickets[3].price.amount", "message": "must be more than 0"}]
    assert counts() == (0, 0, 0)


def test_a_fraction_of_a_currency_without_minor_units_is_400(post_tickets):
    response = post_tickets(four_tickets(currency="JPY", amount="1500.50"))

    assert response.status_code == 400, response.content
    errors = response.json()["errors"]
    assert errors == [
        {
            "field": "tickets[3].price.amount",
            "message": "must be a whole number: JPY has no minor unit",
        }
    ]
    assert counts() == (0, 0, 0)
