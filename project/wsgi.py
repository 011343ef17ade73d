"""The WSGI application; a configuration error stops it with one line, not a traceback."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.wsgi import get_wsgi_application

from project.startup import check_web_start
from project.telemetry import start_tracing

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")


def answer_server_refusals_in_json() -> None:
    """gunicorn refuses some requests before the application sees them: a request line over
    its `limit_request_line` (414), headers over their limits (431), a request it cannot
    parse (400). Its page for them is HTML; here they are `{"error": ...}`, as every other
    error of the service (docs/API.md). Under another server, nothing changes."""
    server = sys.modules.get("gunicorn.util")
    if server is None:
        return

    def write_error(sock: Any, status_int: int, reason: str, mesg: str) -> None:
        text = f"{reason}: {mesg[:200]}" if mesg else reason
        body = json.dumps({"error": text}).encode()
        head = (
            f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        server.write_nonblock(sock, head.encode("latin-1") + body)

    server.write_error = write_error  # type: ignore[attr-defined]


try:
    # Before the application builds its middleware: the instrumentation inserts its own.
    start_tracing()
    application = get_wsgi_application()
except ImproperlyConfigured as exc:
    sys.stderr.write(f"Configuration error: {exc}\n")
    # Exit code 3 is gunicorn's "worker failed to boot": the arbiter stops instead of
    # starting workers that fail the same way, over and over.
    raise SystemExit(3) from None
check_web_start()
answer_server_refusals_in_json()
