"""Production settings: `check --deploy` is clean, CSRF exemptions are few, logins are needed."""

from __future__ import annotations

import base64
import os
import re
import secrets
import subprocess
import sys
import tempfile
from typing import Any

import pytest
from django.test import Client, override_settings
from django.urls import URLPattern, URLResolver, get_resolver

from project.settings import BASE_DIR
from tickets.checks import seller_endpoints_open_check, webhook_secret_check

WEBHOOK_SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()
# Settings a production environment may set; each test states its own.
_SECURITY_VARIABLES = (
    "DEBUG",
    "SECRET_KEY",
    "ALLOWED_HOSTS",
    "WEBHOOK_SECRET",
    "SECURE_SSL_REDIRECT",
    "SECURE_PROXY_SSL_HEADER",
    "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS",
    "SECURE_HSTS_PRELOAD",
    "SESSION_COOKIE_SECURE",
    "CSRF_COOKIE_SECURE",
)


def production_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SECURITY_VARIABLES}
    env.update(
        DEBUG="0",
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="tickets.example.com",
        WEBHOOK_SECRET=WEBHOOK_SECRET,
    )
    # Production needs a DATABASE_URL; `check` does not connect, so any file path will do
    # when the suite itself runs on SQLite.
    env.setdefault("DATABASE_URL", f"sqlite:///{tempfile.gettempdir()}/deploy-check.sqlite3")
    env.update(overrides)
    return {k: v for k, v in env.items() if v != ""}


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_check_deploy_is_clean_with_production_settings():
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=production_env())

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout
    assert "WARNING" not in result.stderr + result.stdout


def test_check_deploy_warns_when_no_webhook_secret_is_set():
    env = production_env(WEBHOOK_SECRET="")

    result = manage("check", "--deploy", env=env)
    strict = manage("check", "--deploy", "--fail-level", "WARNING", env=env)

    assert result.returncode == 0
    assert "(tickets.W001) WEBHOOK_SECRET is not set" in result.stderr
    assert strict.returncode != 0


def test_check_deploy_warns_that_refund_and_list_are_open_without_a_secret():
    result = manage("check", "--deploy", env=production_env(WEBHOOK_SECRET=""))

    # Exactly the webhook's warning and the new one: nothing else is left open.
    assert set(re.findall(r"\(([a-z_]+\.[EWC]\d{3})\)", result.stderr)) == {
        "tickets.W001",
        "tickets.W002",
    }
    assert (
        "(tickets.W002) WEBHOOK_SECRET is not set: PUT /ticket-refund/{id} refunds any ticket "
        "and GET /tickets lists every customer's email, for anyone who can reach them."
    ) in result.stderr
    assert "System check identified 2 issues (0 silenced)." in result.stderr + result.stdout


def test_the_open_endpoints_check_reads_the_setting_at_check_time():
    with override_settings(WEBHOOK_SECRET=""):
        [warning] = seller_endpoints_open_check()
    with override_settings(WEBHOOK_SECRET=WEBHOOK_SECRET):
        assert seller_endpoints_open_check() == []

    assert warning.id == "tickets.W002"


def test_turning_the_ssl_redirect_off_brings_its_warning_back():
    result = manage("check", "--deploy", env=production_env(SECURE_SSL_REDIRECT="0"))

    assert "security.W008" in result.stderr


def test_a_malformed_webhook_secret_stops_start_up_without_quoting_it():
    # No space: spaces separate the secrets of a rollover (tests/tickets/test_secret_rotation.py).
    secret = "whsec_this-is-not-base64!"

    result = manage("check", env=production_env(WEBHOOK_SECRET=secret))

    assert result.returncode != 0
    assert result.stderr.startswith("Configuration error: WEBHOOK_SECRET")
    assert "WEBHOOK_SECRET: the part after 'whsec_' is not valid base64." in result.stderr
    assert "this-is-not-base64" not in result.stderr


