"""Every error on a path the API owns is `{"error": ...}` JSON (issue 23 item 3).

Each case is an answer that used to be HTML, YAML or empty: Django's pages for a Host not in
ALLOWED_HOSTS, a CSRF refusal of a probe, a body over Django's limit and an unhandled
exception, the schema view's YAML 401, the docs page's HTML refusals, and DRF's
`{"detail": ...}` for Django's Http404. Checked with DEBUG on and off: with it off Django
renders errors with project.urls' handlers, with it on with its technical pages.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.test import Client, override_settings
from django.urls import path
from rest_framework.authtoken.models import Token

import project.urls

pytestmark = pytest.mark.django_db

SECRET = "whsec_" + "A" * 44


def token(staff: bool) -> str:
    user = User.objects.create_superuser("staff") if staff else User.objects.create_user("c")
    return Token.objects.create(user=user).key


def boom(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("a bug with a customer's email: ada@example.com")


def deny(*args: Any, **kwargs: Any) -> Any:
    raise PermissionDenied("this needs a permission")


def missing(*args: Any, **kwargs: Any) -> Any:
    raise Http404


Case = Callable[[Client, Any], Any]
CASES: dict[str, tuple[int, Case]] = {
    "webhook body not JSON": (
        400,
        lambda c, m: c.post(
            "/tickets-status",
            "{",
            content_type="application/json",
            headers={"Idempotency-Key": "k"},
        ),
    ),
    "unknown Host": (400, lambda c, m: c.get("/tickets", headers={"Host": "evil.example"})),
    "schema without login": (401, lambda c, m: c.get("/api/schema/")),
    "schema as JSON without login": (401, lambda c, m: c.get("/api/schema/?format=json")),
    "refund without credentials": (
        401,
        lambda c, m: override_settings(WEBHOOK_SECRET=SECRET)(c.put)("/ticket-refund/t-1"),
    ),
    "staff API with a clerk's token": (
        403,
        lambda c, m: c.get("/api/tasks/1", headers={"Authorization": f"Token {token(False)}"}),
    ),
    "schema with a clerk's token": (
        403,
        lambda c, m: c.get("/api/schema/", headers={"Authorization": f"Token {token(False)}"}),
    ),
    "POST to a GET-only probe, CSRF checks on": (
        405,
        lambda c, m: Client(enforce_csrf_checks=True).post("/health"),
    ),
    "unknown path": (404, lambda c, m: c.get("/api/nothing")),
    "unknown ticket": (
        404,
        lambda c, m: c.get("/api/tickets/t-9", headers={"Authorization": f"Token {token(True)}"}),
    ),
    "method a plain view does not take": (405, lambda c, m: c.post("/health")),
    "method an API view does not take": (405, lambda c, m: c.delete("/tickets")),
    "webhook body over its limit": (
        413,
        lambda c, m: override_settings(WEBHOOK_MAX_BODY_BYTES=10)(c.post)(
            "/tickets-status", "{" + " " * 20 + "}", content_type="application/json"
        ),
    ),
    "webhook of another content type": (
        415,
        lambda c, m: c.post(
            "/tickets-status", "x", content_type="text/plain", headers={"Idempotency-Key": "k"}
        ),
    ),
    "unknown ?format= on a seller endpoint": (404, lambda c, m: c.get("/tickets?format=xyz")),
    "unknown ?format= on the staff API": (
        404,
        lambda c, m: c.get(
            "/api/tasks/1?format=xyz", headers={"Authorization": f"Token {token(True)}"}
        ),
    ),
    "Django's PermissionDenied in a DRF view": (
        403,
        lambda c, m: (
            m.setattr("tickets.intake.views.active_tickets_page", deny),
            c.get("/tickets"),
        )[1],
    ),
    "Django's Http404 in a DRF view": (
        404,
        lambda c, m: (
            m.setattr("tickets.intake.views.active_tickets_page", missing),
            c.get("/tickets"),
        )[1],
    ),
    # The docs page is HTML; its errors are the API's (they were HTML, a bad token a 500).
    "docs page with an unknown token": (
        401,
        lambda c, m: c.get("/api/docs/", headers={"Authorization": "Token nope"}),
    ),
    "docs page with a clerk's token": (
        403,
        lambda c, m: c.get("/api/docs/", headers={"Authorization": f"Token {token(False)}"}),
    ),
    "docs page with an unknown ?format=": (
        404,
        lambda c, m: c.get(
            "/api/docs/?format=xyz", headers={"Authorization": f"Token {token(True)}"}
        ),
    ),
    "path under the docs page": (404, lambda c, m: c.get("/api/docs/nothing")),
    "POST to the docs page": (
        405,
        lambda c, m: c.post("/api/docs/", headers={"Authorization": f"Token {token(True)}"}),
    ),
    "unhandled exception in a view": (
        500,
        lambda c, m: (
            m.setattr("tickets.intake.views.active_tickets_page", boom),
            c.get("/tickets"),
        )[1],
    ),
}


@pytest.fixture(params=[False, True], ids=["production", "debug"])
def debug(request: pytest.FixtureRequest):
    with override_settings(DEBUG=request.param):
        yield request.param


@pytest.mark.parametrize("case", list(CASES))
def test_every_error_on_an_api_path_is_json(case, debug, monkeypatch):
    status, send = CASES[case]
    client = Client(raise_request_exception=False)

    response = send(client, monkeypatch)

    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    body = json.loads(response.content)
    assert isinstance(body["error"], str)
    assert body["error"]
    # An error's text never carries what the exception held.
    assert "ada@example.com" not in response.content.decode()


def test_an_unknown_format_is_told_in_the_error_shape_naming_it(client):
    # DRF's content negotiation raised Django's Http404, which came out as {"detail": ...}.
    response = client.get("/tickets?format=xyz")

    assert response.status_code == 404
    assert response.json() == {"error": "unknown format 'xyz': this endpoint answers json"}


def test_djangos_permission_denied_in_a_drf_view_keeps_its_reason(client, monkeypatch):
    monkeypatch.setattr("tickets.intake.views.active_tickets_page", deny)

    response = client.get("/tickets")

    assert response.status_code == 403
    assert response.json() == {"error": "this needs a permission"}


@pytest.mark.parametrize("path", ["/health", "/metrics", "/health/relay"])
def test_a_post_to_a_probe_is_405_naming_get_not_a_csrf_refusal(path):
    # They were 403 "forbidden" (Django's CSRF check), which told the caller nothing of the
    # method the probe takes.
    response = Client(enforce_csrf_checks=True).post(path)

    assert response.status_code == 405
    assert response["Allow"] == "GET"
    assert response.json() == {"error": f"POST is not allowed on {path}"}


def test_the_docs_pages_errors_keep_their_challenge_and_allow_headers(client):
    unknown = client.get("/api/docs/", headers={"Authorization": "Token nope"})
    posted = client.post("/api/docs/", headers={"Authorization": f"Token {token(True)}"})

    assert unknown.json() == {"error": "Invalid token."}
    assert unknown["WWW-Authenticate"] == "Token"
    assert posted["Allow"] == "GET, HEAD, OPTIONS"


def test_the_schema_views_401_keeps_its_token_challenge(client):
    response = client.get("/api/schema/")

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    assert response.json() == {"error": "Authentication credentials were not provided."}


@override_settings(DEBUG=False)
def test_an_unknown_host_is_told_in_json_without_echoing_the_settings(client):
    response = client.get("/tickets-status", headers={"Host": "evil.example"})

    assert response.status_code == 400
    assert response.json() == {"error": "the Host header names no host this service answers for"}


@override_settings(DEBUG=False, DATA_UPLOAD_MAX_MEMORY_SIZE=100)
def read_the_form(request: HttpRequest) -> HttpResponse:
    return HttpResponse(str(len(request.POST)))


# No view of the API reads a form body (the probes, which did through the CSRF check, are
# exempt now): one that does, to hold Django's refusal of a body over its limit to JSON.
urlpatterns = [path("form-reader", read_the_form), *project.urls.urlpatterns]
handler400 = project.urls.handler400


@pytest.mark.urls(__name__)
def test_a_form_body_over_djangos_limit_is_413_in_json():
    response = Client().post("/form-reader", {"field": "x" * 200})

    assert response.status_code == 413
    assert response.json() == {"error": "the request body is too large"}


@override_settings(DEBUG=False)
def test_a_500_says_nothing_of_the_exception(monkeypatch):
    monkeypatch.setattr("tickets.intake.views.active_tickets_page", boom)

    response = Client(raise_request_exception=False).get("/tickets")

    assert response.status_code == 500
    assert response.json() == {"error": "internal server error"}
    assert response.has_header("Correlation-ID")


@pytest.mark.parametrize("debug_on", [False, True])
def test_the_admin_and_the_root_page_keep_their_html(admin_client, debug_on):
    with override_settings(DEBUG=debug_on):
        admin_404 = admin_client.get("/admin/no-such-page/")
        admin_bad_host = Client(raise_request_exception=False).get(
            "/admin/", headers={"Host": "evil.example"}
        )
        root = admin_client.get("/")

    assert admin_404.status_code == 404
    assert admin_404["Content-Type"].startswith("text/html")
    assert admin_bad_host.status_code == 400
    assert admin_bad_host["Content-Type"].startswith("text/html")
    assert root["Content-Type"].startswith("text/html")


def test_the_health_probes_reason_stays_one_line_of_text(client, monkeypatch):
    monkeypatch.setattr("tickets.intake.views.unapplied_migrations", lambda: ["tickets.0099_x"])

    response = client.get("/health")

    assert response.status_code == 503
    assert response["Content-Type"] == "text/plain"


def test_a_missing_page_off_the_api_is_the_sites_plain_404_page(admin_client):
    with override_settings(DEBUG=False):
        response = admin_client.get("/admin/no-such-page/")

    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")
    body = response.content.decode()
    assert "<h1>Not found</h1>" in body
    assert "There is no page at <code>/admin/no-such-page/</code>" in body


def test_a_server_error_off_the_api_is_the_sites_plain_500_page(monkeypatch):
    def boom(request):
        raise RuntimeError("boom")

    monkeypatch.setattr("project.views.render", boom)
    with override_settings(DEBUG=False):
        response = Client(raise_request_exception=False).get("/")

    assert response.status_code == 500
    assert response["Content-Type"].startswith("text/html")
    assert "<h1>Server error</h1>" in response.content.decode()
    assert "boom" not in response.content.decode()
