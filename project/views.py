"""Project-wide pages: the root page, and JSON for every error outside the admin."""

from __future__ import annotations

from collections.abc import Callable
from http import HTTPStatus

from django.core.exceptions import DisallowedHost, RequestDataTooBig
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.shortcuts import render
from django.views import defaults
from django.views.decorators.http import require_GET

# HTML belongs to these and the root page; every other path is an API, whose errors are
# `{"error": "..."}`. /api/docs/ is HTML when it answers, but it is under /api/: its errors
# are the API's.
HTML_PREFIXES = ("/admin/", "/static/")
# Headers of an error answer that say what to do next; kept when the body is replaced.
_KEPT_HEADERS = ("Allow", "WWW-Authenticate", "Retry-After", "Correlation-ID")


def is_html_path(path: str) -> bool:
    return path == "/" or path.startswith(HTML_PREFIXES)


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    return render(request, "home.html")


def json_error(status: int, message: str) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


class JsonErrorsMiddleware:
    """Every error answered on an API path is `{"error": ...}`, whoever made it.

    The first middleware, so it sees every answer: Django's own pages for an unknown path
    (`POST /ticket-status`), a method a plain view does not take (an empty body), a Host not
    in ALLOWED_HOSTS (raised in CommonMiddleware, before any view), a CSRF refusal, a 500
    (with DEBUG on, its technical page; the traceback is still logged), and any renderer's
    error that is not JSON. An API client expects JSON, never an HTML page. Kept as they are:
    the admin's and the root page's HTML, and the health probes' one-line text 503.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        if response.status_code < 400 or is_html_path(request.path):
            return response
        content_type = response.get("Content-Type", "")
        if content_type.startswith("application/json"):
            return response
        if response.status_code == 503 and content_type.startswith("text/plain"):
            return response  # /health's reason, by contract (docs/API.md)
        replaced = json_error(response.status_code, _message(request, response.status_code))
        for header in _KEPT_HEADERS:
            if response.has_header(header):
                replaced[header] = response[header]
        return replaced


class NulInQueryMiddleware:
    """A query string holding a NUL (`%00`) is a 400 naming the parameter, before any view.

    PostgreSQL text cannot hold U+0000: a lookup comparing with one raises DataError, so the
    admin's changelist search (`?q=abc%00`) was a 500; SQLite merely matched nothing. No
    stored value holds one (input refuses control characters), so nothing is lost.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        for name, values in request.GET.lists():
            if "\x00" in name or any("\x00" in value for value in values):
                shown = name.replace("\x00", "%00")
                message = (
                    f"the query parameter {shown!r} holds a NUL character (%00), which no "
                    "stored value can contain"
                )
                if is_html_path(request.path):
                    return HttpResponse(message, status=400, content_type="text/plain")
                return json_error(400, message)
        return self.get_response(request)


def _message(request: HttpRequest, status: int) -> str:
    # request.path, not get_host() or the full URL: with a refused Host, reading it raises.
    if status == 404:
        return f"no such endpoint: {request.method} {request.path}"
    if status == 405:
        return f"{request.method} is not allowed on {request.path}"
    try:
        phrase = HTTPStatus(status).phrase.lower()
    except ValueError:
        phrase = f"error {status}"
    return f"{phrase}: {request.method} {request.path}"


# Django's error views (project.urls names them), used while DEBUG is off: JSON on API paths
# with the reason when it is safe to tell, Django's own pages on the admin and the root page.


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    if is_html_path(request.path):
        return defaults.bad_request(request, exception)
    if isinstance(exception, DisallowedHost):
        return json_error(400, "the Host header names no host this service answers for")
    if isinstance(exception, RequestDataTooBig):
        return json_error(413, "the request body is too large")
    return json_error(400, _message(request, 400))


def permission_denied(request: HttpRequest, exception: Exception) -> HttpResponse:
    if is_html_path(request.path):
        return defaults.permission_denied(request, exception)
    return json_error(403, _message(request, 403))


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if is_html_path(request.path):
        return defaults.page_not_found(request, exception)
    return json_error(404, _message(request, 404))


def server_error(request: HttpRequest) -> HttpResponse:
    if is_html_path(request.path):
        return defaults.server_error(request)
    # Never the exception's text: it can hold data; the traceback is in the log.
    return json_error(500, "internal server error")
