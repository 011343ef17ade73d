"""The log formats: plain lines, or one JSON object per line for a log shipper (LOG_FORMAT).

Both escape control characters in every field (outbox.plaintext): a value that reached a log
line with a newline in it cannot forge a second line.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from outbox.correlation import get_correlation_id
from outbox.plaintext import escape_controls
from outbox.storable import REDACTED_EMAIL, redact
from outbox.tracing import log_ids

# The `extra=` fields the relay logs with. Only these are written: a stray extra cannot carry
# a secret or a payload (with its customer email) into the logs.
EXTRA_FIELDS = ("task_id", "kind", "subject", "outcome", "duration_ms")

__all__ = ["REDACTED_EMAIL", "JsonFormatter", "PlainFormatter", "redact"]

PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(correlation_id)s] %(message)s"


class PlainFormatter(logging.Formatter):
    """The classic one-line format, with control characters in its fields escaped.

    A traceback still spans lines, but each of them is escaped and indented, so no text in
    it (an exception message quoting a forged id) can start a line that reads as a record.
    """

    def __init__(self, fmt: str = PLAIN_FORMAT, **kwargs: Any) -> None:
        super().__init__(fmt, **kwargs)

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        ids = log_ids()
        if ids is not None:
            # At the end, so a reader of the classic columns finds them where they were.
            line = f"{line} trace_id={ids[0]} span_id={ids[1]}"
        return escape_controls(line)

    def formatException(self, ei: Any) -> str:
        return _indented(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return _indented(super().formatStack(stack_info))


def _indented(text: str) -> str:
    return "\n".join("  " + escape_controls(line) for line in text.split("\n"))


class JsonFormatter(logging.Formatter):
    """`{"time", "level", "logger", "message", "correlation_id", <relay extras>}` per line, and
    `trace_id`, `span_id` inside a span of a process that traces."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
            "correlation_id": _correlation_id(record),
        }
        ids = log_ids()
        if ids is not None:
            entry["trace_id"], entry["span_id"] = ids
        for field in EXTRA_FIELDS:
            value = getattr(record, field, None)
            if value is not None:
                entry[field] = value
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        # JSON would escape \n itself, but not U+2028 or U+202E (ensure_ascii is off), and a
        # reader that unescapes the value would still see a newline: escape before encoding.
        escaped = {k: escape_controls(v) if isinstance(v, str) else v for k, v in entry.items()}
        return json.dumps(escaped, default=_escaped_str, ensure_ascii=False)


def _escaped_str(value: Any) -> str:
    return escape_controls(str(value))


def _correlation_id(record: logging.LogRecord) -> str | None:
    # The filter (or the caller's extra) sets it, "-" meaning none; without the filter the
    # current request's or task's scope still knows it.
    value = getattr(record, "correlation_id", None) or get_correlation_id()
    return None if value in ("", "-") else str(value)
