"""What every read-only admin of engine rows shares; a domain app's admin borrows it too."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from outbox.models import Attempt
from outbox.tracing import trace_id_of, trace_url

Fieldsets = Sequence[tuple[str | None, Mapping[str, Any]]]


def pretty_json(value: Any) -> SafeString:
    """JSON indented in a <pre>, escaped: payloads come from outside and may hold markup."""
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)
    return format_html('<pre class="outbox-json">{}</pre>', text)


def trace_link(trace_context: Any) -> SafeString | str:
    """A stored trace context's trace id, linked to the tracing UI (settings.TRACE_URL_TEMPLATE,
    Jaeger's by default); after an operator's retry, the first trace too."""
    carrier = trace_context if isinstance(trace_context, dict) else {}
    parts = []
    for label, traceparent in (
        ("", carrier.get("traceparent")),
        ("first: ", carrier.get("origin")),
    ):
        trace_id = trace_id_of({"traceparent": traceparent})
        if trace_id is None:
            continue
        url = trace_url(trace_id)
        if url:
            parts.append(
                format_html(
                    '{}<a href="{}" target="_blank" rel="noopener"><code>{}</code></a>',
                    label,
                    url,
                    trace_id,
                )
            )
        else:
            parts.append(format_html("{}<code>{}</code>", label, trace_id))
    return format_html_join(mark_safe("<br>"), "{}", ((part,) for part in parts)) if parts else "-"


def pre_text(value: str) -> SafeString | str:
    """The whole text, wrapped at the box's edge (outbox/console/static/outbox/admin.css)."""
    return format_html('<pre class="outbox-error">{}</pre>', value) if value else "-"


def folded_text(value: str, *, summary: str, limit: int = 300) -> SafeString | str:
    """A short text whole; a long one as its `summary` line, the full text one click away."""
    if not value:
        return "-"
    if len(value) <= limit and "\n" not in value.strip():
        return pre_text(value)
    return format_html(
        '<details class="outbox-fold"><summary class="outbox-wrap">{}</summary>{}</details>',
        summary[:limit],
        pre_text(value),
    )


def cut_line(value: str, *, limit: int = 120) -> SafeString | str:
    """One line for a list cell, cut at `limit`, the whole text in its tooltip."""
    if not value:
        return ""
    line = value.strip().splitlines()[0] if value.strip() else ""
    shown = line if len(line) <= limit else line[: limit - 1] + "…"
    return format_html('<span class="outbox-clamp" title="{}">{}</span>', value[:2000], shown)


def attempts_in_words(attempts: int, max_attempts: int, *, finished: bool) -> str:
    """`attempt 7 (budget 36 tries, 29 left)`: the raw `7/36` read like a fraction done.

    A retry adds the kind's whole budget to the tries already spent; a deferral (a circuit
    open, say) spends none.
    """
    if attempts == 0:
        return f"not tried yet (budget {max_attempts} tries)"
    if finished:
        return f"attempt {attempts} (budget {max_attempts} tries)"
    left = max(max_attempts - attempts, 0)
    return f"attempt {attempts} (budget {max_attempts} tries, {left} left)"


def retry_button(task_id: int, *, back: str, label: str = "Retry now") -> SafeString:
    """A button that posts its page's form to the task's retry view, then comes `back`.

    `formaction`, not a form of its own: the admin's change page is already one form, and a
    form inside a form is not HTML. The page's CSRF token goes along with it.
    """
    return format_html(
        '<button type="submit" class="button" formaction="{}" formmethod="post" '
        'name="next" value="{}">{}</button>',
        reverse("admin:outbox_task_retry", args=[task_id]),
        back,
        label,
    )


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
