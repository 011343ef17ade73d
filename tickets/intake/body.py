"""The webhook's raw body, read within a limit and parsed strictly (docs/SECURITY.md).

The view reads the body here rather than through DRF's `request.data`: DRF's JSON parser reads
the whole stream (Django's DATA_UPLOAD_MAX_MEMORY_SIZE only guards `request.body`), lets
RecursionError out as a 500, and the signature must be checked on the bytes before parsing.
Every refusal is a DRF APIException, answered as `{"error": "..."}`.
"""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpRequest
from rest_framework import exceptions, status
from rest_framework.parsers import JSONParser
from rest_framework.utils.mediatypes import media_type_matches

# The contract's body is 4 levels deep ({"tickets": [{"price": {}}]}); this is generous, and
# keeps every later walk over the data (hashing, validation) far from the recursion limit.
MAX_DEPTH = 32
_CHUNK_BYTES = 64 * 1024


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "payload_too_large"


def read_body(request: HttpRequest, *, limit: int) -> bytes:
    """The raw body, never reading more than `limit + 1` bytes.

    A declared Content-Length over the limit is refused before a byte is read. A body that
    declares none (chunked, or under ASGI) is read up to one byte past the limit.
    """
    declared = request.META.get("CONTENT_LENGTH") or ""
    if declared:
        try:
            length = int(declared)
        except ValueError:
            raise exceptions.ParseError("Content-Length is not a number.") from None
        if length > limit:
            raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    while size <= limit:
        chunk = request.read(min(_CHUNK_BYTES, limit + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size > limit:
        raise _too_large(limit)
    return b"".join(chunks)


def parse_json(body: bytes, *, content_type: str) -> Any:
    """The JSON document of a UTF-8 body; 415 for another media type, 400 for bad JSON."""
    if not media_type_matches(JSONParser.media_type, content_type):
        raise exceptions.UnsupportedMediaType(content_type)
    if not body:
        return {}
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise exceptions.ParseError(
            f"JSON parse error - the body is not UTF-8 (byte {exc.start} is invalid)."
        ) from None
    try:
        data = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise _too_deep() from None
    except ValueError as exc:
        raise exceptions.ParseError(f"JSON parse error - {exc}") from None
    if deeper_than(data, MAX_DEPTH):
        raise _too_deep()
    return data


def deeper_than(data: Any, limit: int) -> bool:
    """Whether arrays and objects nest more than `limit` levels; iterative, so any depth is fine."""
    stack: list[tuple[Any, int]] = [(data, 1)] if isinstance(data, dict | list) else []
    while stack:
        value, depth = stack.pop()
        if depth > limit:
            return True
        children = value.values() if isinstance(value, dict) else value
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def _refuse_constant(name: str) -> Any:
    # As DRF's strict JSON: NaN and Infinity are not JSON.
    raise ValueError(f"{name} is not valid JSON")


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"The request body is larger than {limit} bytes (WEBHOOK_MAX_BODY_BYTES)."
    )


def _too_deep() -> exceptions.ParseError:
    return exceptions.ParseError(f"JSON parse error - nested deeper than {MAX_DEPTH} levels.")
