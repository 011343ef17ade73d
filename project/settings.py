"""Settings, read from the environment. Every helper fails loudly on a bad value."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from outbox.conf import DEFAULTS as OUTBOX_DEFAULTS
from project.env import (
    env_bool,
    env_choice,
    env_float,
    env_int,
    env_list,
    env_log_level,
    env_str,
    load_env_file,
    mask_url,
    refuse_debug_from_file,
)

BASE_DIR = Path(__file__).resolve().parent.parent

# The development `.env` is read only when ENV_FILE names it (scripts/serve.sh exports it; a
# shell beside it sets it by hand, README.md): a `.env` that merely lies in the directory, or
# was baked into an image, never switches production off (project.env.load_env_file).
_env_file = os.environ.get("ENV_FILE", "").strip()
_from_env_file = load_env_file(Path(_env_file)) if _env_file else set()


def env_url(name: str, default: str) -> str:
    raw = os.environ.get(name, default).rstrip("/")
    try:
        parts = urlsplit(raw)
        valid = parts.scheme in {"http", "https"} and bool(parts.netloc)
    except ValueError:  # e.g. an unbalanced '[' in the host
        valid = False
    if not valid:
        raise ImproperlyConfigured(
            f"{name}={mask_url(raw)!r} must be an http(s) URL such as http://host:8081."
        )
    return raw


def database_from_url(url: str) -> dict[str, Any]:
    """Django's DATABASES entry for a URL. Every error names DATABASE_URL on one line, with
    the password masked: the parser's own message is not quoted, as it can echo part of it
    (a password with an unencoded '#' is read as the port, "not an integer: '<part>'")."""
    try:
        config: dict[str, Any] = dict(dj_database_url.parse(url, conn_max_age=60))
    except (ValueError, KeyError):
        raise ImproperlyConfigured(
            f"DATABASE_URL={mask_url(url)!r} cannot be parsed: expected "
            "postgres://user:password@host:5432/name or sqlite:///path, with a numeric port "
            "and the password's special characters percent-encoded."
        ) from None
    engine = config["ENGINE"]
    if engine == "django.db.backends.sqlite3":
        # WAL lets readers run beside the writer; IMMEDIATE takes the write lock at BEGIN so
        # concurrent writers queue on the busy timeout instead of failing on lock upgrade.
        config["CONN_MAX_AGE"] = 0
        config["OPTIONS"] = {
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    elif engine == "django.db.backends.postgresql":
        # A pool per process (psycopg_pool): the relay's handler threads borrow a connection
        # for one task at a time, so a cluster holds a few connections, not one per thread.
        config["CONN_MAX_AGE"] = 0
        config["OPTIONS"] = {
            "pool": {
                "min_size": 1,
                "max_size": env_int("DATABASE_POOL_SIZE", 8, minimum=1),
                "timeout": 30,
            }
        }
        # With a pool this checks each connection on checkout: one killed while idle (a
        # database restart) is replaced instead of failing the next query.
        config["CONN_HEALTH_CHECKS"] = True
    else:
        raise ImproperlyConfigured(
            f"DATABASE_URL={mask_url(url)!r}: the scheme is not supported; use postgres:// or "
            "sqlite://."
        )
    config["TEST"] = {"NAME": os.environ.get("TEST_DATABASE_NAME") or None}
    return config


DEBUG = env_bool("DEBUG", False)
SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")
    SECRET_KEY = "django-insecure-development-only-key-never-use-in-production"

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost"] if DEBUG else [])
refuse_debug_from_file(
    debug=DEBUG, allowed_hosts=ALLOWED_HOSTS, from_file=_from_env_file, env_file=_env_file
)

# HTTPS only while DEBUG is off; each can be turned off (docs/SECURITY.md). Behind a proxy that
# terminates TLS, name the header it sets (SECURE_PROXY_SSL_HEADER=X-Forwarded-Proto, value
# `https`): only when the proxy always sets it and strips the client's own.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
# Load balancers probe over plain HTTP and do not follow redirects.
SECURE_REDIRECT_EXEMPT = [r"^health$", r"^health/relay$"]
_proxy_ssl_header = env_str("SECURE_PROXY_SSL_HEADER", "").strip()
if _proxy_ssl_header and not (
    _proxy_ssl_header.isascii() and _proxy_ssl_header.replace("-", "").isalnum()
):
    raise ImproperlyConfigured(
        f"SECURE_PROXY_SSL_HEADER={_proxy_ssl_header!r} must be a header name such as "
        "X-Forwarded-Proto."
    )
SECURE_PROXY_SSL_HEADER = (
    (f"HTTP_{_proxy_ssl_header.upper().replace('-', '_')}", "https") if _proxy_ssl_header else None
)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", not DEBUG)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", not DEBUG)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", not DEBUG)
# The admin's login form behind a proxy on another origin: https://admin.example.com,...
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    # Before django_q: its `qcluster` command extends django-q2's with a clean shutdown.
    "outbox",
    # The operators' console (admin pages, staff API, metrics, operator commands): no models.
    "outbox.console",
    "django_q",
    "tickets",
]
# The workshop (fake gateway, simulator, benchmark) is in a checkout, never in the wheel.
if importlib.util.find_spec("devtools") is not None:
    INSTALLED_APPS.append("devtools")

MIDDLEWARE = [
    # First, so it sees every answer, those of errors raised by the middleware below (a Host
    # not in ALLOWED_HOSTS) included: JSON errors on API paths (project.views).
    "project.views.JsonErrorsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "outbox.correlation.CorrelationIdMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    # A NUL in a query string would reach PostgreSQL as a DataError (a 500): a 400 instead.
    "project.views.NulInQueryMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "project.urls"
WSGI_APPLICATION = "project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # Site-wide pages (the root page, error pages, the admin's header) in the top-level
        # templates/, which the wheel carries too; each app's own sit in the app (APP_DIRS).
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Development keeps a SQLite file in the project; a production service must say where its
# data lives, rather than start silently on a file inside the app directory.
DATABASE_URL = env_str("DATABASE_URL", "").strip()
if not DATABASE_URL:
    if not DEBUG:
        raise ImproperlyConfigured(
            "DATABASE_URL must be set when DEBUG is off, e.g. "
            "postgres://user:password@host:5432/name."
        )
    DATABASE_URL = f"sqlite:///{BASE_DIR / 'db.sqlite3'}"
DATABASES = {"default": database_from_url(DATABASE_URL)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
# `2026-11-29 14:05:39 UTC` on every page (project/formats/en/formats.py says why).
FORMAT_MODULE_PATH = ["project.formats"]

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "var" / "static"

REST_FRAMEWORK = {
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "EXCEPTION_HANDLER": "outbox.console.api_errors.exception_handler",
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}

# The OpenAPI schema at /api/schema/ and its docs at /api/docs/; the Swagger UI assets come
# from drf-spectacular-sidecar through staticfiles, so the page needs no CDN.
SPECTACULAR_SETTINGS: dict[str, Any] = {
    "TITLE": "Tickets outbox",
    "VERSION": "1.0.0",
    "DESCRIPTION": (
        "The seller's webhook (unauthenticated by contract) and the operators' read API "
        "(token authentication, staff users only: `Authorization: Token <key>`; "
        "`manage.py api_token USERNAME` prints a key)."
    ),
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    # No validator badge: it would send the schema to validator.swagger.io.
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # The seller's contract as the validator has it: links, path ids (tickets/intake/contract.py).
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "tickets.intake.contract.postprocess_schema",
    ],
}

# /api/schema/ and /api/docs/ need a staff login (admin session or API token); 1 publishes
# them to anyone (project/api_docs.py).
API_DOCS_PUBLIC = env_bool("API_DOCS_PUBLIC", False)

# /metrics answers a request carrying `Authorization: Bearer <METRICS_TOKEN>`; while the
# token is empty, it answers only requests from the loopback address (docs/METRICS.md).
METRICS_TOKEN = env_str("METRICS_TOKEN", "")
# Without a token, loopback callers get the metrics only while this is on: by default only
# with DEBUG, as behind a reverse proxy on the same host every request is from 127.0.0.1
# (outbox.checks warns when production turns it on).
METRICS_LOOPBACK = env_bool("METRICS_LOOPBACK", DEBUG)

# The gateway hosting the receipts, payments and spreadsheets APIs (docs/GATEWAY_API.md).
GATEWAY_ADDR = env_url("GATEWAY_ADDR", "http://127.0.0.1:8081")

# Where the admin links a task's or a ticket's trace id (docs/OPERATORS.md, "Traces"): any
# tracing UI's URL with `{trace_id}` in it; Jaeger's own on this machine by default. Empty:
# the id is shown without a link. Tracing itself is set by the OTEL_* variables only.
TRACE_URL_TEMPLATE = env_str("TRACE_URL_TEMPLATE", "http://localhost:16686/trace/{trace_id}")
if TRACE_URL_TEMPLATE and (
    "{trace_id}" not in TRACE_URL_TEMPLATE
    or urlsplit(TRACE_URL_TEMPLATE).scheme not in {"http", "https"}
):
    raise ImproperlyConfigured(
        f"TRACE_URL_TEMPLATE={TRACE_URL_TEMPLATE!r} must be an http(s) URL with {{trace_id}} "
        "in it, such as http://localhost:16686/trace/{trace_id}."
    )

# The seller's webhook (docs/SECURITY.md). With WEBHOOK_SECRET set (`whsec_` + base64 key, as
# the Standard Webhooks spec), POST /tickets-status needs a valid signature; a malformed secret
# stops start-up (tickets.apps). Without it the webhook is unsigned, as in docs/API.md.
WEBHOOK_SECRET = env_str("WEBHOOK_SECRET", "")
WEBHOOK_MAX_BODY_BYTES = env_int("WEBHOOK_MAX_BODY_BYTES", 1024 * 1024, minimum=1)
WEBHOOK_MAX_TICKETS = env_int("WEBHOOK_MAX_TICKETS", 1000, minimum=1)

# A sheet append whose outcome was unclear (a 5xx, a timeout, a cut connection, a worker that
# died) is retried only after this long, and reads the sheet first: the sheets API has no
# idempotency key, and a slow write may land after the client gave up.
SHEET_SETTLE_SECONDS = env_float("SHEET_SETTLE_SECONDS", 60.0, minimum=0.0)

# The reconcile (docs/OPERATORS.md): it reads each sheet in pages of RECONCILE_PAGE_ROWS rows,
# at most RECONCILE_PAGES_PER_SECOND pages a second. RECONCILE_DRIFT_FAILS_CHECK=1 makes
# `outbox_status --check` fail while the last finished run has open drift (off: drift is the
# accountants' to work, not an outage).
RECONCILE_PAGE_ROWS = env_int("RECONCILE_PAGE_ROWS", 5000, minimum=1)
RECONCILE_PAGES_PER_SECOND = env_float("RECONCILE_PAGES_PER_SECOND", 20.0, minimum=0.1)
RECONCILE_DRIFT_FAILS_CHECK = env_bool("RECONCILE_DRIFT_FAILS_CHECK", False)

# The outbox relay. A pass claims and runs tasks for OUTBOX_PASS_SECONDS, then returns and
# chains its successor; it must end well before django-q2's timeout, itself below retry.
# settings.OUTBOX holds only what the environment sets: every default is outbox.conf's
# (OutboxSettings), and docs/GATEWAY.md's table is checked against it.
OUTBOX_ENV: dict[str, tuple[str, type[float] | type[int], float]] = {
    # variable: (settings.OUTBOX key, type, minimum)
    "OUTBOX_PASS_SECONDS": ("PASS_SECONDS", float, 1.0),
    "OUTBOX_MAX_TASK_SECONDS": ("MAX_TASK_SECONDS", float, 1.0),
    "OUTBOX_LEASE_SECONDS": ("LEASE_SECONDS", float, 1.0),
    "OUTBOX_RENEW_SECONDS": ("RENEW_SECONDS", float, 0.1),
    "OUTBOX_CALL_SECONDS": ("CALL_SECONDS", float, 0.5),
    "OUTBOX_UNKNOWN_KIND_RETRY_SECONDS": ("UNKNOWN_KIND_RETRY_SECONDS", float, 1.0),
    "OUTBOX_BATCH_SIZE": ("BATCH_SIZE", int, 1),
    "OUTBOX_THREADS": ("THREADS", int, 1),
    "OUTBOX_MAX_PASSES": ("MAX_PASSES", int, 1),
    "OUTBOX_POLL_SECONDS": ("POLL_SECONDS", float, 0.001),
    "OUTBOX_BACKOFF_BASE_SECONDS": ("BACKOFF_BASE_SECONDS", float, 0.0),
    "OUTBOX_BACKOFF_CAP_SECONDS": ("BACKOFF_CAP_SECONDS", float, 0.0),
    "OUTBOX_MAX_ATTEMPTS": ("DEFAULT_MAX_ATTEMPTS", int, 1),
    "OUTBOX_RETENTION_DAYS": ("RETENTION_DAYS", int, 1),
    # Circuit breaker per destination: opens after this many transient failures in a row.
    "OUTBOX_CIRCUIT_FAILURES": ("CIRCUIT_FAILURES", int, 1),
    "OUTBOX_CIRCUIT_COOLDOWN_SECONDS": ("CIRCUIT_COOLDOWN_SECONDS", float, 0.1),
    "OUTBOX_CIRCUIT_MAX_COOLDOWN_SECONDS": ("CIRCUIT_MAX_COOLDOWN_SECONDS", float, 0.1),
}
# Queue weights of the claim's lottery: OUTBOX_WEIGHT_CRITICAL, _DEFAULT, _LOW.
OUTBOX_WEIGHT_QUEUES = ("critical", "default", "low")


def outbox_from_env() -> dict[str, Any]:
    """settings.OUTBOX: the variables the environment sets, and nothing for those it does not."""
    found: dict[str, Any] = {}
    for name, (key, kind, minimum) in OUTBOX_ENV.items():
        if name in os.environ:
            if kind is int:
                found[key] = env_int(name, 0, minimum=int(minimum))
            else:
                found[key] = env_float(name, 0.0, minimum=minimum)
    if "OUTBOX_AUTOSTART" in os.environ:
        found["AUTOSTART"] = env_bool("OUTBOX_AUTOSTART", True)
    weights = {
        queue: env_int(f"OUTBOX_WEIGHT_{queue.upper()}", 0, minimum=1)
        for queue in OUTBOX_WEIGHT_QUEUES
        if f"OUTBOX_WEIGHT_{queue.upper()}" in os.environ
    }
    if weights:
        found["QUEUE_WEIGHTS"] = weights
    return found


OUTBOX: dict[str, Any] = outbox_from_env()

# qcluster's orderly stop on SIGTERM/SIGINT; then it kills its processes (outbox.shutdown).
OUTBOX_STOP_GRACE_SECONDS = env_float("OUTBOX_STOP_GRACE_SECONDS", 30.0, minimum=1.0)

Q_CLUSTER: dict[str, Any] = {
    "name": "outbox",
    "orm": "default",
    "workers": env_int(
        "Q_WORKERS", OUTBOX.get("MAX_PASSES", OUTBOX_DEFAULTS.max_passes) + 1, minimum=2
    ),
    "timeout": env_int("Q_TIMEOUT", 60, minimum=1),
    "retry": env_int("Q_RETRY", 90, minimum=2),
    "max_attempts": 1,
    "ack_failures": True,
    "save_limit": 100,
    "poll": 0.1,
    "catch_up": False,
    "label": "Django Q",
}

LOG_LEVEL = env_log_level("LOG_LEVEL", "INFO")
# `json`: one JSON object per line (outbox.logging.JsonFormatter), for a log shipper.
LOG_FORMAT = env_choice("LOG_FORMAT", "plain", ("plain", "json"))
LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"correlation": {"()": "outbox.correlation.CorrelationIdFilter"}},
    "formatters": {
        # Both escape control characters in every field (outbox.logging).
        "plain": {"()": "outbox.logging.PlainFormatter"},
        "json": {"()": "outbox.logging.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["correlation"],
        },
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
        "django-q": {"level": env_log_level("Q_LOG_LEVEL", "WARNING"), "propagate": True},
    },
}
