from __future__ import annotations

import os

from django.apps import AppConfig

from devtools.benchmark_env import BENCHMARK_ENV


class DevtoolsConfig(AppConfig):
    """The workshop: fake gateway, simulator, benchmark. Never part of the built wheel."""

    name = "devtools"
    verbose_name = "Developer tools"

    def ready(self) -> None:
        if os.environ.get(BENCHMARK_ENV) == "1":
            from devtools.benchmark import handlers  # noqa: F401  (registers the benchmark's handlers)
