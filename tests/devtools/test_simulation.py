"""The simulator: planning, checking the gateway's state, waiting, and the command's verdict."""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client, override_settings

from devtools.fake_gateway import FakeGateway, start_in_thread
from devtools.simulation import (
    RECEIPTS,
    ExpectedEffects,
    GatewayUnavailable,
    PlanError,
    PlannedTicket,
    check_effects,
    plan_simulation,
    wait_for_effects,
    webhook_request,
)
from tickets.intake.signature import WebhookAuthError, verify
from tickets.kinds import PRINT_SHEET, REFUND_SHEET
from tickets.models import Ticket

KEY = bytes(range(32))
SECRET = "whsec_" + base64.b64encode(KEY).decode()


def plan(**overrides: Any):
    options: dict[str, Any] = {
        "orders": 20,
        "tickets_per_order": 5,
        "cancel_rate": 0.5,
        "repeat_rate": 0.3,
        "unconfirmed_cancel_rate": 0.1,
        "seed": 7,
        "run_id": "r1",
    }
    return plan_simulation(**{**options, **overrides})


# Planning ---------------------------------------------------------------------------------


def test_a_seed_and_a_run_id_give_the_same_plan_every_time():
    assert plan() == plan()


def test_another_seed_gives_another_plan():
    assert plan(seed=1).webhooks != plan(seed=2).webhooks


def test_every_ticket_has_a_unique_id_and_each_order_one_correlation_id():
    planned = plan()
    firsts = [w for w in planned.webhooks if w.phase == 0]
    ids = [t["ticket_id"] for w in firsts for t in w.body["tickets"]]

    assert len(ids) == len(set(ids)) == 100
    assert all(ticket_id.startswith("sim-r1-") for ticket_id in ids)
    correlation_ids = {w.order: set() for w in planned.webhooks}
    for webhook in planned.webhooks:
        correlation_ids[webhook.order].add(webhook.correlation_id)
    assert all(len(ids) == 1 for ids in correlation_ids.values())
    assert len({next(iter(ids)) for ids in correlation_ids.values()}) == 20


def test_prices_are_decimal_strings_and_some_tickets_have_no_currency():
    tickets = [t for w in plan(orders=50).webhooks for t in w.body["tickets"]]

    assert all(isinstance(t["price"]["amount"], str) for t in tickets)
    assert all(Decimal(t["price"]["amount"]) > 0 for t in tickets)
    assert any("currency" not in t["price"] for t in tickets)
    assert any(t["price"].get("currency") == "EUR" for t in tickets)
    assert all("@" in t["customer_email"] for t in tickets)


def test_cancel_webhooks_follow_every_confirmation_and_cancel_only_confirmed_tickets():
    planned = plan()
    cancels = [
        w for w in planned.webhooks if w.idempotency_key.endswith("-cancel") and not w.repeat
    ]
    confirmed_first = {
        t["ticket_id"]
        for w in planned.webhooks
        if w.phase == 0
        for t in w.body["tickets"]
        if t["status"] == "confirmed"
    }

    assert cancels, "a cancel rate of 0.5 over 20 orders plans some cancellations"
    assert {w.phase for w in cancels} == {1}
    for webhook in cancels:
        statuses = {t["status"] for t in webhook.body["tickets"]}
        assert statuses == {"canceled"}
        assert {t["ticket_id"] for t in webhook.body["tickets"]} <= confirmed_first


def test_repeats_reuse_the_key_and_body_of_an_earlier_webhook():
    planned = plan()
    originals = {w.idempotency_key: w for w in planned.webhooks if not w.repeat}
    repeats = [w for w in planned.webhooks if w.repeat]

    assert repeats
    for repeat in repeats:
        original = originals[repeat.idempotency_key]
        assert repeat.body == original.body
        assert repeat.correlation_id == original.correlation_id
        assert repeat.phase > original.phase


