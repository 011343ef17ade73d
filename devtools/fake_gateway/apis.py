"""The fake gateway's APIs: Receipts, Payments and Spreadsheets, emulated in memory.

They speak the wire contracts of docs/GATEWAY_API.md, record the Correlation-ID of
every call next to what the call created, inject the failures `FaultConfig` asks for (500s
before or after the write, 429s, whole APIs down, latency), and expose their state under
`/fake-gateway/`. The state sits behind one lock, so tests may call `FakeGateway` directly from
any thread; `server.py` carries it over HTTP.

Split by concern: this module routes, injects the failures and keeps the state;
`wire.py` parses requests and shapes the records, `persistence.py` saves and loads the state.
"""

from __future__ import annotations

import random
import re
import threading
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from functools import partial
from typing import Any
from urllib.parse import unquote

from devtools.fake_gateway.drift import apply_drift, parse_drift
from devtools.fake_gateway.faults import ConfigError, FaultConfig
from devtools.fake_gateway.wire import (
    BadRequest,
    _calls_param,
    _now_iso,
    _page_params,
    _parse_json_object,
    _receipt_wire,
    _record_once,
    _required_str,
    no_route_reply,
)
from devtools.http_server import Reply, error_reply, json_reply

CALLS_KEPT = 100_000
INSPECTION_PREFIX = "/fake-gateway/"

# What a broken proxy in front of an API may answer: HTML, a NUL, bytes that are not UTF-8.
GARBAGE_BODY = (
    b"<html><body><h1>502 Bad Gateway</h1>\x00\xff\xfe\xc3\x28 upstream \xed\xa0\x80"
    b" reset\x00</body></html>"
)

_SHEET_ROWS = re.compile(r"^/spreadsheets-api/sheets/([^/]+)/rows$")
_SHEET_DRIFT = re.compile(r"^/fake-gateway/sheets/([^/]+)/drift$")


# What a load balancer in front of an API answers while the API is away: 200, and HTML.
MAINTENANCE_PAGE = (
    b"<!DOCTYPE html><html><head><title>Down for maintenance</title></head>"
    b"<body><h1>We'll be right back</h1><p>ada@example.com, sorry!</p></body></html>"
)
# Where the fake's injected redirects point: another host, as an API that moved would.
REDIRECT_LOCATION = "https://moved.example.com"
_WRITES = {("PUT", "receipts"), ("PUT", "payments"), ("POST", "spreadsheets")}


# An API operation, validated and ready: runs under the gateway's lock with the call's
# Correlation-ID and answers (status, JSON payload).
Operation = Callable[[str | None], tuple[int, Any]]


@dataclass
class GatewayState:
    """Everything the fake APIs remember. Only touched under `FakeGateway._lock`."""

    receipts: list[dict[str, Any]] = field(default_factory=list)
    receipts_by_key: dict[str, dict[str, Any]] = field(default_factory=dict)
    voids: list[dict[str, Any]] = field(default_factory=list)
    voids_by_id: dict[str, dict[str, Any]] = field(default_factory=dict)
    refunds: list[dict[str, Any]] = field(default_factory=list)
    refunds_by_id: dict[str, dict[str, Any]] = field(default_factory=dict)
    sheets: dict[str, list[list[str]]] = field(default_factory=dict)
    sheet_rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    calls: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=CALLS_KEPT))
    call_count: int = 0
    status_counts: Counter[int] = field(default_factory=Counter)
    injected: Counter[str] = field(default_factory=Counter)


