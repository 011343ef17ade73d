"""The one client layer for the gateway's APIs: timeouts, Correlation-ID, redirects, verdicts.

Every outbound call goes through `GatewayClient.call`, which reads the answer by its endpoint's
contract (tickets.verdicts: what proves the effect, what is transient with or without an
answer, what is permanent, what is our misconfiguration) and returns only a confirmed success.
Handlers never touch `requests`.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC
from decimal import Decimal
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
from django.conf import settings
from django.utils import timezone
from urllib3.exceptions import ConnectTimeoutError

from outbox import (
    ANSWERED,
    NO_ANSWER,
    NOT_SENT,
    Misconfigured,
    PermanentError,
    TransientError,
    before_external_call,
    outbox_settings,
)
from outbox.correlation import HEADER as CORRELATION_HEADER
from outbox.runtime.circuit import CircuitBreaker, breaker_for
from tickets.call_deadline import CallDeadline, DeadlineAdapter
from tickets.verdicts import (
    APPEND_ROW,
    ISSUE_RECEIPT,
    READ_ROWS,
    REFUND,
    VOID_RECEIPT,
    Endpoint,
    Reading,
    Verdict,
    read_answer,
    read_failure,
)

CONNECT_TIMEOUT = 3.05
READ_TIMEOUT = 10.0
# The pause before a failed read is asked again, within the same try.
READ_AGAIN_AFTER_SECONDS = 0.1

_sessions: dict[str, requests.Session] = {}
_sessions_lock = threading.Lock()


def shared_session(name: str) -> requests.Session:
    """One pooled session per API, shared by the relay's threads."""
    with _sessions_lock:
        session = _sessions.get(name)
        if session is None:
            session = requests.Session()
            # What requests would read from the environment on every call (proxies, NO_PROXY,
            # the CA bundle, ~/.netrc) is read once per origin instead (`call_environment`):
            # scanning os.environ twice per call was a quarter of the client's CPU per call.
            session.trust_env = False
            size = max(10, int(outbox_settings().threads))
            adapter = DeadlineAdapter(pool_connections=4, pool_maxsize=size, max_retries=0)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            _sessions[name] = session
        return session


@functools.lru_cache(maxsize=64)
def call_environment(origin: str) -> dict[str, Any]:
    """The settings requests takes from the environment for calls to `origin` (scheme, host,
    port): its proxy (unless NO_PROXY names the host), the CA bundle and the ~/.netrc entry.
    Read once per process, as a process reads its environment at start."""
    probe = requests.Session()
    found = probe.merge_environment_settings(origin, {}, None, None, None)
    return {
        "proxies": found["proxies"],
        "verify": found["verify"],
        "cert": found["cert"],
        "auth": requests.utils.get_netrc_auth(origin),
    }


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/"


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


def _refused(exc: BaseException) -> bool:
    """Whether a requests error comes from a refused connection (requests wraps it deep)."""
    return any(isinstance(item, ConnectionRefusedError) for item in _chain(exc))


