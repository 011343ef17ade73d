from __future__ import annotations

import os

from django.apps import AppConfig

# Set by the benchmark on the clusters it starts: only they know its no-op and HTTP handlers.
BENCHMARK_ENV = "OUTBOX_BENCHMARK_HANDLERS"


class DevtoolsConfig(AppConfig):
    """The workshop: fake gateway, simulator, benchmark. Never part of the built wheel."""

    name = "devtools"
    verbose_name = "Developer tools"

    def ready(self) -> None:
        if os.environ.get(BENCHMARK_ENV) == "1":
            from devtools import benchmark  # noqa: F401  (registers the benchmark's handlers)
