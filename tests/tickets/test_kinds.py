from __future__ import annotations

import ast
from decimal import Decimal
from pathlib import Path

import pytest

from tickets import kinds
from tickets.ticket_in import TicketIn

TICKET = TicketIn(
    ticket_id="t-1",
    status="confirmed",
    customer_email="ada@example.com",
    amount=Decimal("5.00"),
    currency="EUR",
)


def test_every_effect_is_in_the_table_once():
    names = [effect.name for effect in kinds.EFFECTS]

    assert names == [
        "receipt",
        f"sheet:{kinds.PRINT_SHEET}",
        f"sheet:{kinds.REFUND_SHEET}",
        "void",
        "refund",
    ]


def test_dedupe_key_formats_never_change():
    assert kinds.dedupe_keys("t-1") == [
        "receipt:t-1",
        "sheet:tickets-to-print:t-1",
        "sheet:tickets-to-refund:t-1",
        "void:t-1",
        "refund:t-1",
    ]
    assert kinds.receipt_dedupe_key("t-1") == "receipt:t-1"
    assert kinds.sheet_dedupe_key(kinds.REFUND_SHEET, "t-1") == "sheet:tickets-to-refund:t-1"
    assert kinds.void_dedupe_key("t-1") == "void:t-1"
    assert kinds.refund_dedupe_key("t-1") == "refund:t-1"


def test_idempotency_keys_sent_to_the_apis_never_change():
    # Tasks already stored, and the APIs' records of them, hold these very values.
    sent = {spec.dedupe_key: spec.idempotency_key for spec in _every_spec()}

    assert sent == {
        "receipt:t-1": "4e5f75afa6c55ffc90c34b1c7ed549fe",
        "sheet:tickets-to-print:t-1": "8dbe6c0c950c5df3a9657a1ca207f713",
        "sheet:tickets-to-refund:t-1": "ad69bcc28833567ba697aaeab1709698",
        "void:t-1": "f4fe57abdba4556f9e6d88637fb64b9c",
        "refund:t-1": "d0a19f4caf7d5caf9c2c1a123833518c",
    }


def test_a_confirmation_issues_a_receipt_and_a_print_row():
    specs = kinds.specs_on([kinds.ON_CONFIRMED], TICKET, "c-1")

    assert [(spec.kind, spec.payload) for spec in specs] == [
        (kinds.ISSUE_RECEIPT, {"ticket_id": "t-1", "amount": "5.00", "currency": "EUR"}),
        (
            kinds.APPEND_ROW,
            {
                "sheet": kinds.PRINT_SHEET,
                "ticket_id": "t-1",
                "customer_email": "ada@example.com",
                "amount": "5.00",
                "currency": "EUR",
            },
        ),
    ]
    assert {spec.correlation_id for spec in specs} == {"c-1"}


def test_a_cancel_adds_a_refund_row_and_a_refund_request_voids_and_refunds():
    canceled = kinds.specs_on([kinds.ON_CANCELED], TICKET, "")
    refund = kinds.specs_on([kinds.ON_REFUND_REQUESTED], TICKET, "")

    assert [(spec.kind, spec.payload["sheet"]) for spec in canceled] == [
        (kinds.APPEND_ROW, kinds.REFUND_SHEET)
    ]
    assert [(spec.kind, spec.payload) for spec in refund] == [
        (kinds.VOID_RECEIPT, {"ticket_id": "t-1", "reason": "refund requested"}),
        (kinds.REFUND_PAYMENT, {"ticket_id": "t-1", "reason": "refund requested"}),
    ]


def test_every_effect_is_caused_by_some_transition():
    assert [spec.dedupe_key for spec in _every_spec()] == kinds.dedupe_keys("t-1")


@pytest.mark.parametrize("module", ["kinds", "ticket_in"])
def test_the_effects_do_not_import_the_services_that_enqueue_them(module):
    source = Path(kinds.__file__).with_name(f"{module}.py").read_text()
    imported = {
        node.module
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.ImportFrom) and node.module
    }

    assert "tickets.services" not in imported


def _every_spec():
    events = [kinds.ON_CONFIRMED, kinds.ON_CANCELED, kinds.ON_REFUND_REQUESTED]
    return [spec for event in events for spec in kinds.specs_on([event], TICKET, "")]
