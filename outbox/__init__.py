"""A generic transactional outbox drained by a django-q2 cluster. Knows nothing of its domain.

What a domain app needs is here: `import outbox`, then
- `@outbox.handler(kind, queue=..., max_attempts=..., label=...)` registers a handler; it gets
  an `outbox.TaskContext` and raises `TransientError`, `PermanentError`, `Defer`, `Cancel` or
  `Misconfigured` (a destination that is not the API: the task waits, spending no attempt);
  an error says with `reply=` (`ANSWERED`, `NO_ANSWER`, `NOT_SENT`) whether the API answered,
  and `settle_seconds=` on the handler makes a kind wait after a call with no answer
  (`force_retry=` says, for the admin's "Retry at once", what skipping that wait risks);
- `outbox.enqueue(...)` / `outbox.enqueue_many([outbox.TaskSpec(...)])` inside the caller's
  transaction;
- `outbox.before_external_call()` before each external call a handler makes;
- `outbox.register_preflight(check)` for a check qcluster runs once at start-up;
- `outbox.console.links`, the operators' console: `register_subject_url(func)`, where
  `func(kind, subject) -> url | None` links what a task is about (its handler's `label` value)
  to the domain's own page; `register_search_url(label, func)`, a dashboard search box that
  sends its words as `?q=` to `func()`, the domain's own list (an admin changelist, say);
  `register_dashboard_link(label, func)`, a link to one of its pages;
  `register_task_search(func)`, where `func(term) -> dedupe keys | None` tells the task
  list's search which tasks a term names (found on the domain's own indexes, so the search
  does not scan every task's payload).
- `outbox.register_schedule(name=, func=, minutes=, migration=)`: a django-q2 schedule of the
  app's own (created by its `migration`), recreated when deleted as the relay's are;
- `outbox.console.links.register_dashboard_note(func)` and `register_status_check(name,
  func)`: a line on the dashboard, and a check `outbox_status --check` runs;
- `outbox.register_retention(hook)`: `hook(cutoff, dry_run) -> (label, rows)` deletes the
  app's own rows older than `cutoff`; `prune_outbox` and its schedule run it after the tasks;
  `outbox.delete_in_chunks(queryset, dry_run=...)` deletes in short transactions, as they do.

Beyond this surface a domain app may use `outbox.models`, `outbox.history`,
`outbox.runtime.circuit`, `outbox.correlation`, `outbox.plaintext`, `outbox.tracing` (a span
around a step; a stored trace context's id and link) and the console's
`outbox.console.api` (the staff API's base view), `outbox.console.admin_mixins` and
`outbox.console.links` and `outbox.console.audit` (the admin history an operator's
command writes; tests/test_import_direction.py holds the list). Names that need the
models are imported on first use: this package loads before the app registry is ready.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from outbox.errors import (
    ANSWERED,
    NO_ANSWER,
    NOT_SENT,
    Cancel,
    Defer,
    LeaseLost,
    Misconfigured,
    PermanentError,
    TaskError,
    TransientError,
)
from outbox.preflight import register as register_preflight
from outbox.registry import TaskContext, handler
from outbox.retention import delete_in_chunks
from outbox.retention import register as register_retention
from outbox.schedules import register as register_schedule

if TYPE_CHECKING:
    from outbox.conf import outbox_settings
    from outbox.lease import before_external_call
    from outbox.logging import redact
    from outbox.services import (
        EnqueuedTask,
        TaskSpec,
        enqueue,
        enqueue_many,
        tasks_cancel,
        tasks_retry,
        tasks_with_dedupe_keys,
    )
    from outbox.sql import insert_ignoring_conflicts

_LAZY = {
    "outbox_settings": "outbox.conf",
    "before_external_call": "outbox.lease",
    "redact": "outbox.logging",
    "tasks_with_dedupe_keys": "outbox.services",
    "EnqueuedTask": "outbox.services",
    "TaskSpec": "outbox.services",
    "enqueue": "outbox.services",
    "enqueue_many": "outbox.services",
    "tasks_cancel": "outbox.services",
    "tasks_retry": "outbox.services",
    "insert_ignoring_conflicts": "outbox.sql",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'outbox' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "ANSWERED",
    "NOT_SENT",
    "NO_ANSWER",
    "Cancel",
    "Defer",
    "EnqueuedTask",
    "LeaseLost",
    "Misconfigured",
    "PermanentError",
    "TaskContext",
    "TaskError",
    "TaskSpec",
    "TransientError",
    "before_external_call",
    "delete_in_chunks",
    "enqueue",
    "enqueue_many",
    "handler",
    "insert_ignoring_conflicts",
    "outbox_settings",
    "redact",
    "register_preflight",
    "register_retention",
    "register_schedule",
    "tasks_cancel",
    "tasks_retry",
    "tasks_with_dedupe_keys",
]
