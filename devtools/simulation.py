"""The webhook simulator behind `manage.py simulate`: plan, post, check.

It plays the ticket seller: it plans realistic orders (a seeded, reproducible plan), posts
their webhooks to the service the way a seller does (retrying what did not answer 200, with
the same Idempotency-Key, and repeating some on purpose), then watches the fake gateway's
`/fake-gateway/state` until every effect the plan implies is there, once.

Effects are judged only for the tickets of this run, so the gateway may hold anything else.
"""

from __future__ import annotations

import json
import random
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

import requests

from devtools.sessions import thread_session
from outbox.correlation import HEADER as CORRELATION_HEADER
from tickets.intake.signature import ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
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
_TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


class PlanError(ValueError):
    """A bad planning parameter; `field` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class GatewayUnavailable(Exception):
    """The fake gateway's state could not be read."""


# Planning ---------------------------------------------------------------------------------


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


# Posting ----------------------------------------------------------------------------------


@dataclass(slots=True)
class PostReport:
    sent: int = 0
    accepted: int = 0
    repeats: int = 0
    retries: int = 0
    rejected: list[str] = field(default_factory=list)
    repeat_mismatches: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.rejected and not self.repeat_mismatches


PostProgress = Callable[[int, int], None]


class WebhookPoster:
    """Posts webhooks like a seller: what does not answer 200 is sent again, same key."""

    def __init__(
        self,
        service_url: str,
        *,
        concurrency: int = 4,
        timeout: float = 30.0,
        max_tries: int = 5,
        backoff_seconds: float = 0.2,
        key: bytes | None = None,
    ) -> None:
        self.url = f"{service_url.rstrip('/')}/tickets-status"
        # The decoded WEBHOOK_SECRET: with it every post is signed as docs/SECURITY.md asks.
        self.key = key
        self.concurrency = concurrency
        self.timeout = timeout
        self.max_tries = max_tries
        self.backoff_seconds = backoff_seconds

    def post_all(
        self, phases: Sequence[Sequence[Webhook]], on_progress: PostProgress | None = None
    ) -> PostReport:
        """Send each phase in parallel, a phase only once the previous one has answered."""
        report = PostReport()
        answers: dict[str, Any] = {}
        total = sum(len(phase) for phase in phases)
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            for phase in phases:
                futures = {pool.submit(self._post, webhook): webhook for webhook in phase}
                for future in as_completed(futures):
                    status, answer, tries = future.result()
                    self._record(report, answers, futures[future], status, answer, tries)
                    if on_progress is not None:
                        on_progress(report.sent, total)
        report.seconds = time.monotonic() - started
        return report

    def _record(
        self,
        report: PostReport,
        answers: dict[str, Any],
        webhook: Webhook,
        status: int | None,
        answer: Any,
        tries: int,
    ) -> None:
        report.sent += 1
        report.retries += tries - 1
        report.repeats += webhook.repeat
        key = webhook.idempotency_key
        if status != 200:
            report.rejected.append(f"{key}: {answer}")
            return
        report.accepted += 1
        if not webhook.repeat:
            answers[key] = answer
        elif key in answers and answers[key] != answer:
            report.repeat_mismatches.append(
                f"{key}: first answer {answers[key]!r}, repeat answered {answer!r}"
            )

    def _post(self, webhook: Webhook) -> tuple[int | None, Any, int]:
        """(status, parsed answer or error text, tries). Never raises."""
        problem = ""
        for attempt in range(1, self.max_tries + 1):
            # Signed per attempt: a retry is the same message (same id), sent at a new time.
            body, headers = webhook_request(webhook, self.key, now=time.time())
            try:
                response = thread_session().post(
                    self.url, data=body, headers=headers, timeout=self.timeout
                )
            except requests.RequestException as exc:
                problem = f"{exc.__class__.__name__}: {exc}"
            else:
                if response.status_code == 200:
                    return 200, _json_or_text(response), attempt
                problem = f"HTTP {response.status_code}: {response.text[:300]}"
                if response.status_code not in _TRANSIENT_STATUSES:
                    return response.status_code, problem, attempt
            if attempt < self.max_tries:
                time.sleep(self.backoff_seconds * 2 ** (attempt - 1))
        return None, f"no 200 after {self.max_tries} tries; last: {problem}", self.max_tries


