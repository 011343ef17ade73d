"""A generic transactional outbox drained by a django-q2 cluster. Knows nothing of tickets.

Writes: `outbox.services.enqueue` / `enqueue_many` inside the caller's transaction.
Handlers: `@outbox.handler(kind, queue=..., max_attempts=...)`, raising `TransientError` or
`PermanentError`.
"""

from outbox.errors import PermanentError, TaskError, TransientError
from outbox.registry import TaskContext, handler

__all__ = ["PermanentError", "TaskContext", "TaskError", "TransientError", "handler"]