def test_no_repeats_and_no_cancellations_at_rate_zero():
    planned = plan(repeat_rate=0, cancel_rate=0, unconfirmed_cancel_rate=0)

    assert len(planned.webhooks) == 20
    assert planned.expected.by_effect[REFUND_SHEET] == {}


def test_expected_effects_follow_the_ticket_state_machine() -> None:
    planned = plan()
    statuses: dict[str, list[str]] = {}
    for webhook in planned.webhooks:
        if not webhook.repeat:
            for t in webhook.body["tickets"]:
                statuses.setdefault(t["ticket_id"], []).append(t["status"])
    ever_confirmed = {tid for tid, seen in statuses.items() if "confirmed" in seen}
    canceled = {tid for tid, seen in statuses.items() if "canceled" in seen}
    never_confirmed = canceled - ever_confirmed
    by_effect = planned.expected.by_effect

    assert never_confirmed, "an unconfirmed-cancel rate of 0.1 plans some"
    assert canceled - never_confirmed, "and some confirmed tickets are canceled later"
    assert set(by_effect[RECEIPTS]) == set(by_effect[PRINT_SHEET]) == ever_confirmed
    assert set(by_effect[REFUND_SHEET]) == canceled
    assert planned.expected.total == 2 * len(ever_confirmed) + len(canceled)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"orders": 0}, "orders"),
        ({"tickets_per_order": 0}, "tickets_per_order"),
        ({"cancel_rate": 1.5}, "cancel_rate"),
        ({"repeat_rate": -0.1}, "repeat_rate"),
        ({"unconfirmed_cancel_rate": 2}, "unconfirmed_cancel_rate"),
        ({"run_id": "a b"}, "run_id"),
    ],
)
def test_bad_parameters_are_rejected_naming_the_field(overrides, field):
    with pytest.raises(PlanError) as error:
        plan(**overrides)

    assert error.value.field == field


# Checking ---------------------------------------------------------------------------------


def call(gateway: FakeGateway, method: str, path: str, body: Any, correlation_id: str) -> None:
    reply = gateway.handle(method, path, json.dumps(body).encode(), correlation_id)
    assert reply.status < 300, reply.body


def issue_receipt(
    gateway: FakeGateway, ticket: PlannedTicket, correlation_id: str, *, key: str = "", **price
) -> None:
    body = {
        "ticket_id": ticket.ticket_id,
        "price": {
            "money_amount": price.get("amount", ticket.amount),
            "money_currency": price.get("currency", ticket.billed_currency),
        },
        "idempotency_key": key or f"key-{ticket.ticket_id}",
    }
    call(gateway, "PUT", "/receipts-api/receipts", body, correlation_id)


def append_row(
    gateway: FakeGateway, sheet: str, ticket: PlannedTicket, correlation_id: str
) -> None:
    columns = [ticket.ticket_id, ticket.customer_email, ticket.amount, ticket.billed_currency]
    call(
        gateway,
        "POST",
        f"/spreadsheets-api/sheets/{sheet}/rows",
        {"columns": columns},
        correlation_id,
    )


def cause_expected_effects(gateway: FakeGateway, expected: ExpectedEffects) -> None:
    for ticket_id, correlation_id in expected.by_effect[RECEIPTS].items():
        issue_receipt(gateway, expected.tickets[ticket_id], correlation_id)
    for sheet in (PRINT_SHEET, REFUND_SHEET):
        for ticket_id, correlation_id in expected.by_effect[sheet].items():
            append_row(gateway, sheet, expected.tickets[ticket_id], correlation_id)


@pytest.fixture
def expected() -> ExpectedEffects:
    return plan().expected


@pytest.fixture
def gateway(expected: ExpectedEffects) -> FakeGateway:
    """A gateway holding every expected effect exactly once."""
    gateway = FakeGateway()
    cause_expected_effects(gateway, expected)
    return gateway


def some(expected: ExpectedEffects, effect: str) -> tuple[PlannedTicket, str]:
    ticket_id, correlation_id = sorted(expected.by_effect[effect].items())[0]
    return expected.tickets[ticket_id], correlation_id


