"""The fake APIs' wire helpers: parsing a request's JSON body, the 400 a contract breach gets,
the 404 of an unknown path, and the records an idempotent write keeps."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

from devtools.http_server import Reply, json_reply


class BadRequest(Exception):
    """A request that breaks the contract: answered 400 with this message."""


def no_route_reply(method: str, path: str, *, as_json: bool = False) -> Reply:
    """A path no API serves, answered as a web server would (plain text) or, with `as_json`,
    as Google's APIs answer every unknown path: a JSON error object. Either way it means
    GATEWAY_ADDR is wrong, which no retry of the task can fix.
    """
    if as_json:
        return json_reply(
            404,
            {
                "error": {
                    "code": 404,
                    "message": f"Requested entity was not found: {method} {path}",
                    "status": "NOT_FOUND",
                }
            },
        )
    body = f"404 page not found: no route for {method} {path}\n".encode()
    return Reply(404, body, content_type="text/plain")


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_json_object(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw) if raw else None
    except ValueError as exc:
        raise BadRequest(f"body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise BadRequest("body must be a JSON object")
    return body


def _required_str(body: Mapping[str, Any], name: str, label: str | None = None) -> str:
    label = label or name
    value = body.get(name)
    if value is None:
        raise BadRequest(f"{label} is required")
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(f"{label} must be a non-empty string")
    return value


def _receipt_wire(receipt: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "ticket_id": receipt["ticket_id"],
        "number": receipt["number"],
        "issued_at": receipt["issued_at"],
        "price": dict(receipt["price"]),
        "idempotency_key": receipt["idempotency_key"],
    }


def _record_once(
    records: list[dict[str, Any]],
    by_key: dict[str, dict[str, Any]],
    request: dict[str, str],
    *,
    key_field: str,
    subject_field: str,
    correlation_id: str | None,
    created_status: int,
) -> tuple[int, Any]:
    key = request[key_field]
    existing = by_key.get(key)
    if existing is not None:
        if existing[subject_field] != request[subject_field]:
            return 400, {
                "error": f"{key_field} {key!r} was already used for {subject_field} "
                f"{existing[subject_field]!r}, not {request[subject_field]!r}"
            }
        return 200, request
    record = {**request, "correlation_id": correlation_id, "recorded_at": _now_iso()}
    records.append(record)
    by_key[key] = record
    return created_status, request


def _calls_param(query: str) -> int | None:
    values = parse_qs(query).get("calls")
    if not values:
        return None
    try:
        calls = int(values[-1])
    except ValueError:
        calls = -1
    if calls < 0:
        raise BadRequest(f"calls must be a whole number >= 0, got {values[-1]!r}")
    return calls


def _page_params(query: str) -> tuple[int, int] | None:
    """`offset` and `limit` of a paged read of a sheet; None when the query asks for none."""
    params = parse_qs(query)
    if "offset" not in params and "limit" not in params:
        return None
    found = []
    for name, default in (("offset", "0"), ("limit", "1000")):
        raw = params.get(name, [default])[-1]
        try:
            value = int(raw)
        except ValueError:
            value = -1
        if value < 0 or (name == "limit" and value == 0):
            raise BadRequest(
                f"{name} must be a whole number >= {int(name == 'limit')}, got {raw!r}"
            )
        found.append(value)
    return found[0], found[1]
