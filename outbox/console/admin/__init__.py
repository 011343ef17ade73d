"""The outbox in the Django admin: tasks are read-only; each action narrows, calls one service.

Nobody edits or deletes a task here. Operators retry, cancel, re-run and pause through actions
that each need their own permission; `prune_outbox` deletes finished tasks. Importing this
package (the admin's autodiscovery does) registers every page: `tasks` (the list and the task
page; its actions are outbox.console.actions), `operations` (attempts, paused kinds, relay
passes) and the `filters` they share.
"""

from outbox.console.admin import operations, tasks
from outbox.console.admin.tasks import TaskAdmin

__all__ = ["TaskAdmin", "operations", "tasks"]
