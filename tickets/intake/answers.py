"""The answers the seller's endpoints give besides their own: errors, and their OpenAPI shapes."""

from __future__ import annotations

import logging

from drf_spectacular.utils import (
    inline_serializer,
)
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from outbox.correlation import HEADER as CORRELATION_HEADER
from tickets.intake.serializers import plain_text_error

logger = logging.getLogger(__name__)

# The OpenAPI description of the answers below; the views build them as plain dicts.
_ERROR_SCHEMA = inline_serializer(
    "WebhookError",
    {
        "error": serializers.CharField(),
        "errors": serializers.ListField(
            child=serializers.DictField(child=serializers.CharField()),
            required=False,
            help_text="On a 400 for bad input: [{field, message}], one per bad field.",
        ),
    },
)
_CREATED_TASKS_SCHEMA = inline_serializer(
    "CreatedTask", {"id": serializers.IntegerField(), "kind": serializers.CharField()}, many=True
)


def _error(code: int, message: str) -> Response:
    return Response({"error": message}, status=code)


def invalid_request(errors: list[dict[str, str]]) -> Response:
    """400 in the validation shape: a summary and every bad field by name."""
    summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
    return Response(
        {"error": f"invalid request: {summary}", "errors": errors},
        status=status.HTTP_400_BAD_REQUEST,
    )


def _plain_text_headers(request: Request, *, raw_key: str | None = None) -> Response | None:
    """A 400 naming the identifier header that holds a control character, else None.

    The correlation middleware would swap such a Correlation-ID for a fresh one; the caller
    is told instead, as it is for a body field, so its ids mean the same on both sides.
    """
    headers = {CORRELATION_HEADER: request.headers.get(CORRELATION_HEADER, "")}
    if raw_key is not None:
        headers = {"Idempotency-Key": raw_key, **headers}
    errors = [
        {"field": name, "message": reason}
        for name, value in headers.items()
        if (reason := plain_text_error(value)) is not None
    ]
    return invalid_request(errors) if errors else None
