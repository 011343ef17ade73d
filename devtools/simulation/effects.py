"""The simulator's check: the fake gateway's state read back and compared with the plan's
effects, each present once with its Correlation-ID, polled until complete or out of time."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import requests

from devtools.simulation.plan import EFFECTS, RECEIPTS, ExpectedEffects, PlannedTicket


class GatewayUnavailable(Exception):
    """The fake gateway's state could not be read."""


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