class FakeGateway:
    """The APIs' behaviour and state, independent of the HTTP server that carries it."""

    def __init__(self, config: FaultConfig | None = None) -> None:
        self._lock = threading.Lock()
        self._config = config or FaultConfig()
        self._random = random.Random(self._config.seed)
        self._state = GatewayState()

    @property
    def config(self) -> FaultConfig:
        return self._config

    def configure(self, changes: Mapping[str, Any]) -> FaultConfig:
        """Merge `changes` into the running config; a new `seed` reseeds the random source."""
        with self._lock:
            config = self._config.merged(changes)
            if "seed" in changes:
                self._random.seed(config.seed)
            self._config = config
            return config

    def reset(self) -> None:
        """Forget every receipt, void, refund, row and call; the config stays."""
        with self._lock:
            self._state = GatewayState()

    def snapshot(self, *, calls: int | None = None) -> dict[str, Any]:
        """A copy of the state, safe to serialise outside the lock. `calls` keeps the newest N."""
        with self._lock:
            state = self._state
            kept = list(state.calls)
            if calls is not None:
                kept = kept[len(kept) - calls :] if calls else []
            return {
                "receipts": [
                    {**r, "correlation_ids": list(r["correlation_ids"])} for r in state.receipts
                ],
                "voids": list(state.voids),
                "refunds": list(state.refunds),
                "sheets": {name: list(rows) for name, rows in state.sheets.items()},
                "sheet_rows": {name: list(rows) for name, rows in state.sheet_rows.items()},
                "calls": kept,
                "stats": {
                    "calls": state.call_count,
                    "by_status": {str(k): v for k, v in sorted(state.status_counts.items())},
                    "injected": dict(state.injected),
                },
                "config": self._config.as_json(),
            }

    def latency_seconds(self, path: str, method: str = "GET") -> float:
        """The injected latency for a call to `path`: the server waits it out before `handle`."""
        if path.startswith(INSPECTION_PREFIX):
            return 0.0
        config = self._config
        if method == "POST" and _SHEET_ROWS.match(path):
            return (config.latency_ms + config.append_latency_ms) / 1000
        return config.latency_ms / 1000

    def handle(
        self,
        method: str,
        target: str,
        body: bytes,
        correlation_id: str | None,
        traceparent: str | None = None,
    ) -> Reply:
        """Answer one HTTP request (injected latency is the server's job).

        A call's W3C `traceparent`, when it has one, is kept with it: a test can then follow
        a trace into the gateway."""
        path, _, query = target.partition("?")
        if path.startswith(INSPECTION_PREFIX):
            return self._handle_inspection(method, path, query, body)
        config = self._config
        route = self._route(method, path, query, json_404s=config.json_404s)
        if isinstance(route, Reply):
            return route
        api, prepare = route
        operation: Operation | None = None
        problem = ""
        try:
            operation = prepare(body)
        except BadRequest as exc:
            problem = str(exc)
        with self._lock:
            reply = self._inject_before(api, config)
            if reply is None and (method, api) in _WRITES:
                reply = self._inject_not_the_api(method, path, config)
            if reply is None:
                if operation is None:
                    status, payload = 400, {"error": problem}
                else:
                    status, payload = operation(correlation_id)
                    rate = config.fail_after_write_rate
                    if rate and status < 300 and self._random.random() < rate:
                        self._state.injected["fail_after_write"] += 1
                        status, payload = 500, {"error": "injected failure after the write"}
            else:
                status, payload = reply.status, None
            self._record_call(method, path, api, correlation_id, status, traceparent)
        if reply is None:
            reply = json_reply(status, payload)
        if config.garbage_bodies and reply.status >= 500:
            return Reply(reply.status, GARBAGE_BODY, reply.headers)
        return reply

    def _route(
        self, method: str, path: str, query: str = "", *, json_404s: bool = False
    ) -> tuple[str, Callable[[bytes], Operation]] | Reply:
        allowed: tuple[str, ...]
        if path == "/receipts-api/receipts":
            allowed, api, prepare = ("PUT",), "receipts", self._prepare_receipt
        elif path == "/receipts-api/void-receipt":
            allowed, api, prepare = ("PUT",), "receipts", self._prepare_void
        elif path == "/payments-api/refunds":
            allowed, api, prepare = ("PUT",), "payments", self._prepare_refund
        elif match := _SHEET_ROWS.match(path):
            sheet = unquote(match.group(1))
            allowed, api = ("GET", "POST"), "spreadsheets"
            if method == "POST":
                prepare = partial(self._prepare_append, sheet=sheet)
            else:
                prepare = partial(self._prepare_rows, sheet=sheet, query=query)
        else:
            return no_route_reply(method, path, as_json=json_404s)
        if method not in allowed:
            return error_reply(
                405, f"{method} is not allowed on {path}", (("Allow", ", ".join(allowed)),)
            )
        return api, prepare

    def _inject_before(self, api: str, config: FaultConfig) -> Reply | None:
        """The failures decided before doing anything. Called under the lock."""
        injected = self._state.injected
        if api in config.down:
            injected["down"] += 1
            return error_reply(503, f"the {api} API is down (injected)")
        if config.rate_limit_rate and self._random.random() < config.rate_limit_rate:
            injected["rate_limit"] += 1
            return error_reply(
                429,
                "too many requests (injected)",
                (("Retry-After", str(config.retry_after_seconds)),),
            )
        if config.failure_rate and self._random.random() < config.failure_rate:
            injected["failure"] += 1
            return error_reply(500, "injected failure")
        return None

    def _inject_not_the_api(self, method: str, path: str, config: FaultConfig) -> Reply | None:
        """A write answered by something in front of the API, which did nothing. Under the lock."""
        injected = self._state.injected
        if config.fake_success_rate and self._random.random() < config.fake_success_rate:
            injected["fake_success"] += 1
            return Reply(200, MAINTENANCE_PAGE, content_type="text/html; charset=utf-8")
        if config.redirect_rate and self._random.random() < config.redirect_rate:
            injected["redirect"] += 1
            return Reply(
                301,
                b"",
                (("Location", f"{REDIRECT_LOCATION}{path}"),),
                content_type="text/plain",
            )
        return None

    def _record_call(
        self,
        method: str,
        path: str,
        api: str,
        correlation_id: str | None,
        status: int,
        traceparent: str | None = None,
    ) -> None:
        state = self._state
        state.call_count += 1
        state.status_counts[status] += 1
        call: dict[str, Any] = {
            "seq": state.call_count,
            "method": method,
            "path": path,
            "api": api,
            "correlation_id": correlation_id,
            "status": status,
        }
        if traceparent is not None:
            call["traceparent"] = traceparent
        state.calls.append(call)

    def _prepare_receipt(self, raw: bytes) -> Operation:
        body = _parse_json_object(raw)
        ticket_id = _required_str(body, "ticket_id")
        price = body.get("price")
        if price is None:
            raise BadRequest("price is required")
        if not isinstance(price, dict):
            raise BadRequest("price must be an object with money_amount and money_currency")
        amount = _required_str(price, "money_amount", "price.money_amount")
        try:
            Decimal(amount)
        except InvalidOperation as exc:
            raise BadRequest(f"price.money_amount is not a decimal: {amount!r}") from exc
        currency = _required_str(price, "money_currency", "price.money_currency")
        key = _required_str(body, "idempotency_key")

        def issue(correlation_id: str | None) -> tuple[int, Any]:
            state = self._state
            existing = state.receipts_by_key.get(key)
            if existing is not None:
                if existing["ticket_id"] != ticket_id:
                    return 400, {
                        "error": f"idempotency_key {key!r} was already used for ticket "
                        f"{existing['ticket_id']!r}, not {ticket_id!r}"
                    }
                existing["correlation_ids"].append(correlation_id)
                return 200, _receipt_wire(existing)
            receipt = {
                "ticket_id": ticket_id,
                "number": f"R-{len(state.receipts) + 1:06d}",
                "issued_at": _now_iso(),
                "price": {"money_amount": amount, "money_currency": currency},
                "idempotency_key": key,
                "correlation_id": correlation_id,
                "correlation_ids": [correlation_id],
            }
            state.receipts.append(receipt)
            state.receipts_by_key[key] = receipt
            return 201, _receipt_wire(receipt)

        return issue

    def _prepare_void(self, raw: bytes) -> Operation:
        body = _parse_json_object(raw)
        ticket_id = _required_str(body, "ticket_id")
        reason = _required_str(body, "reason")
        key = _required_str(body, "idempotent_id")

        def void(correlation_id: str | None) -> tuple[int, Any]:
            state = self._state
            return _record_once(
                state.voids,
                state.voids_by_id,
                {"ticket_id": ticket_id, "reason": reason, "idempotent_id": key},
                key_field="idempotent_id",
                subject_field="ticket_id",
                correlation_id=correlation_id,
                created_status=200,
            )

        return void

    def _prepare_refund(self, raw: bytes) -> Operation:
        body = _parse_json_object(raw)
        reference = _required_str(body, "payment_reference")
        reason = _required_str(body, "reason")
        key = _required_str(body, "deduplication_id")

        def refund(correlation_id: str | None) -> tuple[int, Any]:
            state = self._state
            return _record_once(
                state.refunds,
                state.refunds_by_id,
                {"payment_reference": reference, "reason": reason, "deduplication_id": key},
                key_field="deduplication_id",
                subject_field="payment_reference",
                correlation_id=correlation_id,
                created_status=201,
            )

        return refund

    def _prepare_append(self, raw: bytes, sheet: str) -> Operation:
        body = _parse_json_object(raw)
        columns = body.get("columns")
        if columns is None:
            raise BadRequest("columns is required")
        if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
            raise BadRequest("columns must be a list of strings")

        def append(correlation_id: str | None) -> tuple[int, Any]:
            # No idempotency on purpose: the real API appends a duplicate on every retry.
            state = self._state
            rows = state.sheets.setdefault(sheet, [])
            rows.append(columns)
            state.sheet_rows.setdefault(sheet, []).append(
                {"columns": columns, "correlation_id": correlation_id, "appended_at": _now_iso()}
            )
            return 201, {"sheet": sheet, "row": len(rows)}

        return append

    def _prepare_rows(self, raw: bytes, sheet: str, query: str = "") -> Operation:
        # `?offset=&limit=` reads one page (the reconcile's bounded reads); without them, the
        # whole sheet, as the contract has it.
        page = _page_params(query)

        def rows(correlation_id: str | None) -> tuple[int, Any]:
            stored = self._state.sheets.get(sheet, [])
            if page is None:
                return 200, {"rows": list(stored)}
            offset, limit = page
            chunk = stored[offset : offset + limit]
            after = offset + len(chunk)
            return 200, {"rows": chunk, "next_offset": after if after < len(stored) else None}

        return rows

    def plant_drift(self, sheet: str, changes: Mapping[str, Any]) -> int:
        """Delete, duplicate or change a ticket's row, or add one (devtools/fake_gateway/drift.py);
        the rows touched. Raises BadRequest naming the problem, changing nothing."""
        drift = parse_drift(dict(changes))
        with self._lock:
            return apply_drift(self._state.sheets, self._state.sheet_rows, sheet, drift)

    def load_rows(self, sheet: str, rows: list[list[str]]) -> None:
        """Put rows on a sheet at once, for the reconcile's benchmark (no calls recorded)."""
        with self._lock:
            self._state.sheets.setdefault(sheet, []).extend(rows)

    def _handle_inspection(self, method: str, path: str, query: str, raw: bytes) -> Reply:
        if path == "/fake-gateway/state" and method == "GET":
            try:
                calls = _calls_param(query)
            except BadRequest as exc:
                return error_reply(400, str(exc))
            return json_reply(200, self.snapshot(calls=calls))
        if path == "/fake-gateway/reset" and method == "POST":
            self.reset()
            return json_reply(200, {"reset": True})
        if path == "/fake-gateway/control" and method == "GET":
            return json_reply(200, self._config.as_json())
        if path == "/fake-gateway/control" and method == "POST":
            try:
                changes = _parse_json_object(raw)
                return json_reply(200, self.configure(changes).as_json())
            except (BadRequest, ConfigError) as exc:
                return error_reply(400, str(exc))
        if match := _SHEET_DRIFT.match(path):
            if method != "POST":
                return error_reply(405, f"{method} is not allowed on {path}", (("Allow", "POST"),))
            sheet = unquote(match.group(1))
            try:
                touched = self.plant_drift(sheet, _parse_json_object(raw))
            except BadRequest as exc:
                return error_reply(400, str(exc))
            return json_reply(200, {"sheet": sheet, "rows_touched": touched})
        known = {"/fake-gateway/state": "GET", "/fake-gateway/reset": "POST"}
        if path in known:
            return error_reply(405, f"{method} is not allowed on {path}", (("Allow", known[path]),))
        if path == "/fake-gateway/control":
            return error_reply(405, f"{method} is not allowed on {path}", (("Allow", "GET, POST"),))
        return error_reply(404, f"no route for {method} {path}")
