"""What every read-only admin of engine rows shares; a domain app's admin borrows it too."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.safestring import SafeString

from outbox.models import Attempt

Fieldsets = Sequence[tuple[str | None, Mapping[str, Any]]]


def pretty_json(value: Any) -> SafeString:
    """JSON indented in a <pre>, escaped: payloads come from outside and may hold markup."""
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)
    return format_html('<pre class="outbox-json">{}</pre>', text)


def pre_text(value: str) -> SafeString | str:
    return format_html('<pre class="outbox-error">{}</pre>', value) if value else "-"


def fieldset_fields(fieldsets: Fieldsets) -> tuple[str, ...]:
    """Every field the fieldsets show, in order: a read-only admin's `readonly_fields`."""
    return tuple(name for _title, options in fieldsets for name in options["fields"])


class ReadOnlyMixin:
    """Rows written by the engine: viewable, never added, edited or deleted by hand."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class AttemptColumns:
    """How an attempt's duration and error read, in the inline and in the attempts list."""

    @admin.display(description="duration")
    def duration(self, attempt: Attempt) -> str:
        return f"{attempt.duration_ms:.1f} ms"

    @admin.display(description="error")
    def error_text(self, attempt: Attempt) -> SafeString | str:
        return pre_text(attempt.error)