def webhook_request(
    webhook: Webhook, key: bytes | None, *, now: float
) -> tuple[bytes, dict[str, str]]:
    """The raw body and headers of one post; signed (Standard Webhooks) when `key` is given.

    The body is serialized here, once, because the signature covers its exact bytes. The
    message id is the Idempotency-Key's: a repeat is the same message sent again, which the
    service answers from its first answer either way.
    """
    body = json.dumps(webhook.body).encode()
    headers = {
        "Content-Type": "application/json",
        "Idempotency-Key": webhook.idempotency_key,
        CORRELATION_HEADER: webhook.correlation_id,
    }
    if key is not None:
        webhook_id = webhook.idempotency_key
        timestamp = int(now)
        headers[ID_HEADER] = webhook_id
        headers[TIMESTAMP_HEADER] = str(timestamp)
        headers[SIGNATURE_HEADER] = sign(key, webhook_id=webhook_id, timestamp=timestamp, body=body)
    return body, headers


def _json_or_text(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text


def service_problem(service_url: str, *, timeout: float = 5.0) -> str | None:
    """Why the service cannot take webhooks (its /health does not answer 200), or None."""
    url = f"{service_url.rstrip('/')}/health"
    try:
        response = requests.get(url, timeout=timeout)
    except requests.RequestException as exc:
        return f"GET {url} failed: {exc.__class__.__name__}: {exc}"
    if response.status_code != 200:
        return f"GET {url} answered {response.status_code}: {response.text[:200]}"
    return None


# Checking ---------------------------------------------------------------------------------


class GatewayInspector:
    """Reads what a fake gateway recorded, through `GET /fake-gateway/state`."""

    def __init__(self, base_url: str, *, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    @property
    def state_url(self) -> str:
        return f"{self.base_url}/fake-gateway/state"

    def problem(self) -> str | None:
        """Why effects cannot be checked at this gateway, or None when it is a fake gateway."""
        try:
            self.state()
        except GatewayUnavailable as exc:
            return str(exc)
        return None

    def state(self) -> dict[str, Any]:
        try:
            response = requests.get(self.state_url, params={"calls": 0}, timeout=self.timeout)
        except requests.RequestException as exc:
            raise GatewayUnavailable(
                f"GET {self.state_url} failed: {exc.__class__.__name__}: {exc}"
            ) from exc
        if response.status_code != 200:
            raise GatewayUnavailable(
                f"GET {self.state_url} answered {response.status_code}, so {self.base_url} is "
                "not a fake gateway (devtools/fake_gateway/)"
            )
        try:
            state = response.json()
        except ValueError:
            state = None
        if not isinstance(state, dict) or not isinstance(state.get("receipts"), list):
            raise GatewayUnavailable(
                f"GET {self.state_url} did not answer a fake gateway's state (no receipts list)"
            )
        return state


@dataclass(frozen=True, slots=True)
class EffectRecord:
    """One receipt or sheet row at the gateway, reduced to what is checked."""

    ticket_id: str
    content: tuple[str, ...]
    correlation_ids: tuple[str | None, ...]


@dataclass(frozen=True, slots=True)
class EffectCheck:
    effect: str
    expected: int
    present: int
    missing: tuple[str, ...] = ()
    duplicated: tuple[str, ...] = ()
    unexpected: tuple[str, ...] = ()
    wrong_content: tuple[str, ...] = ()
    wrong_correlation: tuple[str, ...] = ()

    @property
    def complete(self) -> bool:
        return not self.missing

    @property
    def ok(self) -> bool:
        return not (
            self.missing
            or self.duplicated
            or self.unexpected
            or self.wrong_content
            or self.wrong_correlation
        )


@dataclass(frozen=True, slots=True)
class EffectsReport:
    checks: tuple[EffectCheck, ...]

    @property
    def complete(self) -> bool:
        return all(check.complete for check in self.checks)

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    @property
    def expected(self) -> int:
        return sum(check.expected for check in self.checks)

    @property
    def present(self) -> int:
        return sum(check.present for check in self.checks)


def effect_records(state: Mapping[str, Any], effect: str) -> list[EffectRecord]:
    """The receipts, or the rows of one sheet, in a fake gateway's state."""
    if effect == RECEIPTS:
        records = []
        for receipt in state.get("receipts", []):
            price = receipt.get("price") or {}
            records.append(
                EffectRecord(
                    ticket_id=str(receipt.get("ticket_id")),
                    content=(
                        str(price.get("money_amount")),
                        str(price.get("money_currency")),
                    ),
                    correlation_ids=tuple(
                        receipt.get("correlation_ids") or [receipt.get("correlation_id")]
                    ),
                )
            )
        return records
    return [
        EffectRecord(
            ticket_id=str(row["columns"][0]) if row.get("columns") else "",
            content=tuple(str(column) for column in row.get("columns") or ()),
            correlation_ids=(row.get("correlation_id"),),
        )
        for row in state.get("sheet_rows", {}).get(effect, [])
    ]


def check_effects(expected: ExpectedEffects, state: Mapping[str, Any]) -> EffectsReport:
    """Compare the gateway's state with the plan, for the plan's tickets only."""
    checks = []
    for effect in EFFECTS:
        wanted = expected.by_effect.get(effect, {})
        found: dict[str, list[EffectRecord]] = defaultdict(list)
        for record in effect_records(state, effect):
            if record.ticket_id in expected.tickets:
                found[record.ticket_id].append(record)
        wrong_content, wrong_correlation = [], []
        for ticket_id, records in found.items():
            ticket = expected.tickets[ticket_id]
            if ticket_id in wanted and any(
                c != wanted[ticket_id] for r in records for c in r.correlation_ids
            ):
                wrong_correlation.append(ticket_id)
            if not all(_content_matches(effect, ticket, r.content) for r in records):
                wrong_content.append(ticket_id)
        checks.append(
            EffectCheck(
                effect=effect,
                expected=len(wanted),
                present=sum(1 for ticket_id in wanted if found.get(ticket_id)),
                missing=_sorted(t for t in wanted if not found.get(t)),
                duplicated=_sorted(t for t, records in found.items() if len(records) > 1),
                unexpected=_sorted(t for t in found if t not in wanted),
                wrong_content=_sorted(wrong_content),
                wrong_correlation=_sorted(wrong_correlation),
            )
        )
    return EffectsReport(tuple(checks))


def _sorted(ticket_ids: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted(ticket_ids))


def _content_matches(effect: str, ticket: PlannedTicket, content: tuple[str, ...]) -> bool:
    if effect == RECEIPTS:
        amount, currency = content
        return _same_amount(amount, ticket.amount) and currency == ticket.billed_currency
    if len(content) != 4:
        return False
    ticket_id, email, amount, currency = content
    return (
        ticket_id == ticket.ticket_id
        and email == ticket.customer_email
        and _same_amount(amount, ticket.amount)
        and currency == ticket.billed_currency
    )


def _same_amount(found: str, planned: str) -> bool:
    try:
        return Decimal(found) == Decimal(planned)
    except InvalidOperation:
        return False


WaitProgress = Callable[[EffectsReport, float], None]


def wait_for_effects(
    fetch_state: Callable[[], Mapping[str, Any]],
    expected: ExpectedEffects,
    *,
    deadline_seconds: float,
    settle_seconds: float = 1.0,
    poll_seconds: float = 0.5,
    on_progress: WaitProgress | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> EffectsReport:
    """Poll until every expected effect is present or the deadline passes.

    Once everything is present it looks once more after `settle_seconds`, so a duplicate
    appended by a late retry is still caught. A gateway that stops answering is polled again
    until the deadline; GatewayUnavailable only when it never answered at all.
    """
    started = clock()
    report: EffectsReport | None = None
    last_error: GatewayUnavailable | None = None

    def look() -> None:
        nonlocal report, last_error
        try:
            report = check_effects(expected, fetch_state())
        except GatewayUnavailable as exc:
            last_error = exc
            return
        if on_progress is not None:
            on_progress(report, clock() - started)

    while True:
        look()
        if report is not None and report.complete:
            if settle_seconds > 0:
                sleep(settle_seconds)
                look()
            return report
        remaining = deadline_seconds - (clock() - started)
        if remaining <= 0:
            if report is None:
                raise last_error or GatewayUnavailable("the gateway never answered")
            return report
        sleep(min(poll_seconds, remaining))
