"""A JSON log format, one object per line, for a log shipper (settings: LOG_FORMAT=json)."""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from typing import Any

from outbox.correlation import get_correlation_id

# The `extra=` fields the relay logs with. Only these are written: a stray extra cannot carry
# a secret or a payload (with its customer email) into the logs.
EXTRA_FIELDS = ("task_id", "kind", "ticket_id", "outcome", "duration_ms")

# An error text can quote a request body; customer emails stay out of the logs all the same.
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
REDACTED_EMAIL = "[email]"


def redact(text: str) -> str:
    return _EMAIL.sub(REDACTED_EMAIL, text)


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
        return json.dumps(entry, default=str, ensure_ascii=False)


def _correlation_id(record: logging.LogRecord) -> str | None:
    # The filter (or the caller's extra) sets it, "-" meaning none; without the filter the
    # current request's or task's scope still knows it.
    value = getattr(record, "correlation_id", None) or get_correlation_id()
    return None if value in ("", "-") else str(value)
