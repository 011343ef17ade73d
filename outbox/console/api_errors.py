"""DRF's errors in this service's shape: `{"error": "..."}`, like every other error it answers.

settings.REST_FRAMEWORK["EXCEPTION_HANDLER"] names `exception_handler`, for every API view.
"""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF errors as `{"error": "..."}`, like every other error this service answers."""
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(exc, exceptions.APIException):
        detail = exc.detail
        message = detail if isinstance(detail, str) else str(detail)
        response.data = {"error": str(message)}
    return response
