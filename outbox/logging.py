"""The log formats: plain lines, or one JSON object per line for a log shipper (LOG_FORMAT).

Both escape control characters in every field (outbox.plaintext): a value that reached a log
line with a newline in it cannot forge a second line.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from typing import Any

from outbox.correlation import get_correlation_id
from outbox.plaintext import escape_controls

# The `extra=` fields the relay logs with. Only these are written: a stray extra cannot carry
# a secret or a payload (with its customer email) into the logs.
EXTRA_FIELDS = ("task_id", "kind", "subject", "outcome", "duration_ms")

# An error text can quote a request body; customer emails stay out of the logs all the same.
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
REDACTED_EMAIL = "[email]"


def redact(text: str) -> str:
    return _EMAIL.sub(REDACTED_EMAIL, text)


PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(correlation_id)s] %(message)s"


class PlainFormatter(logging.Formatter):
    """The classic one-line format, with control characters in its fields escaped.

    A traceback still spans lines, but each of them is escaped and indented, so no text in
    it (an exception message quoting a forged id) can start a line that reads as a record.
    """

    def __init__(self, fmt: str = PLAIN_FORMAT, **kwargs: Any) -> None:
        super().__init__(fmt, **kwargs)

    def formatMessage(self, record: logging.LogRecord) -> str:
        return escape_controls(super().formatMessage(record))

    def formatException(self, ei: Any) -> str:
        return _indented(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return _indented(super().formatStack(stack_info))


def _indented(text: str) -> str:
    return "\n".join("  " + escape_controls(line) for line in text.split("\n"))


class JsonFormatter(logging.Formatter):
    """`{"time", "level", "logger", "message", "correlation_id", <relay extras>}` per line."""

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
