"""Outcomes are data from outside: make them storable before they reach a column.

An API's error page may hold NUL bytes (PostgreSQL's text and jsonb refuse them), lone
surrogates from a JSON `\\ud800` escape (no valid UTF-8 exists for them), or megabytes of
HTML. Both databases get the same cleaned text, so they behave the same.
"""

from __future__ import annotations

import re
from typing import Any

ERROR_LIMIT = 4000
REPLACEMENT = "\ufffd"


def storable_text(text: str, limit: int = ERROR_LIMIT) -> str:
    """`text` without NUL or unencodable characters, at most `limit` characters (the end kept:
    a traceback's last line names the error)."""
    if not text:
        return ""
    cleaned = text.replace("\x00", REPLACEMENT)
    try:
        cleaned.encode("utf-8")
    except UnicodeEncodeError:
        cleaned = "".join(REPLACEMENT if 0xD800 <= ord(c) <= 0xDFFF else c for c in cleaned)
    if len(cleaned) > limit:
        cleaned = "…" + cleaned[-(limit - 1) :]
    return cleaned


# An error text can quote a request body; customer emails stay out of the logs and the spans
# all the same (a domain's own error texts call `redact` before they are stored).
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
REDACTED_EMAIL = "[email]"


def redact(text: str) -> str:
    return _EMAIL.sub(REDACTED_EMAIL, text)


def storable_json(value: Any) -> Any:
    """A handler's result with every string (keys included) made storable."""
    if isinstance(value, str):
        return storable_text(value, limit=len(value) or 1)
    if isinstance(value, dict):
        return {storable_json(str(key)): storable_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [storable_json(item) for item in value]
    return value