def never_confirmed(expected: ExpectedEffects) -> PlannedTicket:
    ticket_id = sorted(set(expected.by_effect[REFUND_SHEET]) - set(expected.by_effect[RECEIPTS]))[0]
    return expected.tickets[ticket_id]


def test_every_effect_present_once_is_ok(expected, gateway):
    report = check_effects(expected, gateway.snapshot())

    assert report.ok
    assert report.complete
    assert report.present == report.expected == expected.total


def test_a_missing_receipt_is_reported(expected, gateway):
    state = gateway.snapshot()
    lost = state["receipts"].pop(3)

    report = check_effects(expected, state)

    receipts = report.checks[0]
    assert not report.complete
    assert not report.ok
    assert receipts.effect == RECEIPTS
    assert receipts.missing == (lost["ticket_id"],)
    assert receipts.present == receipts.expected - 1


def test_a_second_receipt_for_a_ticket_is_a_duplicate(expected, gateway):
    ticket, correlation_id = some(expected, RECEIPTS)
    issue_receipt(gateway, ticket, correlation_id, key="another-key")

    report = check_effects(expected, gateway.snapshot())

    assert report.complete
    assert not report.ok
    assert report.checks[0].duplicated == (ticket.ticket_id,)


def test_the_same_receipt_asked_for_again_with_its_key_is_not_a_duplicate(expected, gateway):
    ticket, correlation_id = some(expected, RECEIPTS)
    issue_receipt(gateway, ticket, correlation_id)

    assert check_effects(expected, gateway.snapshot()).ok


@pytest.mark.parametrize("sheet", [PRINT_SHEET, REFUND_SHEET])
def test_a_second_row_for_a_ticket_on_a_sheet_is_a_duplicate(expected, gateway, sheet):
    ticket, correlation_id = some(expected, sheet)
    append_row(gateway, sheet, ticket, correlation_id)

    report = check_effects(expected, gateway.snapshot())

    check = next(c for c in report.checks if c.effect == sheet)
    assert not report.ok
    assert check.duplicated == (ticket.ticket_id,)
    assert all(not c.duplicated for c in report.checks if c.effect != sheet)


def test_a_receipt_for_a_ticket_never_confirmed_is_unexpected(expected, gateway):
    ticket = never_confirmed(expected)
    issue_receipt(gateway, ticket, "whatever")

    report = check_effects(expected, gateway.snapshot())

    assert not report.ok
    assert report.checks[0].unexpected == (ticket.ticket_id,)


def test_a_ticket_without_currency_billed_in_another_currency_is_wrong(expected, gateway):
    ticket_id = next(
        t for t in expected.by_effect[RECEIPTS] if expected.tickets[t].currency is None
    )
    state = gateway.snapshot()
    receipt = next(r for r in state["receipts"] if r["ticket_id"] == ticket_id)
    receipt["price"]["money_currency"] = "EUR"

    report = check_effects(expected, state)

    assert not report.ok
    assert report.checks[0].wrong_content == (ticket_id,)


def test_an_effect_carrying_another_correlation_id_is_reported(expected, gateway):
    ticket, _ = some(expected, PRINT_SHEET)
    state = gateway.snapshot()
    row = next(r for r in state["sheet_rows"][PRINT_SHEET] if r["columns"][0] == ticket.ticket_id)
    row["correlation_id"] = "gen_something-else"

    report = check_effects(expected, state)

    assert not report.ok
    assert report.checks[1].wrong_correlation == (ticket.ticket_id,)


def test_effects_of_other_tickets_at_the_gateway_are_ignored(expected, gateway):
    stranger = PlannedTicket("someone-else", "x@example.com", "1.00", "EUR")
    issue_receipt(gateway, stranger, "c", key="k1")
    issue_receipt(gateway, stranger, "c", key="k2")
    append_row(gateway, PRINT_SHEET, stranger, "c")

    assert check_effects(expected, gateway.snapshot()).ok


