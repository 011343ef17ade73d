"""The simulator's plan: realistic orders, seeded and reproducible, the webhooks they send and
the effects those must cause."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tickets.kinds import PRINT_SHEET, REFUND_SHEET

RECEIPTS = "receipts"
EFFECTS = (RECEIPTS, PRINT_SHEET, REFUND_SHEET)
DEFAULT_CURRENCY = "USD"

_FIRST_NAMES = (
    "ada", "alan", "barbara", "claude", "donald", "edsger", "frances", "grace", "john",
    "katherine", "ken", "leslie", "margaret", "niklaus", "radia", "tim", "tony", "yukihiro",
)  # fmt: skip
_LAST_NAMES = (
    "lovelace", "turing", "liskov", "shannon", "knuth", "dijkstra", "allen", "hopper",
    "backus", "johnson", "thompson", "lamport", "hamilton", "wirth", "perlman", "hoare",
)  # fmt: skip
_DOMAINS = ("example.com", "example.org", "example.net", "mail.example")
# A missing currency (None) means USD: the contract's default, billed as such.
_CURRENCIES = ("EUR", "EUR", "EUR", "USD", "GBP", "PLN", None, None)


class PlanError(ValueError):
    """A bad planning parameter; `field` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True)
class PlannedTicket:
    ticket_id: str
    customer_email: str
    amount: str
    currency: str | None  # None: sent without a currency
    booking_id: str | None = None

    @property
    def billed_currency(self) -> str:
        return self.currency or DEFAULT_CURRENCY

    def wire(self, status: str) -> dict[str, Any]:
        price: dict[str, str] = {"amount": self.amount}
        if self.currency is not None:
            price["currency"] = self.currency
        ticket: dict[str, Any] = {
            "ticket_id": self.ticket_id,
            "status": status,
            "customer_email": self.customer_email,
            "price": price,
        }
        if self.booking_id is not None:
            ticket["booking_id"] = self.booking_id
        return ticket


@dataclass(frozen=True, slots=True)
class Webhook:
    """One POST /tickets-status. Webhooks of a later phase go out after every earlier one."""

    order: int
    idempotency_key: str
    correlation_id: str
    body: dict[str, Any]
    phase: int
    repeat: bool = False

    @property
    def ticket_count(self) -> int:
        return len(self.body["tickets"])


@dataclass(frozen=True, slots=True)
class ExpectedEffects:
    """Per effect, the tickets that must have it exactly once, each with the Correlation-ID
    of the webhook that caused it. Tickets not listed under an effect must not have it."""

    tickets: Mapping[str, PlannedTicket]
    by_effect: Mapping[str, Mapping[str, str]]

    @property
    def total(self) -> int:
        return sum(len(ids) for ids in self.by_effect.values())


@dataclass(frozen=True, slots=True)
class SimulationPlan:
    run_id: str
    orders: int
    webhooks: tuple[Webhook, ...]
    expected: ExpectedEffects

    @property
    def tickets(self) -> int:
        return len(self.expected.tickets)

    @property
    def repeats(self) -> int:
        return sum(1 for webhook in self.webhooks if webhook.repeat)

    def phases(self) -> list[list[Webhook]]:
        grouped: dict[int, list[Webhook]] = defaultdict(list)
        for webhook in self.webhooks:
            grouped[webhook.phase].append(webhook)
        return [grouped[phase] for phase in sorted(grouped)]


