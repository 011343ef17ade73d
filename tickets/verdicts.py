"""What each gateway endpoint's answer means: the code's copy of docs/GATEWAY_API.md's table.

One table, `ENDPOINTS`, says per endpoint which answers prove that the effect happened (the
status codes and the body the contract names); `read_answer` and `read_failure` turn whatever
came back (a status and a body, or an exception) into one `Reading`:

- `DONE`: the API confirmed the effect. Nothing else is a success: a 2xx that is not the API's
  answer (a proxy's HTML page, `{"status": "ok"}`, an `{"error": ...}`) is `RETRY`.
- `RETRY`: transient, and the API answered: it has finished with the request.
- `WAIT`: transient with no answer (a timeout, a cut connection, a proxy's 504): a write the
  call sent may still land. A kind registered with `settle_seconds` waits for it.
- `NOT_SENT`: transient, nothing reached the API (refused connection, failed DNS lookup).
- `FAIL`: permanent: the API refused this request (a 400 about the ticket, say).
- `MISCONFIGURED`: the answer is about our configuration, not the task (a 404 from an endpoint
  whose contract defines none, a redirect on a write, 401/403/405): no try can fix it, so the
  destination's circuit opens and the task waits, pending, spending no attempt.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from outbox import redact


class Verdict(enum.StrEnum):
    DONE = "done"
    RETRY = "retry"
    WAIT = "wait"
    NOT_SENT = "not_sent"
    FAIL = "fail"
    MISCONFIGURED = "misconfigured"


@dataclass(frozen=True, slots=True)
class Reading:
    verdict: Verdict
    reason: str
    body: Any = None  # the parsed JSON body of a DONE answer (None when it was empty)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One call of the contract, and the answers that prove it did what it was asked."""

    name: str
    api: str
    method: str
    write: bool
    # The statuses that can confirm the effect; any other 2xx proves nothing.
    success: frozenset[int]
    # Fields of a JSON answer that say it is this endpoint's: at least one must be present
    # (an empty list: any JSON object), and each one present must match what was asked.
    echoes: tuple[str, ...] = ()
    # Fields a confirming answer must carry, non-empty (a receipt's number).
    required: tuple[str, ...] = ()
    # Whether an empty body confirms the effect (an API that answers a write with no body).
    empty_confirms: bool = False
    # Whether the contract defines a 404 about the request (an unknown receipt, say). Where it
    # does not, every 404, whatever its body, means the URL is not the API's.
    defines_404: bool = False
    # A JSON object answer that must hold a list under this key (the rows of a sheet).
    list_field: str | None = None


ISSUE_RECEIPT = Endpoint(
    name="issue a receipt",
    api="receipts",
    method="PUT",
    write=True,
    success=frozenset({200, 201}),
    echoes=("ticket_id", "number"),
    required=("number",),
)
VOID_RECEIPT = Endpoint(
    name="void a receipt",
    api="receipts",
    method="PUT",
    write=True,
    success=frozenset({200, 201, 204}),
    echoes=("ticket_id", "idempotent_id"),
    empty_confirms=True,
)
REFUND = Endpoint(
    name="refund a payment",
    api="payments",
    method="PUT",
    write=True,
    success=frozenset({200, 201, 204}),
    echoes=("payment_reference", "deduplication_id"),
    empty_confirms=True,
)
APPEND_ROW = Endpoint(
    name="append a row",
    api="spreadsheets",
    method="POST",
    write=True,
    success=frozenset({200, 201, 204}),
    echoes=("sheet", "row"),
    empty_confirms=True,
)
READ_ROWS = Endpoint(
    name="read the rows",
    api="spreadsheets",
    method="GET",
    write=False,
    success=frozenset({200}),
    list_field="rows",
)

ENDPOINTS = (ISSUE_RECEIPT, VOID_RECEIPT, REFUND, APPEND_ROW, READ_ROWS)

# Answers about our configuration, whichever endpoint gives them: credentials a proxy or the
# API wants (401, 403, 407), a method the route does not take (405: the path is not the API's).
_CONFIGURATION_STATUSES = frozenset({401, 403, 405, 407})
# A proxy that got no answer, or a broken one, from the API behind it: the API may still be
# working on the request, so a write it got may land later.
_NO_ANSWER_STATUSES = frozenset({502, 504})

SNIPPET_CHARS = 200


def snippet(text: str, limit: int = SNIPPET_CHARS) -> str:
    """An answer's text for an error, which is stored and logged: customer emails go first
    (before the cut, so none is left half-redacted)."""
    return redact(text)[:limit]


# A redirect's Location as an error shows it (the error is stored and logged).
LOCATION_CHARS = 200
HIDDEN = "[hidden]"


def _shown_location(location: str, limit: int = LOCATION_CHARS) -> str:
    """A redirect's `Location` safe to store and log: scheme, host, port and path kept (they say
    where the API moved); userinfo dropped, each query value (a token, a signature) replaced by
    a marker, the fragment dropped, emails redacted, and the whole capped."""
    location = location.strip()
    if not location:
        return "no Location"
    try:
        parts = urlsplit(location)
        port = parts.port
    except ValueError:  # an unbalanced '[' in the host, a port that is not a number
        return "a Location that is not a URL"
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 address keeps its brackets
        host = f"[{host}]"
    origin = ""
    if parts.scheme:
        origin = f"{parts.scheme}:"
    if parts.netloc:
        origin += f"//{host}" + (f":{port}" if port is not None else "")
    shown = origin + parts.path
    if parts.query:
        # A name is kept (it says which parameter the API wants); a field with no '=' may be
        # the secret itself, so it is hidden whole.
        fields = (field.partition("=") for field in parts.query.split("&") if field)
        shown += "?" + "&".join(
            f"{name[:40]}={HIDDEN}" if equals else HIDDEN for name, equals, _ in fields
        )
    shown = redact(shown)
    if len(shown) > limit:
        shown = shown[: limit - 1] + "…"
    return shown


