"""The OpenAPI schema and its Swagger UI page, for staff only unless API_DOCS_PUBLIC is on.

The schema lists every endpoint and field, the operators' API included: a map worth keeping
from whoever probes the service. A staff user reaches it with the admin's session (a browser
that logged in at /admin/) or with the API's token (`Authorization: Token <key>`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.contrib.auth import REDIRECT_FIELD_NAME
from django.contrib.auth.views import redirect_to_login
from django.http import HttpResponseBase
from django.urls import reverse
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework import exceptions
from rest_framework.authentication import (
    BaseAuthentication,
    SessionAuthentication,
    TokenAuthentication,
)
from rest_framework.permissions import AllowAny, BasePermission, IsAdminUser
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView


class _StaffUnlessPublic(APIView):
    """Token first: an anonymous request is a 401 with a `WWW-Authenticate: Token` challenge.

    The setting is read per request, so `override_settings` works in tests.
    """

    authentication_classes: Sequence[type[BaseAuthentication]] = [
        TokenAuthentication,
        SessionAuthentication,
    ]

    def get_permissions(self) -> list[BasePermission]:
        return [AllowAny()] if settings.API_DOCS_PUBLIC else [IsAdminUser()]


def _answer_errors_in_json(view: APIView) -> None:
    """Render the error being handled as JSON, whatever renderer the request chose: the
    schema's are YAML and OpenAPI JSON, the docs page's an HTML template (whose context
    processor re-ran a failed authentication and turned a bad token's 401 into a 500). An
    error is `{"error": ...}` JSON like every other of the API's (docs/API.md)."""
    request: Any = view.request
    request.accepted_renderer = JSONRenderer()
    request.accepted_media_type = JSONRenderer.media_type


class StaffSchemaView(_StaffUnlessPublic, SpectacularAPIView):
    """GET /api/schema/."""

    def handle_exception(self, exc: Exception) -> Response:
        _answer_errors_in_json(self)
        return super().handle_exception(exc)


class StaffSwaggerView(_StaffUnlessPublic, SpectacularSwaggerView):
    """GET /api/docs/: a browser without a login is sent to the admin's login page; every
    other refusal is JSON."""

    # DRF's dispatch takes any HttpResponseBase from here (finalize_response checks that);
    # its stub says Response.
    def handle_exception(self, exc: Exception) -> HttpResponseBase:  # type: ignore[override]
        request: Any = self.request
        if (
            isinstance(exc, exceptions.NotAuthenticated)
            and "HTTP_AUTHORIZATION" not in request.META
        ):
            return redirect_to_login(
                request.get_full_path(), reverse("admin:login"), REDIRECT_FIELD_NAME
            )
        # The page is HTML; its errors (401, 403, 404 for an unknown ?format=, 405) are not.
        _answer_errors_in_json(self)
        return super().handle_exception(exc)
