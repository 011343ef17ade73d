"""Project-wide pages: the root page, and JSON for every error outside the admin."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

# HTML belongs to these; every other path is an API, whose errors are `{"error": "..."}`.
HTML_PREFIXES = ("/admin/", "/static/", "/api/docs/")


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    return render(request, "project/home.html")


class JsonErrorsMiddleware:
    """A 404 or 405 on an API path answers JSON, as the API's own errors do.

    Django answers an unknown path (`POST /ticket-status`) or a method a plain view does not
    take with an HTML page, or an empty body; an API client expects `{"error": ...}`.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if response.status_code not in (404, 405) or request.path == "/":
            return response
        if request.path.startswith(HTML_PREFIXES):
            return response
        if response.get("Content-Type", "").startswith("application/json"):
            return response
        if response.status_code == 404:
            message = f"no such endpoint: {request.method} {request.path}"
        else:
            message = f"{request.method} is not allowed on {request.path}"
        replaced = JsonResponse({"error": message}, status=response.status_code)
        if response.has_header("Allow"):
            replaced["Allow"] = response["Allow"]
        return replaced