def body_text(body: bytes) -> str:
    return body.decode("utf-8", errors="replace")


def read_answer(
    endpoint: Endpoint,
    *,
    status: int,
    body: bytes,
    content_type: str = "",
    location: str = "",
    url: str = "",
    expect: Mapping[str, str] | None = None,
) -> Reading:
    """What an HTTP answer means for the call, by this endpoint's contract.

    `expect` holds what the request said (`ticket_id`, `sheet`, ...): a confirming answer that
    names one of those fields must name the same value.
    """
    what = f"{endpoint.method} {url}" if url else endpoint.name
    if 200 <= status < 300:
        return _read_success(endpoint, status, body, content_type, what, expect or {})
    if 300 <= status < 400:
        target = _shown_location(location)
        if endpoint.write:
            return Reading(
                Verdict.MISCONFIGURED,
                f"{what} answered {status}, a redirect to {target}: a write is never sent "
                "again elsewhere; point GATEWAY_ADDR at the address the API answers on",
            )
        return Reading(
            Verdict.MISCONFIGURED,
            f"{what} answered {status}, a redirect to {target} on another host (or too many); "
            "check GATEWAY_ADDR",
        )
    text = _error_text(body)
    if status == 404 and not endpoint.defines_404:
        return Reading(
            Verdict.MISCONFIGURED,
            f"{what} answered 404 ({text}): the contract of '{endpoint.name}' has no 404, so "
            "this address is not the API's; check GATEWAY_ADDR",
        )
    if status in _CONFIGURATION_STATUSES:
        return Reading(
            Verdict.MISCONFIGURED,
            f"{what} answered {status} ({text}): a question of configuration (the address, "
            "a proxy's credentials), not of this task; check GATEWAY_ADDR",
        )
    if status in (408, 429):
        return Reading(Verdict.RETRY, f"{what} answered {status}: {text}")
    if status in _NO_ANSWER_STATUSES:
        return Reading(
            Verdict.WAIT,
            f"{what} answered {status} ({text}): a proxy got no answer from the API, which may "
            "still be working on the request",
        )
    if status >= 500:
        return Reading(Verdict.RETRY, f"{what} answered {status}: {text}")
    if 400 <= status < 500:
        return Reading(Verdict.FAIL, f"{what} answered {status}: {text}")
    return Reading(Verdict.RETRY, f"{what} answered {status}, which no contract defines: {text}")


def _read_success(
    endpoint: Endpoint,
    status: int,
    body: bytes,
    content_type: str,
    what: str,
    expect: Mapping[str, str],
) -> Reading:
    def unproven(why: str) -> Reading:
        shown = snippet(body_text(body)) if body else "an empty body"
        return Reading(
            Verdict.RETRY,
            f"{what} answered {status} with {why}, which does not prove the effect: {shown}",
        )

    if status not in endpoint.success:
        return unproven(f"a status the contract of '{endpoint.name}' does not name")
    if not body.strip():
        if endpoint.empty_confirms:
            return Reading(Verdict.DONE, f"{what} answered {status}")
        return unproven("no body")
    media = content_type.split(";", 1)[0].strip().lower()
    if media and media != "application/json" and not media.endswith("+json"):
        return unproven(f"a {media} body, not the API's JSON")
    try:
        parsed = json.loads(body)
    except ValueError:
        return unproven("a body that is not JSON")
    if not isinstance(parsed, dict):
        return unproven("JSON that is not an object")
    if "error" in parsed:
        return unproven("an error object")
    if endpoint.list_field is not None:
        if not isinstance(parsed.get(endpoint.list_field), list):
            return unproven(f"no {endpoint.list_field!r} list")
        return Reading(Verdict.DONE, f"{what} answered {status}", parsed)
    if endpoint.echoes and not any(name in parsed for name in endpoint.echoes):
        return unproven(f"none of the fields the contract names ({', '.join(endpoint.echoes)})")
    for name in endpoint.required:
        value = parsed.get(name)
        if value is None or value == "" or isinstance(value, dict | list | bool):
            return unproven(f"no {name!r}")
    for name, asked in expect.items():
        if name in parsed and str(parsed[name]) != asked:
            return unproven(f"{name} {snippet(str(parsed[name]), 80)!r} where {asked!r} was asked")
    return Reading(Verdict.DONE, f"{what} answered {status}", parsed)


def _error_text(body: bytes) -> str:
    """The API's own error text when it sent `{"error": ...}`, else the body's first bytes."""
    text = " ".join(body_text(body).split())
    try:
        parsed = json.loads(text)
    except ValueError:
        return snippet(text, 500) if text.strip() else "an empty body"
    if isinstance(parsed, dict) and "error" in parsed:
        return snippet(str(parsed["error"]), 500)
    return snippet(text, 500)


# How an exception of the call reads. `sent`: whether any byte of the request may have left.
def read_failure(
    endpoint: Endpoint, *, what: str, problem: str, sent: bool, refused: bool = False
) -> Reading:
    if refused:
        return Reading(Verdict.NOT_SENT, f"{what}: connection refused; {problem}")
    if not sent:
        return Reading(Verdict.NOT_SENT, f"{what} was not sent: {problem}")
    if endpoint.write:
        return Reading(
            Verdict.WAIT,
            f"{what} got no answer ({problem}): the API may still write what was sent",
        )
    return Reading(Verdict.WAIT, f"{what} got no answer ({problem})")
