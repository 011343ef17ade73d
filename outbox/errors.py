"""The engine's errors: what a handler raises to say what happens next, and what the engine
raises at a caller that broke a rule."""

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


class Cancel(TaskError):
    """Nothing to do, now or later: the task is canceled with this reason, and not retried.

    For a task whose cause was withdrawn (a receipt for a ticket that was refunded before the
    receipt was issued). Its attempt records the reason.
    """

    permanent = True


class LeaseLost(OutboxError):
    """The task's lease is gone, or too close to expiring for another external call.

    Raised before the call is started, never during it: nothing was sent. The task is given
    back (or already belongs to another pass).
    """


class ValueTooLong(OutboxError, ValueError):
    """A value is longer than its column: refused, never truncated."""
