"""The benchmark's report: the figures as measured, and the machine they were measured on."""

from __future__ import annotations

import os
import platform
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from django.db import connection


@dataclass
class Report:
    vendor: str
    lines: list[tuple[str, str, str]] = field(default_factory=list)
    log: Callable[[str], None] = print

    def add(self, figure: str, value: str, note: str = "") -> None:
        self.lines.append((figure, value, note))
        self.log(f"{figure}: {value} {note}".rstrip())


def machine() -> str:
    model = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    version = ""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SHOW server_version")
            version = f"PostgreSQL {cursor.fetchone()[0]}"
        else:
            cursor.execute("SELECT sqlite_version()")
            version = f"SQLite {cursor.fetchone()[0]}"
    import django
    import django_q

    return (
        f"{os.cpu_count()} CPUs ({model or platform.machine()}), Python "
        f"{platform.python_version()}, Django {django.get_version()}, django-q2 "
        f"{getattr(django_q, 'VERSION', '?')}, {version}"
    )
