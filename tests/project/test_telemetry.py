"""When a process traces: only when the OTEL_* variables name where spans go; else nothing at
all is installed, and a bad variable stops start-up in one line naming it."""

from __future__ import annotations

import subprocess
import sys

import pytest
import requests
from django.core.exceptions import ImproperlyConfigured
from opentelemetry import trace

from outbox import tracing
from project import telemetry
from project.settings import BASE_DIR

ENDPOINT = "http://127.0.0.1:4318"


@pytest.mark.parametrize(
    ("environ", "wanted"),
    [
        ({}, False),
        ({"OTEL_SERVICE_NAME": "shop", "OTEL_TRACES_SAMPLER": "always_on"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{ENDPOINT}/v1/traces"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "  "}, False),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT}, False),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT}, False),
        ({"OTEL_SDK_DISABLED": "false", "OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT}, True),
    ],
)
def test_tracing_is_on_only_when_the_environment_names_where_spans_go(environ, wanted):
    assert telemetry.tracing_wanted(environ) is wanted


def test_an_exporter_that_is_not_installed_is_refused_by_name():
    with pytest.raises(ImproperlyConfigured, match="OTEL_TRACES_EXPORTER='jaeger'"):
        telemetry.tracing_wanted({"OTEL_TRACES_EXPORTER": "jaeger"})


def test_without_otel_variables_nothing_is_installed(monkeypatch):
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_TRACES_EXPORTER", "OTEL_SDK_DISABLED"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(telemetry, "_started", False)
    send = requests.Session.send

    assert telemetry.start_tracing() is False

    assert tracing.tracer() is None
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    assert requests.Session.send is send, "requests is not instrumented"
    from django.conf import settings

    assert not any("opentelemetry" in m for m in settings.MIDDLEWARE)


@pytest.mark.parametrize(
    ("variable", "value", "said"),
    [
        ("OTEL_TRACES_EXPORTER", "zipkin", "OTEL_TRACES_EXPORTER='zipkin'"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc", "OTEL_EXPORTER_OTLP_PROTOCOL='grpc'"),
        ("TRACE_URL_TEMPLATE", "http://jaeger/trace/", "TRACE_URL_TEMPLATE="),
    ],
)
def test_a_bad_tracing_variable_stops_start_up_in_one_line(variable, value, said):
    env = {"PATH": "/usr/bin:/bin", "DEBUG": "1", variable: value}
    if variable == "OTEL_EXPORTER_OTLP_PROTOCOL":
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = ENDPOINT
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 2
    assert said in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_process_that_does_not_trace_never_imports_opentelemetry():
    # `opentelemetry.propagate` reads the propagators' entry points on import: 10-14 ms of
    # every start (`python -X importtime manage.py check`), paid by processes that never trace.
    code = (
        "import sys, django; django.setup(); "
        "import outbox.tracing, outbox.logging, outbox.services, outbox.runtime.execution, "
        "outbox.console.admin, tickets.services, project.telemetry, project.urls; "
        "from project.telemetry import start_tracing; start_tracing(); "
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=BASE_DIR,
        env={"PATH": "/usr/bin:/bin", "DEBUG": "1", "DJANGO_SETTINGS_MODULE": "project.settings"},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
