"""The one client layer for the gateway's APIs: timeouts, Correlation-ID, error mapping.

Every outbound call goes through `GatewayClient.call`, which turns whatever went wrong into
`TransientError` (connection errors, timeouts, 408, 429, 5xx) or `PermanentError` (other 4xx),
keeping the API's own error text. Handlers never touch `requests`.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from dataclasses import dataclass
from datetime import UTC
from decimal import Decimal
from email.utils import parsedate_to_datetime
from typing import Any

import requests
from django.conf import settings
from django.utils import timezone
from requests.adapters import HTTPAdapter
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from outbox import PermanentError, TransientError, before_external_call, outbox_settings, redact
from outbox.circuit import breaker_for
from outbox.correlation import HEADER as CORRELATION_HEADER

CONNECT_TIMEOUT = 3.05
READ_TIMEOUT = 10.0

_sessions: dict[str, requests.Session] = {}
_sessions_lock = threading.Lock()

# Connections a call in this thread takes from the pool, so its watchdog can cut them.
_watched = threading.local()


class _WatchedHTTPConnectionPool(HTTPConnectionPool):
    def _get_conn(self, timeout: float | None = None) -> Any:
        conn = super()._get_conn(timeout)
        holder = getattr(_watched, "connections", None)
        if holder is not None:
            holder.append(conn)
        return conn


class _WatchedHTTPSConnectionPool(HTTPSConnectionPool):
    def _get_conn(self, timeout: float | None = None) -> Any:
        conn = super()._get_conn(timeout)
        holder = getattr(_watched, "connections", None)
        if holder is not None:
            holder.append(conn)
        return conn


class DeadlineAdapter(HTTPAdapter):
    """An adapter whose connections a watchdog can cut at a call's total deadline.

    `requests` has only per-operation timeouts: an API that trickles a byte every few seconds
    keeps a call alive for ever. The deadline is what lets a lease bound every call.
    """

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _WatchedHTTPConnectionPool,
            "https": _WatchedHTTPSConnectionPool,
        }


class _Watchdog:
    """Shuts the call's sockets down when the deadline passes; the call then raises."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.fired = threading.Event()
        self.connections: list[Any] = []
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True

    def __enter__(self) -> _Watchdog:
        _watched.connections = self.connections
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()
        _watched.connections = None

    def _fire(self) -> None:
        self.fired.set()
        for conn in list(self.connections):
            sock = getattr(conn, "sock", None)
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


def shared_session(name: str) -> requests.Session:
    """One pooled session per API, shared by the relay's threads."""
    with _sessions_lock:
        session = _sessions.get(name)
        if session is None:
            session = requests.Session()
            size = max(10, int(outbox_settings().threads))
            adapter = DeadlineAdapter(pool_connections=4, pool_maxsize=size, max_retries=0)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            _sessions[name] = session
        return session


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as seconds: either a number or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # "-0000" means UTC with no zone named
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - timezone.now()).total_seconds())


def json_body(response: requests.Response, what: str) -> Any:
    """A success's JSON body; one that is not JSON (a proxy's page, say) is transient."""
    try:
        return response.json()
    except ValueError:
        raise TransientError(
            f"{what} answered {response.status_code} with a body that is not JSON: "
            f"{_snippet(response.text, 200)}",
            http_status=response.status_code,
        ) from None


def _error_text(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return _snippet(response.text, 500)
    if isinstance(body, dict) and "error" in body:
        return _snippet(str(body["error"]), 500)
    return _snippet(response.text, 500)


def _api_error(response: requests.Response) -> bool:
    """Whether the body is the APIs' own error object, `{"error": ...}`."""
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and "error" in body


def _refused(exc: BaseException) -> bool:
    """Whether a requests error comes from a refused connection (requests wraps it deep)."""
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ConnectionRefusedError):
            return True
        linked = [current.__cause__, current.__context__, getattr(current, "reason", None)]
        linked.extend(arg for arg in current.args if isinstance(arg, BaseException))
        pending.extend(item for item in linked if isinstance(item, BaseException))
    return False


def _snippet(text: str, limit: int) -> str:
    """An API's text for an error, which is stored and logged: an API may echo a row or a
    request, so customer emails go first (before the cut, so none is left half-redacted)."""
    return redact(text)[:limit]