# Waiting ----------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_waiting_returns_once_every_effect_is_present(expected):
    gateway, clock = FakeGateway(), FakeClock()
    seen = []

    def fetch() -> dict[str, Any]:
        if len(clock.sleeps) == 3:
            cause_expected_effects(gateway, expected)
        return gateway.snapshot()

    report = wait_for_effects(
        fetch,
        expected,
        deadline_seconds=60,
        settle_seconds=1,
        poll_seconds=0.5,
        on_progress=lambda r, elapsed: seen.append(r.present),
        clock=clock,
        sleep=clock.sleep,
    )

    assert report.ok
    assert clock.sleeps == [0.5, 0.5, 0.5, 1]
    assert seen == [0, 0, 0, expected.total, expected.total]


def test_waiting_gives_up_at_the_deadline_and_says_what_is_missing(expected):
    gateway, clock = FakeGateway(), FakeClock()
    ticket, correlation_id = some(expected, REFUND_SHEET)
    append_row(gateway, REFUND_SHEET, ticket, correlation_id)

    report = wait_for_effects(
        gateway.snapshot,
        expected,
        deadline_seconds=2,
        poll_seconds=0.5,
        clock=clock,
        sleep=clock.sleep,
    )

    assert clock.now == 2
    assert not report.complete
    assert report.present == 1
    assert ticket.ticket_id not in report.checks[2].missing


def test_a_duplicate_appearing_while_settling_is_caught(expected, gateway):
    clock = FakeClock()
    ticket, correlation_id = some(expected, PRINT_SHEET)

    def late_retry(seconds: float) -> None:
        clock.sleep(seconds)
        append_row(gateway, PRINT_SHEET, ticket, correlation_id)

    report = wait_for_effects(
        gateway.snapshot,
        expected,
        deadline_seconds=5,
        settle_seconds=1,
        clock=clock,
        sleep=late_retry,
    )

    assert report.complete
    assert not report.ok
    assert report.checks[1].duplicated == (ticket.ticket_id,)


def test_a_gateway_that_never_answers_fails_at_the_deadline(expected):
    clock = FakeClock()

    def fetch() -> dict[str, Any]:
        raise GatewayUnavailable("connection refused")

    with pytest.raises(GatewayUnavailable, match="connection refused"):
        wait_for_effects(fetch, expected, deadline_seconds=3, clock=clock, sleep=clock.sleep)
    assert clock.now == 3


# The command ------------------------------------------------------------------------------


class Seller:
    """A stand-in for the service: takes webhooks and causes their effects at a fake gateway.

    `mode`: "correct"; "double-print" (every print row twice); "idle" (nothing reaches the
    gateway); "refuse" (every webhook answered 400).
    """

    def __init__(self, gateway: FakeGateway, mode: str) -> None:
        self.gateway = gateway
        self.mode = mode
        self.answers: dict[str, bytes] = {}
        # With a key, it refuses what is not signed with it, as a service with WEBHOOK_SECRET.
        self.key: bytes | None = None
        self.statuses: dict[str, str] = {}
        self.lock = threading.Lock()

    def take(self, key: str, correlation_id: str, body: dict[str, Any]) -> tuple[int, bytes]:
        if self.mode == "refuse":
            return 400, b'{"error": "refused"}'
        with self.lock:
            if key in self.answers:
                return 200, self.answers[key]
            for wire in body["tickets"]:
                self.apply(wire, correlation_id)
            self.answers[key] = json.dumps({"correlation_id": correlation_id}).encode()
            return 200, self.answers[key]

    def apply(self, wire: dict[str, Any], correlation_id: str) -> None:
        price = wire["price"]
        ticket = PlannedTicket(
            wire["ticket_id"], wire["customer_email"], price["amount"], price.get("currency")
        )
        before = self.statuses.get(ticket.ticket_id)
        if before == "canceled" or before == wire["status"] or self.mode == "idle":
            return
        self.statuses[ticket.ticket_id] = wire["status"]
        if wire["status"] == "confirmed":
            issue_receipt(self.gateway, ticket, correlation_id)
            for _ in range(2 if self.mode == "double-print" else 1):
                append_row(self.gateway, PRINT_SHEET, ticket, correlation_id)
        else:
            append_row(self.gateway, REFUND_SHEET, ticket, correlation_id)


