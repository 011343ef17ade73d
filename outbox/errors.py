"""The two errors a handler raises to tell the engine what to do next."""

from __future__ import annotations


class OutboxError(Exception):
    """Base class for the engine's errors."""


class TaskError(OutboxError):
    """A handler's failure: transient ones are retried with backoff, permanent ones are not."""

    permanent: bool = False

    def __init__(
        self,
        message: str,
        *,
        http_status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.http_status = http_status
        self.retry_after = retry_after


class TransientError(TaskError):
    """Try again later; `retry_after` (seconds) overrides the backoff when the API named one."""

    permanent = False


class PermanentError(TaskError):
    """Retrying cannot help (a 4xx, a bad payload): the task fails at once with this reason."""

    permanent = True


class NotInTransaction(OutboxError):
    """enqueue() was called outside a transaction, so the task could outlive or miss its cause."""


class UnknownTaskKind(OutboxError):
    """No handler is registered under this kind."""


class Defer(TaskError):
    """Not yet: the task waits `retry_after` seconds without spending an attempt.

    For a task that must follow another (void a receipt only once it exists).
    """

    permanent = False
