"""How the processes start and fail: one plain line for a bad setting or an unmigrated database.

`manage.py` runs every command through `run_command`; `project.wsgi` calls `check_web_start`.
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
CONFIG_EXIT_CODE = 2
NOT_MIGRATED_EXIT_CODE = 3

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

    command = argv[1] if len(argv) > 1 else ""
    wants_help = any(arg in {"-h", "--help"} for arg in argv[2:])
    try:
        from django.conf import settings

        # Load the settings here: Django's own loader would defer a configuration error and
        # answer "Unknown command" for every command but its own.
        settings.INSTALLED_APPS  # noqa: B018
        if command in NEEDS_MIGRATED_DATABASE and not wants_help:
            import django

            django.setup()
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
