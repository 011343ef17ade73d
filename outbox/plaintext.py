"""Identifiers and log fields are plain text: no character that breaks or hides a line.

A ticket id such as `t-1\\n2026-01-01 INFO forged` written into a plain log line forges a
second line; a right-to-left override (U+202E) makes a line read differently from what it
holds. Input carrying them is refused (the views), and the log formatters escape them as a
second line of defence (outbox.logging).
"""

from __future__ import annotations

import unicodedata

# Control (Cc: \\x00-\\x1f, \\x7f-\\x9f, NEL), format (Cf: bidi overrides, zero-width, BOM)
# and the Unicode line and paragraph separators (Zl U+2028, Zp U+2029), which several
# readers (str.splitlines, JavaScript) take as line breaks.
CONTROL_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def is_control(char: str) -> bool:
    return unicodedata.category(char) in CONTROL_CATEGORIES


def first_control_character(text: str) -> str | None:
    """The first control character in `text`, or None when it is plain text."""
    if text.isprintable():  # the common case, without a per-character lookup
        return None
    return next((char for char in text if is_control(char)), None)


def describe(char: str) -> str:
    """`U+000A (LINE FEED)`: how an error message names a refused character."""
    name = unicodedata.name(char, "") or _NAMED.get(char, "control character")
    return f"U+{ord(char):04X} ({name})"


def escape_controls(text: str) -> str:
    """`text` with every control character written as an escape: a newline becomes the two
    characters `\\n`, others `\\xNN` or `\\uNNNN`. Plain text is returned unchanged."""
    if text.isprintable():
        return text
    return "".join(_escape(char) if is_control(char) else char for char in text)


def _escape(char: str) -> str:
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
