"""The commands' audit trail: the same admin LogEntry history the admin actions write.

A command runs for an operator with a login on a machine, not a Django user. The entry is
recorded against the Django user of that name when one exists, else against a dedicated
inactive user (CLI_USERNAME, created on demand, unable to log in); the name given and the
reason are in the message either way, so a task's history page reads the same for both.
"""

from __future__ import annotations

import getpass
from collections.abc import Sequence

from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry
from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.core.management.base import CommandParser

from outbox.models import PausedKind, Task

CLI_USERNAME = "outbox-cli"


def os_user() -> str:
    """The login running the command; "" when the OS cannot say (a container without one)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return ""


def log_user_id(by: str) -> int:
    """The Django user named `by`, else the dedicated command-line user."""
    users = get_user_model()
    field = users.USERNAME_FIELD
    if by:
        found = users._default_manager.filter(**{field: by}).values_list("pk", flat=True).first()
        if found is not None:
            return int(found)
    user, created = users._default_manager.get_or_create(
        **{field: CLI_USERNAME}, defaults={"is_active": False}
    )
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    return int(user.pk)


def message(command: str, what: str, *, by: str, reason: str) -> str:
    """`Replayed by replay_tasks (by alice): the receipts API is back.`"""
    text = f"{what} by {command} (by {by or 'unknown'})"
    return f"{text}: {reason}" if reason else f"{text}."


def log_tasks(task_ids: Sequence[int], *, change_message: str, by: str) -> None:
    """One CHANGE entry per task, as the admin's actions write."""
    if not task_ids:
        return
    LogEntry.objects.log_actions(
        user_id=log_user_id(by),
        queryset=list(Task.objects.filter(id__in=task_ids).only("id", "kind", "state")),
        action_flag=CHANGE,
        change_message=change_message,
    )


def log_kinds(rows: Sequence[PausedKind], *, paused: bool, change_message: str, by: str) -> None:
    """Pausing adds a PausedKind row, resuming deletes it: logged as the admin logs them."""
    if not rows:
        return
    LogEntry.objects.log_actions(
        user_id=log_user_id(by),
        queryset=list(rows),
        action_flag=ADDITION if paused else DELETION,
        change_message=change_message,
    )


def log_prune(deleted: int, *, change_message: str, by: str) -> LogEntry:
    """One summary entry for a prune, on the Task model (no object: they are gone)."""
    return LogEntry.objects.create(
        user_id=log_user_id(by),
        content_type=ContentType.objects.get_for_model(Task),
        object_id=None,
        object_repr=f"{deleted} finished task(s)"[:200],
        action_flag=DELETION,
        change_message=change_message,
    )


def add_arguments(parser: CommandParser) -> None:
    """--by and --reason, the same for every command that changes the outbox."""
    parser.add_argument(
        "--by",
        default="",
        help="Who runs this, for the audit trail in the admin (default: your login; "
        f"recorded against the Django user of that name, else {CLI_USERNAME!r}).",
    )
    parser.add_argument(
        "--reason",
        default="",
        help="Why, for the audit trail (each task's history in the admin).",
    )
