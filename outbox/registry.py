"""Handlers, registered by name: `@outbox.handler("shop.send_invoice", queue="critical")`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from outbox.errors import UnknownTaskKind

JsonResult = dict[str, Any] | list[Any] | str | int | float | bool | None


@dataclass(frozen=True, slots=True)
class TaskContext:
    """What a handler gets: the task's data, never the model row."""

    id: int
    kind: str
    payload: dict[str, Any]
    idempotency_key: str
    attempt: int
    max_attempts: int
    correlation_id: str
    created_at: datetime | None = None


HandlerFunc = Callable[[TaskContext], JsonResult]


@dataclass(frozen=True, slots=True)
class Handler:
    kind: str
    func: HandlerFunc
    queue: str
    max_attempts: int | None
    # The payload key that names what a task is about (an order, a ticket): logged as the
    # attempt's `subject`, so an operator can follow one subject through the logs.
    label: str | None = None
    # What running a succeeded task of this kind again does, in an operator's words: the
    # re-run confirmation page shows it for each kind it is about to run again.
    rerun: str | None = None
    # What a forced retry (one that does not wait for a write of an unanswered try to land)
    # risks for this kind, in an operator's words: the force-retry confirmation shows it.
    force_retry: str | None = None
    # For an API without idempotency keys (append a row, send a message): after a try whose
    # call got no answer, the next try waits this long from that try's start, for a write it
    # may have sent to land. Seconds, or a function giving them (read at every use, so a
    # setting can be changed by tests and deployments). None: the kind never waits for this.
    settle_seconds: float | Callable[[], float] | None = None

    def settle(self) -> float | None:
        """This kind's settle time in seconds, or None when it has none."""
        value = self.settle_seconds
        if value is None:
            return None
        return float(value() if callable(value) else value)

    def subject(self, payload: Any) -> str | None:
        """The value of this kind's `label` key in `payload`, or None."""
        if self.label is None or not isinstance(payload, dict):
            return None
        value = payload.get(self.label)
        return None if value is None else str(value)


_registry: dict[str, Handler] = {}


def handler(
    kind: str,
    *,
    queue: str = "default",
    max_attempts: int | None = None,
    label: str | None = None,
    rerun: str | None = None,
    force_retry: str | None = None,
    settle_seconds: float | Callable[[], float] | None = None,
) -> Callable[[HandlerFunc], HandlerFunc]:
    """Register `func` as the handler of `kind`. The kind is stored on tasks: never rename it.

    `label` names the payload key whose value the attempt logs show as `subject`; `rerun` says
    what running a succeeded task again does (the admin asks with it before a re-run), and
    `force_retry` what a retry that skips the settle risks (the admin asks with it before one).
    `settle_seconds` is for a kind whose API has no idempotency key: after a try whose call got
    no answer (the handler raised an error with `reply=NO_ANSWER`, or its worker vanished
    mid-try), no try of the task starts before that try's start plus this long, an operator's
    retry included; the handler still has to look before it writes again.
    """
    from outbox.models import Queue  # models import lazily: this module loads before apps

    if queue not in Queue.values:
        raise ValueError(f"queue {queue!r} is not one of {Queue.values}")

    def register(func: HandlerFunc) -> HandlerFunc:
        existing = _registry.get(kind)
        if existing is not None and existing.func is not func:
            raise ValueError(f"a handler for {kind!r} is already registered: {existing.func!r}")
        _registry[kind] = Handler(
            kind=kind,
            func=func,
            queue=queue,
            max_attempts=max_attempts,
            label=label,
            rerun=rerun,
            force_retry=force_retry,
            settle_seconds=settle_seconds,
        )
        return func

    return register


def get_handler(kind: str) -> Handler:
    try:
        return _registry[kind]
    except KeyError:
        raise UnknownTaskKind(f"no handler is registered for task kind {kind!r}") from None


def registered_kinds() -> list[str]:
    return sorted(_registry)


def rerun_note(kind: str) -> str | None:
    """What re-running a succeeded task of `kind` does, as its handler declared; None if unsaid."""
    found = _registry.get(kind)
    return None if found is None else found.rerun


def force_retry_note(kind: str) -> str | None:
    """What a forced retry of a task of `kind` risks, as its handler declared; None if unsaid."""
    found = _registry.get(kind)
    return None if found is None else found.force_retry


def unregister(kind: str) -> None:
    """For tests that register throwaway handlers."""
    _registry.pop(kind, None)