def plan_simulation(
    *,
    orders: int,
    tickets_per_order: int,
    cancel_rate: float,
    repeat_rate: float = 0.1,
    unconfirmed_cancel_rate: float = 0.0,
    seed: int | None = None,
    run_id: str,
) -> SimulationPlan:
    """The webhooks to send and the effects they must cause; the same inputs, the same plan.

    Phase 0 sends each order's first webhook (its tickets confirmed, or with
    `unconfirmed_cancel_rate` already canceled). Phase 1 sends, for a `cancel_rate` share of
    orders, a webhook canceling some of their confirmed tickets, plus repeats of phase 0.
    Phase 2 repeats some cancel webhooks. A repeat has the key and the body of its original.
    """
    _check_count("orders", orders)
    _check_count("tickets_per_order", tickets_per_order)
    for name, rate in (
        ("cancel_rate", cancel_rate),
        ("repeat_rate", repeat_rate),
        ("unconfirmed_cancel_rate", unconfirmed_cancel_rate),
    ):
        if not 0.0 <= rate <= 1.0:
            raise PlanError(name, f"{name} must be between 0 and 1, got {rate}")
    if not run_id or not all(c.isalnum() or c in "-_." for c in run_id):
        raise PlanError(
            "run_id", f"run_id must be letters, digits, '-', '_' or '.', got {run_id!r}"
        )

    rand = random.Random(seed)
    tickets: dict[str, PlannedTicket] = {}
    expected: dict[str, dict[str, str]] = {effect: {} for effect in EFFECTS}
    phases: dict[int, list[Webhook]] = defaultdict(list)

    def send(webhook: Webhook) -> None:
        phases[webhook.phase].append(webhook)
        if rand.random() < repeat_rate:
            phases[webhook.phase + 1].append(
                Webhook(
                    order=webhook.order,
                    idempotency_key=webhook.idempotency_key,
                    correlation_id=webhook.correlation_id,
                    body=webhook.body,
                    phase=webhook.phase + 1,
                    repeat=True,
                )
            )

    for order in range(orders):
        prefix = f"sim-{run_id}-{order:05d}"
        correlation_id = f"{prefix}-corr"
        booking_id = f"{prefix}-booking" if rand.random() < 0.5 else None
        planned = [
            _plan_ticket(rand, f"{prefix}-{n:03d}", booking_id) for n in range(tickets_per_order)
        ]
        first: list[dict[str, Any]] = []
        confirmed: list[PlannedTicket] = []
        for ticket in planned:
            tickets[ticket.ticket_id] = ticket
            if rand.random() < unconfirmed_cancel_rate:
                first.append(ticket.wire("canceled"))
                expected[REFUND_SHEET][ticket.ticket_id] = correlation_id
            else:
                first.append(ticket.wire("confirmed"))
                confirmed.append(ticket)
                expected[RECEIPTS][ticket.ticket_id] = correlation_id
                expected[PRINT_SHEET][ticket.ticket_id] = correlation_id
        send(Webhook(order, f"{prefix}-confirm", correlation_id, {"tickets": first}, phase=0))
        if confirmed and rand.random() < cancel_rate:
            canceled = rand.sample(confirmed, rand.randint(1, len(confirmed)))
            canceled.sort(key=lambda ticket: ticket.ticket_id)
            for ticket in canceled:
                expected[REFUND_SHEET][ticket.ticket_id] = correlation_id
            body = {"tickets": [ticket.wire("canceled") for ticket in canceled]}
            send(Webhook(order, f"{prefix}-cancel", correlation_id, body, phase=1))

    webhooks: list[Webhook] = []
    for phase in sorted(phases):
        batch = phases[phase]
        rand.shuffle(batch)
        webhooks += batch
    return SimulationPlan(
        run_id=run_id,
        orders=orders,
        webhooks=tuple(webhooks),
        expected=ExpectedEffects(tickets=tickets, by_effect=expected),
    )


def _check_count(name: str, value: int) -> None:
    if value < 1:
        raise PlanError(name, f"{name} must be at least 1, got {value}")


def _plan_ticket(rand: random.Random, ticket_id: str, booking_id: str | None) -> PlannedTicket:
    first, last = rand.choice(_FIRST_NAMES), rand.choice(_LAST_NAMES)
    email = f"{first}.{last}{rand.randint(1, 999)}@{rand.choice(_DOMAINS)}"
    cents = rand.choice((1500, 2500, 4999, 5000, 7550, 12000, 19999)) + rand.randint(0, 99)
    amount = f"{cents // 100}.{cents % 100:02d}"
    return PlannedTicket(ticket_id, email, amount, rand.choice(_CURRENCIES), booking_id)