@pytest.fixture
def fake_gateway() -> Iterator[tuple[FakeGateway, str]]:
    gateway = FakeGateway()
    server, url = start_in_thread(gateway)
    yield gateway, url
    server.stop()


def serve_seller(seller: Seller) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.answer(200, b"ok") if self.path == "/health" else self.answer(404, b"{}")

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers["Content-Length"]))
            if seller.key is not None:
                headers = {name.lower(): value for name, value in self.headers.items()}
                try:
                    verify(seller.key, headers=headers, body=raw, now=time.time())
                except WebhookAuthError as exc:
                    return self.answer(401, str(exc).encode())
            body = json.loads(raw)
            status, answer = seller.take(
                self.headers["Idempotency-Key"], self.headers["Correlation-ID"], body
            )
            self.answer(status, answer)

        def answer(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def seller_url(request, fake_gateway) -> Iterator[str]:
    mode = getattr(request, "param", "correct")
    seller = Seller(fake_gateway[0], mode.removesuffix("+signed"))
    seller.key = KEY if mode.endswith("+signed") else None
    yield from serve_seller(seller)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def simulate(
    seller_url: str, gateway_url: str, *args: str, stdout: io.StringIO | None = None, **kwargs: Any
) -> tuple[str, str]:
    out, err = stdout or io.StringIO(), io.StringIO()
    call_command(
        "simulate",
        "--url",
        seller_url,
        "--gateway",
        gateway_url,
        "--orders",
        "6",
        "--tickets-per-order",
        "4",
        "--cancel-rate",
        "0.5",
        "--repeat-rate",
        "0.5",
        "--unconfirmed-cancel-rate",
        "0.1",
        "--seed",
        "3",
        "--settle",
        "0",
        *args,
        stdout=out,
        stderr=err,
        **kwargs,
    )
    return out.getvalue(), err.getvalue()


def test_the_command_passes_when_every_effect_arrives_once(seller_url, fake_gateway):
    out, _ = simulate(seller_url, fake_gateway[1], stdout=Terminal())

    assert "OK: every expected effect is at the gateway, exactly once." in out
    assert "\rPosting  [" in out
    assert "\rWaiting  [" in out
    lines = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line}
    assert lines["receipts"][0] == lines["receipts"][1], "expected == present"
    assert lines["receipts"][2:] == ["0", "0", "0"]
    assert "Wrong content: 0. Wrong Correlation-ID: 0." in out


@pytest.mark.parametrize("seller_url", ["double-print"], indirect=True)
def test_the_command_fails_when_an_effect_is_duplicated(seller_url, fake_gateway):
    with pytest.raises(CommandError, match="duplicated") as error:
        simulate(seller_url, fake_gateway[1])

    assert error.value.returncode == 1


@pytest.mark.parametrize("seller_url", ["idle"], indirect=True)
def test_the_command_fails_when_effects_are_missing_at_the_deadline(seller_url, fake_gateway):
    with pytest.raises(CommandError, match=r"missing after the 0\.3s deadline") as error:
        simulate(seller_url, fake_gateway[1], "--deadline", "0.3")

    assert error.value.returncode == 1


@pytest.mark.parametrize("seller_url", ["refuse"], indirect=True)
def test_the_command_fails_when_the_service_refuses_webhooks(seller_url, fake_gateway):
    with pytest.raises(CommandError, match="not accepted") as error:
        simulate(seller_url, fake_gateway[1])

    assert error.value.returncode == 1


