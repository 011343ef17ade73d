"""DRF's errors in this service's shape: `{"error": "..."}`, like every other error it answers.

settings.REST_FRAMEWORK["EXCEPTION_HANDLER"] names `exception_handler`, for every API view.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import Http404
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF errors as `{"error": "..."}`, like every other error this service answers.

    Django's Http404 and PermissionDenied too: DRF answers them (its own NotFound for an
    unknown `?format=`, a get_object_or_404), so they are taken as DRF's equivalents first.
    """
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(*exc.args or (_not_found_message(context),))
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied(*exc.args)
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(exc, exceptions.APIException):
        detail = exc.detail
        message = detail if isinstance(detail, str) else str(detail)
        response.data = {"error": str(message)}
    return response


def _not_found_message(context: dict[str, Any]) -> str:
    """The reason of a bare Http404: DRF's content negotiation raises one for a `?format=`
    no renderer of the view has."""
    request, view = context.get("request"), context.get("view")
    if request is not None and view is not None:
        wanted = request.query_params.get(view.settings.URL_FORMAT_OVERRIDE or "format")
        if wanted is not None:
            formats = ", ".join(renderer.format for renderer in view.get_renderers())
            return f"unknown format {wanted!r}: this endpoint answers {formats}"
    return "not found"
