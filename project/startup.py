"""How the processes start and fail: one plain line for a bad setting or an unmigrated database.

`manage.py` runs every command through `run_command`; `project.wsgi` calls `check_web_start`.
Both start tracing first when the OTEL_* variables ask for it (project.telemetry).
A configuration error or a database without its tables is the operator's to fix, not a bug:
the answer is one line that says what to do, not a traceback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

MIGRATE_COMMAND = "python manage.py migrate"
# Commands that read or write the application's tables: they refuse to start on a database
# that lacks them. Other commands (migrate, check, help, the fake gateway...) run anyway, and so
# does outbox_benchmark: it migrates the scratch database it is pointed at (--database-url).
NEEDS_MIGRATED_DATABASE = frozenset(
    {
        "qcluster",
        "outbox_status",
        "replay_tasks",
        "prune_outbox",
        "outbox_pause",
        "outbox_resume",
        "api_token",
        "createsuperuser",
        "changepassword",
        "runserver",
    }
)
# Commands that need the database but not its tables; with the ones above, they are told at
# once, in one line, when the database refuses them (a wrong name, role or password; or none
# answering), instead of waiting out the connection pool's 30 s and printing a traceback.
NEEDS_DATABASE = NEEDS_MIGRATED_DATABASE | {"migrate", "showmigrations", "outbox_benchmark"}
# Services ride out a database that does not answer yet (started before it, or restarting):
# only a refusal that lasts (no such database or role, a wrong password) stops them at start.
SERVICES = frozenset({"qcluster", "runserver"})
CONFIG_EXIT_CODE = 2
NOT_MIGRATED_EXIT_CODE = 3
DATABASE_EXIT_CODE = 4
# What PostgreSQL answers for a configuration that will not start working by itself.
_LASTING_REFUSALS = (
    "does not exist",
    "authentication failed",
    "no pg_hba.conf entry",
    "no password supplied",
    "not permitted to log in",
    "permission denied",
    "SSL was required",
    "does not support SSL",
)

_migrated = False


def unapplied_migrations() -> list[str] | None:
    """Migrations not applied to the default database; None when the database does not answer.

    Once everything is applied the answer is remembered: migrations are never unapplied by a
    running service, and /health asks often.
    """
    global _migrated
    if _migrated:
        return []
    from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
    from django.db.migrations.executor import MigrationExecutor

    try:
        executor = MigrationExecutor(connections[DEFAULT_DB_ALIAS])
        plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except DatabaseError:
        return None
    pending = [f"{migration.app_label}.{migration.name}" for migration, _ in plan]
    _migrated = not pending
    return pending


def database_refusal() -> tuple[str, bool] | None:
    """Why the default database refuses a connection, on one line, and whether that lasts; None
    when it answers. PostgreSQL only (SQLite opens or creates its file). One connection of
    its own with a 5 s timeout, outside Django's pool; libpq's message names the host, port,
    database or role, never the password.
    """
    from django.db import DEFAULT_DB_ALIAS, connections

    wrapper = connections[DEFAULT_DB_ALIAS]
    if wrapper.vendor != "postgresql":
        return None
    import psycopg

    from outbox.sql import own_connection_params

    try:
        psycopg.connect(**{**own_connection_params(), "connect_timeout": 5}).close()
    except psycopg.Error as exc:
        text = str(exc).strip()
        lines = text.splitlines() or [exc.__class__.__name__]
        reason = lines[0].removeprefix("connection failed: ").strip()
        # Every line: a host with several addresses reports each attempt, the last one first.
        return reason, any(marker in text for marker in _LASTING_REFUSALS)
    return None


def _runs_again_elsewhere(command: str, argv: list[str]) -> bool:
    if command != "outbox_benchmark":
        return False
    for index, arg in enumerate(argv):
        if arg.startswith("--database-url="):
            return arg.partition("=")[2] != os.environ.get("DATABASE_URL")
        if arg == "--database-url" and index + 1 < len(argv):
            return argv[index + 1] != os.environ.get("DATABASE_URL")
    return False


def database_refusal_message(reason: str) -> str:
    from django.conf import settings

    from project.env import mask_url

    url = mask_url(settings.DATABASE_URL)
    return f"Cannot connect to the database in DATABASE_URL ({url}): {reason}"


def not_migrated_message(pending: Sequence[str]) -> str:
    shown = ", ".join(pending[:3]) + (f" and {len(pending) - 3} more" if len(pending) > 3 else "")
    return (
        f"The database has {len(pending)} unapplied migration(s) ({shown}). "
        f"Apply them with: {MIGRATE_COMMAND}"
    )


def _fail(message: str, code: int) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()
    raise SystemExit(code)


def run_command(argv: list[str]) -> None:
    """`manage.py`: the command, with operator errors as one line and a non-zero exit."""
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line
    from django.db import DatabaseError

    from project.telemetry import start_tracing

    command = argv[1] if len(argv) > 1 else ""
    wants_help = any(arg in {"-h", "--help"} for arg in argv[2:])
    try:
        from django.conf import settings

        # Load the settings here: Django's own loader would defer a configuration error and
        # answer "Unknown command" for every command but its own.
        settings.INSTALLED_APPS  # noqa: B018
        # Before Django builds its middleware: the instrumentation inserts its own.
        start_tracing()
        if command in NEEDS_DATABASE and not wants_help:
            import django

            django.setup()
            # `outbox_benchmark --database-url X` runs itself again with X in DATABASE_URL:
            # that run checks X, not the database it will never use.
            refusal = None if _runs_again_elsewhere(command, argv) else database_refusal()
            if refusal is not None and (refusal[1] or command not in SERVICES):
                _fail(database_refusal_message(refusal[0]), DATABASE_EXIT_CODE)
        if command in NEEDS_MIGRATED_DATABASE and not wants_help:
            pending = unapplied_migrations()
            if pending:
                _fail(not_migrated_message(pending), NOT_MIGRATED_EXIT_CODE)
        execute_from_command_line(argv)
    except ImproperlyConfigured as exc:
        _fail(f"Configuration error: {exc}", CONFIG_EXIT_CODE)
    except BrokenPipeError:
        # `manage.py outbox_status | head -1`: the reader has gone, which is not an error.
        # Python would report the pipe again while flushing stdout at exit: point it elsewhere.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(0) from None
    except DatabaseError as exc:
        # A missing table: say which migrations to apply. Anything else (a database that does
        # not answer) is not asked about again, which would wait out the pool's timeout twice.
        text = str(exc)
        if "no such table" in text or "does not exist" in text:
            pending = unapplied_migrations()
            if pending:
                _fail(not_migrated_message(pending), NOT_MIGRATED_EXIT_CODE)
        raise


def check_web_start() -> None:
    """`project.wsgi`: say once, at start, that the database is not migrated (/health too)."""
    pending = unapplied_migrations()
    if pending:
        sys.stderr.write(f"{not_migrated_message(pending)}\n")
        sys.stderr.flush()
