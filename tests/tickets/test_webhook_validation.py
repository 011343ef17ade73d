"""The webhook's fast path and DRF's serializer accept and refuse the same bodies, alike.

The corpus: every bad input of the webhook's tests (test_webhook.py, test_plain_input.py),
good bodies in the shapes sellers send, and seeded mutations of both.
"""

from __future__ import annotations

import copy
import random
from typing import Any

import pytest
from django.test import override_settings

from tests.conftest import ticket
from tickets.intake.serializers import validate_tickets, validate_with_serializer
from tickets.intake.validation import fast_tickets

CONTROLS = ["\n", "\r", "\x00", "\t", "\x85", "\u2028", "\u2029", "\u202e", "\u200d", "\x1b"]
BAD_AMOUNTS = [
    "-0", "-0.00", "-1.00", "\u0661\u0662", "\u0661\u0662.\u0665\u0660", "\uff11\uff12", "5e1",
    "1E+1", "+50", " 50.00", "50.00 ", "50.", ".5", "50.001", "0x10", "50,00", "", "1.234",
    "ten", "NaN", "Infinity", "99999999999", "99999999999.00", "0" * 1001, "1" * 70,
    "0", "0.00", "00000000000",
]  # fmt: skip
GOOD_AMOUNTS = [
    "50", "50.5", "50.50", "0.01", "0050.00", "9999999999.99", "0000000000000.5",
    "1234567890", "0" * 40 + "1.5",
]  # fmt: skip
# Ticket fields each set to these in turn: wrong types, blanks, bounds, odd characters.
ODD_VALUES: list[Any] = [
    None, 1, 0, 1.5, True, False, [], {}, ["x"], {"a": 1}, "", " ", "  x  ", "x" * 255,
    "x" * 256, " " + "x" * 255 + " ", "\ud800", "a\x00b", "Zürich · 東京", "\u00a0x", "x\u3000",
    "confirmed", "canceled", "CONFIRMED", "ada@example.com", "a@b", "@example.com",
    "ada@bücher.example", "ada@[127.0.0.1]", "ada@localhost", "50.00", "EUR", " EUR ", "eur",
    "\nEUR", "EU\u0301", "ZZZ", "XXX", "XAU", "JPY", "KWD", "A/1", "/", "..", ".", " .. ",
    "a\\b", "...", 100, 1e2, 1e309, -0.0,
]  # fmt: skip


def body(*tickets: Any) -> dict[str, Any]:
    return {"tickets": list(tickets)}


def good_bodies() -> list[Any]:
    bodies: list[Any] = [
        body(ticket("t-1")),
        body(ticket("t-1"), ticket("t-2", "canceled")),
        body(*[ticket(f"t-{n}", email=f"c{n}@example.com") for n in range(100)]),
        body(ticket("t-1", currency=None)),
        body(ticket("  t-1  ", email="  ada@example.com ", currency=" EUR ")),
        body(ticket("Zürich stand 7 · 東京", booking_id="order 12/b")),
        body(ticket("t-1", booking_id=None), ticket("t-2", booking_id=""), ticket("t-3")),
        body(ticket("t-1", booking_id="   "), ticket("t-2", booking_id=" b-2 ")),
        body(ticket("t-1", email="ada@bücher.example")),
        body(ticket("x" * 255, booking_id="b" * 255)),
        body(ticket("t.1", currency="JPY", amount="1500"), ticket("...", currency="KWD")),
        body(ticket("t-1", currency="JPY", amount="1500.00")),
        {"tickets": [ticket("t-1", extra="ignored")], "also": "ignored"},
    ]
    bodies += [body(ticket("t-1", amount=amount)) for amount in GOOD_AMOUNTS]
    return bodies