def settings_of(env: dict[str, str], *names: str) -> list[str]:
    code = (
        "import django; django.setup(); from django.conf import settings; "
        f"print(*[repr(getattr(settings, n)) for n in {list(names)!r}], sep='\\n')"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=BASE_DIR,
        env={**env, "DJANGO_SETTINGS_MODULE": "project.settings"},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return result.stdout.splitlines()


def test_https_settings_default_on_in_production_and_off_in_development():
    names = ("SECURE_SSL_REDIRECT", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE")

    assert settings_of(production_env(), *names, "SECURE_HSTS_SECONDS") == [
        "True",
        "True",
        "True",
        "31536000",
    ]
    assert settings_of(production_env(DEBUG="1"), *names, "SECURE_HSTS_SECONDS") == [
        "False",
        "False",
        "False",
        "0",
    ]


def test_behind_a_tls_proxy_the_header_it_sets_is_trusted_and_the_redirect_can_be_off():
    env = production_env(SECURE_PROXY_SSL_HEADER="X-Forwarded-Proto", SECURE_SSL_REDIRECT="0")

    assert settings_of(env, "SECURE_PROXY_SSL_HEADER", "SECURE_SSL_REDIRECT") == [
        "('HTTP_X_FORWARDED_PROTO', 'https')",
        "False",
    ]


def test_a_proxy_header_that_is_not_a_header_name_stops_start_up():
    result = manage("check", env=production_env(SECURE_PROXY_SSL_HEADER="X-Proto: https"))

    assert result.returncode != 0
    assert "SECURE_PROXY_SSL_HEADER='X-Proto: https' must be a header name" in result.stderr


def test_the_webhook_secret_check_reads_the_setting_at_check_time():
    with override_settings(WEBHOOK_SECRET=""):
        [warning] = webhook_secret_check()
    with override_settings(WEBHOOK_SECRET=WEBHOOK_SECRET):
        assert webhook_secret_check() == []

    assert warning.id == "tickets.W001"


# --- CSRF and logins --------------------------------------------------------------------------


def _patterns(resolver: URLResolver, prefix: str = "") -> list[tuple[str, URLPattern]]:
    found = []
    for entry in resolver.url_patterns:
        if isinstance(entry, URLResolver):
            found += _patterns(entry, prefix + str(entry.pattern))
        else:
            found.append((prefix + str(entry.pattern), entry))
    return found


def _writes(callback: Any) -> bool:
    """Whether a view may handle an unsafe method; a plain function is assumed to."""
    view_class = getattr(callback, "cls", None) or getattr(callback, "view_class", None)
    if view_class is None:
        return True
    return any(hasattr(view_class, method) for method in ("post", "put", "patch", "delete"))


def _refuses_posts(route: str) -> bool:
    """Whether a view without URL parameters answers a POST with 405 (a GET-only probe)."""
    if "<" in route:
        return False
    return Client(enforce_csrf_checks=True).post(f"/{route}").status_code == 405


@pytest.mark.django_db
def test_only_the_sellers_endpoints_take_writes_without_a_csrf_token():
    # The probes (/health, /metrics, /health/relay) are exempt too, so that a POST gets a 405
    # and not a CSRF page: they take no write.
    exempt = {
        route
        for route, pattern in _patterns(get_resolver())
        if getattr(pattern.callback, "csrf_exempt", False)
        and _writes(pattern.callback)
        and not _refuses_posts(route)
    }

    assert exempt == {"tickets-status", "ticket-refund/<str:ticket_id>"}


@pytest.mark.django_db
def test_the_sellers_endpoints_work_without_a_csrf_token_and_the_admin_login_does_not():
    client = Client(enforce_csrf_checks=True)

    webhook = client.post(
        "/tickets-status",
        {"tickets": []},
        content_type="application/json",
        headers={"Idempotency-Key": "k"},
    )
    refund = client.put("/ticket-refund/unknown")
    login = client.post("/admin/login/", {"username": "a", "password": "b"})

    assert webhook.status_code == 400  # reached the view: the body is what is wrong
    assert refund.status_code == 404
    assert login.status_code == 403


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/admin/", 302),
        ("/api/tasks/1", 401),
        ("/api/tickets/t-1", 401),
        ("/api/schema/", 401),
        ("/api/docs/", 302),
    ],
)
def test_the_admin_and_the_operator_api_need_a_login(client, path, expected):
    response = client.get(path)

    assert response.status_code == expected
    if expected == 302:
        assert response["Location"].startswith("/admin/login/")


@pytest.mark.django_db
@override_settings(WEBHOOK_SECRET=WEBHOOK_SECRET)
@pytest.mark.parametrize(("method", "path"), [("put", "/ticket-refund/t-1"), ("get", "/tickets")])
def test_with_a_secret_the_sellers_other_endpoints_need_a_login_too(client, method, path):
    response = getattr(client, method)(path)

    assert response.status_code == 401