@dataclass
class GatewayClient:
    api: str
    base_url: str = ""
    timeout: tuple[float, float] = (CONNECT_TIMEOUT, READ_TIMEOUT)

    def __post_init__(self) -> None:
        if not self.base_url:
            self.base_url = settings.GATEWAY_ADDR

    def call(
        self, method: str, path: str, *, correlation_id: str, json: Any = None
    ) -> requests.Response:
        url = f"{self.base_url}{path}"
        what = f"{method} {path}"
        breaker = breaker_for(self.api)
        breaker.before_call()  # raises CircuitOpen while the API rests after failures
        # Raises LeaseLost (nothing sent) when the task's lease would not outlive the call;
        # gives this thread's database connection back before the network wait.
        deadline = before_external_call()
        connect, read = self.timeout
        try:
            with _Watchdog(deadline) as watchdog:
                response = shared_session(self.api).request(
                    method,
                    url,
                    json=json,
                    headers={CORRELATION_HEADER: correlation_id} if correlation_id else None,
                    timeout=(min(connect, deadline), min(read, deadline)),
                )
        except requests.RequestException as exc:
            if _refused(exc):
                # Nothing listens there: every task would fail the same way. Rest the API.
                refused = (
                    f"{method} {url}: connection refused; check GATEWAY_ADDR ({self.base_url})"
                )
                breaker.record_failure(open_now=True, error=refused)
                raise TransientError(refused) from exc
            if watchdog.fired.is_set():
                failure = f"{what} did not finish within its {deadline:.1f}s deadline"
            elif isinstance(exc, requests.Timeout):
                failure = f"{what} timed out: {exc}"
            else:
                failure = f"{what} failed: {exc.__class__.__name__}: {exc}"
            breaker.record_failure(error=failure)
            raise TransientError(failure) from exc
        status = response.status_code
        if status < 400:
            breaker.record_success()
            return response
        if status == 404 and not _api_error(response):
            # The APIs answer a 404 about a ticket as `{"error": ...}`; any other 404 is a
            # path no API serves: GATEWAY_ADDR is wrong, not the task. Keep it pending.
            no_route = (
                f"{method} {url} answered 404 with no API error: no such route; check "
                f"GATEWAY_ADDR ({self.base_url})"
            )
            breaker.record_failure(open_now=True, error=no_route)
            raise TransientError(no_route, http_status=status)
        message = f"{what} answered {status}: {_error_text(response)}"
        if status in (408, 429) or status >= 500:
            breaker.record_failure(error=message)
            raise TransientError(
                message,
                http_status=status,
                retry_after=retry_after_seconds(response.headers.get("Retry-After")),
            )
        breaker.record_success()  # the API is up; it refused this request
        raise PermanentError(message, http_status=status)


class ReceiptsClient(GatewayClient):
    def __init__(
        self, base_url: str = "", timeout: tuple[float, float] = (CONNECT_TIMEOUT, READ_TIMEOUT)
    ) -> None:
        super().__init__(api="receipts", base_url=base_url, timeout=timeout)

    def issue(
        self,
        *,
        ticket_id: str,
        amount: Decimal | str,
        currency: str,
        idempotency_key: str,
        correlation_id: str,
    ) -> dict[str, Any]:
        response = self.call(
            "PUT",
            "/receipts-api/receipts",
            correlation_id=correlation_id,
            json={
                "ticket_id": ticket_id,
                "price": {"money_amount": str(amount), "money_currency": currency},
                "idempotency_key": idempotency_key,
            },
        )
        body = json_body(response, "PUT /receipts-api/receipts")
        if not isinstance(body, dict) or not body.get("number"):
            raise TransientError(f"receipt answer without a number: {_snippet(response.text, 200)}")
        return body

    def void(self, *, ticket_id: str, reason: str, idempotent_id: str, correlation_id: str) -> None:
        self.call(
            "PUT",
            "/receipts-api/void-receipt",
            correlation_id=correlation_id,
            json={"ticket_id": ticket_id, "reason": reason, "idempotent_id": idempotent_id},
        )


class PaymentsClient(GatewayClient):
    def __init__(
        self, base_url: str = "", timeout: tuple[float, float] = (CONNECT_TIMEOUT, READ_TIMEOUT)
    ) -> None:
        super().__init__(api="payments", base_url=base_url, timeout=timeout)

    def refund(
        self, *, payment_reference: str, reason: str, deduplication_id: str, correlation_id: str
    ) -> None:
        self.call(
            "PUT",
            "/payments-api/refunds",
            correlation_id=correlation_id,
            json={
                "payment_reference": payment_reference,
                "reason": reason,
                "deduplication_id": deduplication_id,
            },
        )


class SpreadsheetsClient(GatewayClient):
    def __init__(
        self, base_url: str = "", timeout: tuple[float, float] = (CONNECT_TIMEOUT, READ_TIMEOUT)
    ) -> None:
        super().__init__(api="spreadsheets", base_url=base_url, timeout=timeout)

    def append_row(self, *, sheet: str, columns: list[str], correlation_id: str) -> None:
        self.call(
            "POST",
            f"/spreadsheets-api/sheets/{sheet}/rows",
            correlation_id=correlation_id,
            json={"columns": columns},
        )

    def rows(self, *, sheet: str, correlation_id: str) -> list[list[str]]:
        response = self.call(
            "GET", f"/spreadsheets-api/sheets/{sheet}/rows", correlation_id=correlation_id
        )
        body = json_body(response, f"GET /spreadsheets-api/sheets/{sheet}/rows")
        rows = body.get("rows") if isinstance(body, dict) else None
        if not isinstance(rows, list):
            raise TransientError(
                f"sheet {sheet} answered without rows: {_snippet(response.text, 200)}"
            )
        return rows


# One harmless GET per API: the route exists even where it takes only PUT (405) or POST.
PROBES = {
    "receipts": "/receipts-api/receipts",
    "payments": "/payments-api/refunds",
    "spreadsheets": "/spreadsheets-api/sheets/tickets-to-print/rows",
}


def check_destinations() -> list[str]:
    """A warning per API whose route GATEWAY_ADDR does not reach (outbox.preflight)."""
    warnings = []
    for api, path in PROBES.items():
        url = f"{settings.GATEWAY_ADDR}{path}"
        try:
            response = requests.get(url, timeout=(CONNECT_TIMEOUT, 5.0))
        except requests.RequestException as exc:
            reason = "connection refused" if _refused(exc) else exc.__class__.__name__
            warnings.append(
                f"the {api} API does not answer at {url} ({reason}): check GATEWAY_ADDR; "
                "its tasks wait pending until it does"
            )
            continue
        if response.status_code == 404 and not _api_error(response):
            warnings.append(
                f"the {api} API is not at {url} (404 with no API error): check GATEWAY_ADDR "
                f"({settings.GATEWAY_ADDR}); its tasks wait pending until it is right"
            )
    return warnings