def bad_bodies() -> list[Any]:
    bodies: list[Any] = [{}, {"tickets": []}, {"tickets": "nope"}, [], "tickets", None, 1]
    bodies += [{"tickets": None}, {"tickets": {}}, {"tickets": [None]}, {"tickets": ["t-1"]}]
    bodies += [body({"ticket_id": "t"}), body(ticket("t-1"), [])]
    # test_webhook.py's invalid second ticket.
    bad_fields: list[dict[str, Any]] = [
        {"ticket_id": ""},
        {"ticket_id": "x" * 256},
        {"status": "refunded"},
        {"customer_email": "not-an-email"},
        {"price": {"amount": "1.234", "currency": "EUR"}},
        {"price": {"amount": "-1.00", "currency": "EUR"}},
        {"price": {"amount": 10.5, "currency": "EUR"}},
        {"price": {"amount": "ten", "currency": "EUR"}},
        {"price": {"amount": "NaN", "currency": "EUR"}},
        {"price": {"currency": "EUR"}},
        {"price": {"amount": "1.00", "currency": "EURO"}},
        {"price": {"amount": "1.00", "currency": "eu1"}},
        {"price": "1.00"},
        {"booking_id": "b" * 256},
        {"ticket_id": "A/1"},
        {"ticket_id": ".."},
        {"ticket_id": " . "},
        {"ticket_id": 100},
        {"ticket_id": 1e309},
        {"booking_id": 7},
        {"price": {"amount": "0", "currency": "EUR"}},
        {"price": {"amount": "1.00", "currency": "ZZZ"}},
        {"price": {"amount": "1.00", "currency": "XTS"}},
        {"price": {"amount": "1.50", "currency": "JPY"}},
    ]
    for bad in bad_fields:
        bodies.append(body(ticket("t-1"), {**ticket("t-2"), **bad}))
    # test_plain_input.py's forged identifiers and odd amounts, in the fourth ticket.
    four = [ticket(f"t-{i}") for i in range(3)]
    for char in CONTROLS:
        bodies.append(body(*four, ticket(f"t-3{char}x")))
        bodies.append(body(*four, ticket("t-3", booking_id=f"b{char}1")))
        bodies.append(body(*four, ticket(f"t-3{char}")))
    bodies += [body(*four, ticket("t-3", amount=amount)) for amount in BAD_AMOUNTS]
    bodies.append(body(*four, ticket("t-3", currency=None), ticket("t-4", amount="1.001")))
    return bodies


def mutations(seed: int = 7, count: int = 600) -> list[Any]:
    """Seeded variants: a field dropped or set to an odd value, in one ticket or several."""
    rand = random.Random(seed)
    bases = good_bodies()
    fields = [
        ("ticket_id",),
        ("status",),
        ("customer_email",),
        ("booking_id",),
        ("price",),
        ("price", "amount"),
        ("price", "currency"),
    ]
    out: list[Any] = []
    for _ in range(count):
        variant = copy.deepcopy(rand.choice(bases))
        for _ in range(rand.choice([1, 1, 2, 3])):
            target = rand.choice(variant["tickets"])
            path = rand.choice(fields)
            holder = target
            for key in path[:-1]:
                holder = holder.get(key) if isinstance(holder, dict) else None
            if not isinstance(holder, dict):
                continue
            if rand.random() < 0.2:
                holder.pop(path[-1], None)
            else:
                pool = BAD_AMOUNTS + GOOD_AMOUNTS if path[-1] == "amount" else ODD_VALUES
                holder[path[-1]] = rand.choice(pool)
        out.append(variant)
    return out


CORPUS = good_bodies() + bad_bodies() + mutations()


def same_tickets(left: list[Any], right: list[Any]) -> bool:
    # Decimal equality ignores the exponent: "50.00" and "50" compare equal, so compare text too.
    return left == right and [str(t.amount) for t in left] == [str(t.amount) for t in right]


@pytest.mark.parametrize("data", CORPUS, ids=[f"c{n}" for n in range(len(CORPUS))])
def test_the_view_accepts_and_refuses_as_the_serializer_with_the_same_field_errors(data):
    tickets, errors = validate_tickets(copy.deepcopy(data))
    drf_tickets, drf_errors = validate_with_serializer(copy.deepcopy(data))

    assert errors == drf_errors
    assert same_tickets(tickets, drf_tickets)


@pytest.mark.parametrize("data", CORPUS, ids=[f"c{n}" for n in range(len(CORPUS))])
def test_the_fast_path_accepts_only_what_the_serializer_accepts_with_the_same_values(data):
    fast = fast_tickets(copy.deepcopy(data), max_tickets=1000)
    drf_tickets, drf_errors = validate_with_serializer(copy.deepcopy(data))

    if drf_errors:
        assert fast is None
    if fast is not None:
        assert same_tickets(fast, drf_tickets)


@pytest.mark.parametrize("data", good_bodies(), ids=lambda _: "good")
def test_a_well_formed_body_takes_the_fast_path(data):
    # Else the fast path would be correct by never answering, and the webhook slow again.
    assert fast_tickets(data, max_tickets=1000) is not None


def test_the_corpus_holds_bad_bodies_of_every_kind_and_mutations_the_fast_path_takes():
    refused = [d for d in CORPUS if validate_with_serializer(copy.deepcopy(d))[1]]
    fast = [d for d in mutations() if fast_tickets(copy.deepcopy(d), max_tickets=1000)]

    assert len(refused) > 300
    assert len(fast) > 50


@override_settings(WEBHOOK_MAX_TICKETS=3)
def test_more_tickets_than_the_limit_are_refused_by_both_paths_alike():
    data = body(*[ticket(f"t-{n}") for n in range(4)])

    assert fast_tickets(data, max_tickets=3) is None
    assert validate_tickets(data) == validate_with_serializer(data)
    assert validate_tickets(data)[1][0]["field"] == "tickets"
