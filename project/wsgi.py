"""The WSGI application; a configuration error stops it with one line, not a traceback."""

from __future__ import annotations

import os
import sys

from django.core.exceptions import ImproperlyConfigured
from django.core.wsgi import get_wsgi_application

from project.startup import check_web_start
from project.telemetry import start_tracing

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

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