def test_a_gateway_without_fake_state_is_refused_unless_no_verify(seller_url, fake_gateway):
    not_a_fake = seller_url  # answers 404 to /fake-gateway/state

    with pytest.raises(CommandError, match="can only post") as error:
        simulate(seller_url, not_a_fake)
    assert error.value.returncode == 2
    assert fake_gateway[0].snapshot()["receipts"] == [], "nothing was posted"

    out, _ = simulate(seller_url, not_a_fake, "--no-verify")
    assert "Effects not verified (--no-verify)" in out
    assert fake_gateway[0].snapshot()["receipts"], "the webhooks were posted"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--orders", "0"], "--orders"),
        (["--cancel-rate", "1.5"], "--cancel-rate"),
        (["--repeat-rate", "-1"], "--repeat-rate"),
        (["--concurrency", "0"], "--concurrency"),
        (["--deadline", "0"], "--deadline"),
        (["--url", "ftp://x"], "--url"),
    ],
)
def test_bad_arguments_exit_with_2(args, message):
    nowhere = "http://127.0.0.1:9"  # checked before anything is asked of the network

    with pytest.raises(CommandError, match=message) as error:
        simulate(nowhere, nowhere, *args)

    assert error.value.returncode == 2


def test_a_service_that_does_not_answer_exits_with_2(fake_gateway):
    with pytest.raises(CommandError, match="does not answer") as error:
        simulate("http://127.0.0.1:9", fake_gateway[1])

    assert error.value.returncode == 2


# Signing ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_service_with_a_secret_accepts_the_simulators_signed_webhook(client: Client):
    webhook = plan(orders=1, tickets_per_order=2, cancel_rate=0, repeat_rate=0).webhooks[0]
    body, headers = webhook_request(webhook, KEY, now=time.time())

    with override_settings(WEBHOOK_SECRET=SECRET):
        response = client.post(
            "/tickets-status", body, content_type="application/json", headers=headers
        )

    assert response.status_code == 200, response.content
    assert Ticket.objects.count() == 2


@pytest.mark.django_db
def test_the_service_with_a_secret_refuses_the_simulators_unsigned_webhook(client: Client):
    webhook = plan(orders=1, tickets_per_order=2, cancel_rate=0, repeat_rate=0).webhooks[0]
    body, headers = webhook_request(webhook, None, now=time.time())

    with override_settings(WEBHOOK_SECRET=SECRET):
        response = client.post(
            "/tickets-status", body, content_type="application/json", headers=headers
        )

    assert response.status_code == 401
    assert Ticket.objects.count() == 0


@pytest.mark.parametrize("seller_url", ["correct+signed"], indirect=True)
def test_the_command_signs_with_secret_and_a_signing_service_accepts_it(seller_url, fake_gateway):
    out, _ = simulate(seller_url, fake_gateway[1], "--secret", SECRET)

    assert "OK: every expected effect is at the gateway, exactly once." in out


@pytest.mark.parametrize("seller_url", ["correct+signed"], indirect=True)
def test_the_command_signs_with_webhook_secret_by_default(seller_url, fake_gateway):
    with override_settings(WEBHOOK_SECRET=SECRET):
        out, _ = simulate(seller_url, fake_gateway[1])

    assert "OK: every expected effect is at the gateway, exactly once." in out


@pytest.mark.parametrize("seller_url", ["correct+signed"], indirect=True)
def test_unsigned_webhooks_are_refused_by_a_signing_service(seller_url, fake_gateway):
    with override_settings(WEBHOOK_SECRET=""), pytest.raises(CommandError, match="not accepted"):
        simulate(seller_url, fake_gateway[1])


def test_a_malformed_secret_exits_with_2():
    nowhere = "http://127.0.0.1:9"

    with pytest.raises(CommandError, match="--secret") as error:
        simulate(nowhere, nowhere, "--secret", "not-a-secret")

    assert error.value.returncode == 2
