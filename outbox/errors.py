"""The engine's errors, in three groups.

- What a handler raises to say what happens next: `TransientError` (try again later),
  `PermanentError` (fail now), `Defer` (not yet, no attempt spent), `Cancel` (nothing to do).
  All are `TaskError`s; the retry policy (outbox.retry) turns them into the task's next state.
- What the engine raises inside a handler: `LeaseLost`, from `before_external_call()`.
- What the engine raises at a caller that broke a rule: `NotInTransaction`, `UnknownTaskKind`,
  `ValueTooLong`.
"""

from __future__ import annotations

# Whether the API answered the try's call: the engine keeps it on the try's Attempt row. Only a
# call that got NO answer (a timeout, a cut connection, a proxy's 504) can still have a write in
# flight; an API that answered, even 500, has finished with the request.
ANSWERED = "answered"
NO_ANSWER = "no_answer"
NOT_SENT = "not_sent"
REPLIES = (ANSWERED, NO_ANSWER, NOT_SENT)


class OutboxError(Exception):
    """Base class for the engine's errors."""


class TaskError(OutboxError):
    """What a handler raises to end its attempt early; the subclass says what happens next.

    `permanent` ones end the task; the others put it back (with backoff, or after
    `retry_after` seconds when given). `reply` says whether the API answered the call that
    failed (`ANSWERED`, `NO_ANSWER`, `NOT_SENT`; "" when no call was made or it is unknown):
    a kind registered with `settle_seconds` waits that long after a call with `NO_ANSWER`.
    """

    permanent: bool = False

    def __init__(
        self,
        message: str,
        *,
        http_status: int | None = None,
        retry_after: float | None = None,
        reply: str = "",
    ) -> None:
        super().__init__(message)
        if reply and reply not in REPLIES:
            raise ValueError(f"reply must be one of {REPLIES} or empty, got {reply!r}")
        self.message = message
        self.http_status = http_status
        self.retry_after = retry_after
        self.reply = reply


class TransientError(TaskError):
    """Try again later; `retry_after` (seconds) overrides the backoff when the API named one."""

    permanent = False


class PermanentError(TaskError):
    """Retrying cannot help (a 4xx, a bad payload): the task fails at once with this reason."""

    permanent = True


class NotInTransaction(OutboxError):
    """enqueue() was called outside a transaction, so the task could outlive or miss its cause."""


class UnknownTaskKind(OutboxError):
    """No handler is registered under this kind (in this worker: a rolling deploy, say)."""


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


class Misconfigured(Defer):
    """The destination is not the API the task needs (a wrong base URL, a route that answers
    404 or a redirect): no retry of the task can fix it, so it spends no attempt and waits,
    pending, while the client rests the destination's circuit. Never a task failure.
    """

    permanent = False


class LeaseLost(OutboxError):
    """The task's lease is gone, or too close to expiring for another external call.

    Raised before the call is started, never during it: nothing was sent. The task is given
    back (or already belongs to another pass).
    """


class ValueTooLong(OutboxError, ValueError):
    """A value is longer than its column: refused, never truncated."""