def _never_connected(exc: BaseException) -> bool:
    """Whether the call failed before a connection existed (DNS, refused, connect timeout):
    then no byte of the request left, and no write can be in flight."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    return any(isinstance(item, ConnectTimeoutError) for item in _chain(exc))


def _chain(exc: BaseException) -> list[BaseException]:
    seen: set[int] = set()
    found: list[BaseException] = []
    pending: list[BaseException] = [exc]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        found.append(current)
        linked = [current.__cause__, current.__context__, getattr(current, "reason", None)]
        linked.extend(arg for arg in current.args if isinstance(arg, BaseException))
        pending.extend(item for item in linked if isinstance(item, BaseException))
    return found


def _same_origin(first: str, second: str) -> bool:
    a, b = urlsplit(first), urlsplit(second)
    return (a.scheme, a.hostname, a.port) == (b.scheme, b.hostname, b.port)


# A read follows at most this many redirects, and only to its own host.
MAX_READ_REDIRECTS = 3


@dataclass
class GatewayClient:
    api: str
    base_url: str = ""
    timeout: tuple[float, float] = (CONNECT_TIMEOUT, READ_TIMEOUT)

    def __post_init__(self) -> None:
        if not self.base_url:
            self.base_url = settings.GATEWAY_ADDR

    def call(
        self,
        endpoint: Endpoint,
        path: str,
        *,
        correlation_id: str,
        json: Any = None,
        expect: Mapping[str, str] | None = None,
    ) -> Any:
        """Make one call of `endpoint`; the confirming answer's JSON body (None when empty).

        Raises what the endpoint's contract makes of anything else (tickets.verdicts):
        `TransientError` (with `reply` saying whether the API answered), `PermanentError`, or
        `Misconfigured` (the destination's circuit opens; the task waits without a try spent).
        """
        if not endpoint.write:
            # A read changes nothing: one that failed is asked again once within the try,
            # after a short pause, so a retry that reads before it writes (the sheet append)
            # does not lose its turn to one unlucky read. A Retry-After is the API's to set.
            try:
                return self._call_once(endpoint, path, correlation_id=correlation_id)
            except TransientError as exc:
                if exc.retry_after is not None:
                    raise
            time.sleep(READ_AGAIN_AFTER_SECONDS)
        return self._call_once(
            endpoint, path, correlation_id=correlation_id, json=json, expect=expect
        )

    def _call_once(
        self,
        endpoint: Endpoint,
        path: str,
        *,
        correlation_id: str,
        json: Any = None,
        expect: Mapping[str, str] | None = None,
    ) -> Any:
        url = f"{self.base_url}{path}"
        what = f"{endpoint.method} {url}"
        breaker = breaker_for(self.api)
        breaker.before_call()  # raises CircuitOpen while the API rests after failures
        # Raises LeaseLost (nothing sent) when the task's lease would not outlive the call;
        # gives this thread's database connection back before the network wait.
        deadline = before_external_call()
        connect, read = self.timeout
        response: requests.Response | None = None
        try:
            with CallDeadline(deadline) as watchdog:
                response = self._send(
                    endpoint,
                    url,
                    json=json,
                    correlation_id=correlation_id,
                    timeout=(min(connect, deadline), min(read, deadline)),
                )
        except requests.RequestException as exc:
            refused = _refused(exc)
            # Cut by the deadline, or by a timeout that ran to it (the deadline's watcher keeps
            # it to within a few hundredths of a second, so either may end the call first).
            if watchdog.fired or watchdog.elapsed() >= deadline:
                problem = f"it did not finish within its {deadline:.1f}s deadline"
            elif isinstance(exc, requests.Timeout):
                problem = f"timed out: {exc}"
            else:
                problem = f"{exc.__class__.__name__}: {exc}"
            if refused:
                problem = f"check GATEWAY_ADDR ({self.base_url})"
            reading = read_failure(
                endpoint,
                what=what,
                problem=problem,
                sent=not (refused or _never_connected(exc)),
                refused=refused,
            )
            return self._act(endpoint, reading, breaker, exc=exc, refused=refused)
        reading = read_answer(
            endpoint,
            status=response.status_code,
            body=response.content,
            content_type=response.headers.get("Content-Type", ""),
            location=response.headers.get("Location", ""),
            url=url,
            expect=expect,
        )
        return self._act(endpoint, reading, breaker, response=response)

    def _send(
        self,
        endpoint: Endpoint,
        url: str,
        *,
        json: Any,
        correlation_id: str,
        timeout: tuple[float, float],
    ) -> requests.Response:
        # Redirects are never followed by requests: a 301/302 turns a POST into a GET, and a
        # write answered by a redirect is the API telling us our address is wrong.
        session = shared_session(self.api)
        headers = {CORRELATION_HEADER: correlation_id} if correlation_id else None
        # Reads follow redirects to their own origin only: one environment for every hop.
        environment = call_environment(_origin(url))
        response = session.request(
            endpoint.method,
            url,
            json=json,
            headers=headers,
            timeout=timeout,
            allow_redirects=False,
            **environment,
        )
        hops = 0
        while (
            not endpoint.write
            and response.is_redirect
            and hops < MAX_READ_REDIRECTS
            and _same_origin(url, urljoin(url, response.headers["Location"]))
        ):
            hops += 1
            url = urljoin(url, response.headers["Location"])
            response = session.request(
                endpoint.method,
                url,
                headers=headers,
                timeout=timeout,
                allow_redirects=False,
                **environment,
            )
        return response

    def _act(
        self,
        endpoint: Endpoint,
        reading: Reading,
        breaker: CircuitBreaker,
        *,
        response: requests.Response | None = None,
        exc: BaseException | None = None,
        refused: bool = False,
    ) -> Any:
        status = None if response is None else response.status_code
        verdict = reading.verdict
        if verdict == Verdict.DONE:
            breaker.record_success()
            return reading.body
        if verdict == Verdict.FAIL:
            breaker.record_success()  # the API is up; it refused this request
            raise PermanentError(reading.reason, http_status=status, reply=ANSWERED)
        if verdict == Verdict.MISCONFIGURED:
            # Every task would get the same answer: rest the destination, fail none of them.
            breaker.record_failure(open_now=True, error=reading.reason)
            raise Misconfigured(reading.reason, http_status=status) from exc
        # Nothing listens there (refused): every task would fail the same way. Rest the API.
        breaker.record_failure(open_now=refused, error=reading.reason)
        reply = {Verdict.RETRY: ANSWERED, Verdict.WAIT: NO_ANSWER}.get(verdict, NOT_SENT)
        if verdict == Verdict.WAIT and not endpoint.write:
            # A read that got no answer leaves no write in flight: nothing to wait for.
            reply = ""
        retry_after = (
            None if response is None else retry_after_seconds(response.headers.get("Retry-After"))
        )
        raise TransientError(
            reading.reason, http_status=status, retry_after=retry_after, reply=reply
        ) from exc


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
        body: dict[str, Any] = self.call(
            ISSUE_RECEIPT,
            "/receipts-api/receipts",
            correlation_id=correlation_id,
            json={
                "ticket_id": ticket_id,
                "price": {"money_amount": str(amount), "money_currency": currency},
                "idempotency_key": idempotency_key,
            },
            expect={"ticket_id": ticket_id, "idempotency_key": idempotency_key},
        )
        return body

    def void(self, *, ticket_id: str, reason: str, idempotent_id: str, correlation_id: str) -> None:
        self.call(
            VOID_RECEIPT,
            "/receipts-api/void-receipt",
            correlation_id=correlation_id,
            json={"ticket_id": ticket_id, "reason": reason, "idempotent_id": idempotent_id},
            expect={"ticket_id": ticket_id, "idempotent_id": idempotent_id},
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
            REFUND,
            "/payments-api/refunds",
            correlation_id=correlation_id,
            json={
                "payment_reference": payment_reference,
                "reason": reason,
                "deduplication_id": deduplication_id,
            },
            expect={"payment_reference": payment_reference, "deduplication_id": deduplication_id},
        )


class SpreadsheetsClient(GatewayClient):
    def __init__(
        self, base_url: str = "", timeout: tuple[float, float] = (CONNECT_TIMEOUT, READ_TIMEOUT)
    ) -> None:
        super().__init__(api="spreadsheets", base_url=base_url, timeout=timeout)

    def append_row(self, *, sheet: str, columns: list[str], correlation_id: str) -> None:
        self.call(
            APPEND_ROW,
            f"/spreadsheets-api/sheets/{sheet}/rows",
            correlation_id=correlation_id,
            json={"columns": columns},
            expect={"sheet": sheet},
        )

    def rows(self, *, sheet: str, correlation_id: str) -> list[list[str]]:
        body = self.call(
            READ_ROWS, f"/spreadsheets-api/sheets/{sheet}/rows", correlation_id=correlation_id
        )
        rows: list[list[str]] = body["rows"]
        return rows
