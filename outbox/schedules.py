"""django-q2 schedules an app adds beside the relay's own, kept alive the same way.

The relay's schedules (keep-alive, prune) are listed in `outbox.runtime.passes.SCHEDULES`. An
app registers its own here in its AppConfig.ready() and creates the row in a migration; then
`qcluster` (at start), `outbox_status --repair-schedules` and the system check `outbox.W001`
treat it as theirs: a deleted one is named and recreated. The engine never knows what it runs.
"""

from __future__ import annotations

from typing import Any

_registered: dict[str, dict[str, Any]] = {}


def register(
    *, name: str, func: str, minutes: int, migration: tuple[str, str], hour: int | None = None
) -> None:
    """Keep the schedule `name` (running the dotted `func` every `minutes`) alive.

    `migration` is the (app, migration) that first creates it: before it is applied, the
    schedule's absence is no fault. `hour` (UTC) is when a recreated daily schedule first runs.
    """
    _registered[name] = {
        "name": name,
        "func": func,
        "minutes": minutes,
        "migration": migration,
        "hour": hour,
    }


def registered() -> list[dict[str, Any]]:
    return list(_registered.values())
