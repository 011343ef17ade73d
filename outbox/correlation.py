"""Correlation ids: read from a request, kept in a context variable, put on every log line."""

from __future__ import annotations

import contextvars
import logging
import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from django.http import HttpRequest, HttpResponse

HEADER = "Correlation-ID"
_VALID = re.compile(r"^[A-Za-z0-9._:\-]{1,64}$")

_current: contextvars.ContextVar[str] = contextvars.ContextVar("correlation_id", default="")


def new_correlation_id() -> str:
    return f"gen_{uuid.uuid4()}"


def get_correlation_id() -> str:
    return _current.get()


def set_correlation_id(correlation_id: str) -> None:
    """Set it for the rest of the current context: for code that runs in a context of its own
    (each task's handler does); elsewhere `correlation_scope` restores the previous one."""
    _current.set(correlation_id)


@contextmanager
def correlation_scope(correlation_id: str) -> Iterator[None]:
    token = _current.set(correlation_id)
    try:
        yield
    finally:
        _current.reset(token)


def clean_correlation_id(raw: str | None) -> str:
    """The caller's id when it is a sane token, else a fresh one (it goes in headers and logs)."""
    # fullmatch: `$` of match() would let one trailing newline through into the logs.
    if raw and _VALID.fullmatch(raw):
        return raw
    return new_correlation_id()


class CorrelationIdMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        correlation_id = clean_correlation_id(request.headers.get(HEADER))
        request.correlation_id = correlation_id  # type: ignore[attr-defined]
        with correlation_scope(correlation_id):
            response = self.get_response(request)
        if HEADER not in response:
            response[HEADER] = correlation_id
        return response


class CorrelationIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "correlation_id"):
            record.correlation_id = _current.get() or "-"
        return True
