"""Retention hooks: other apps' tables pruned by the same command, schedule and cutoff.

The engine knows nothing of its domain; a domain app that keeps rows which must not grow for
ever registers, in its AppConfig.ready(), a hook `hook(cutoff, dry_run) -> (label, rows)`:
it deletes (or, with `dry_run`, counts) its rows older than `cutoff`, in short transactions,
and says what it did. `prune_outbox` and the hourly schedule run every hook after the tasks.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

RetentionHook = Callable[[datetime, bool], tuple[str, int]]

_hooks: list[RetentionHook] = []


def register(hook: RetentionHook) -> RetentionHook:
    """Add a retention hook (once: a second registration of the same hook is ignored)."""
    if hook not in _hooks:
        _hooks.append(hook)
    return hook


def run_hooks(cutoff: datetime, *, dry_run: bool = False) -> list[tuple[str, int]]:
    """(label, rows deleted or, with dry_run, that would be) for each hook, in order."""
    return [hook(cutoff, dry_run) for hook in list(_hooks)]


def delete_in_chunks(queryset: Any, *, dry_run: bool, chunk: int = 5000) -> int:
    """Delete the rows of `queryset` a chunk at a time, each in its own short transaction."""
    from django.db import transaction

    if dry_run:
        return int(queryset.count())
    model = queryset.model
    total = 0
    while True:
        with transaction.atomic():
            ids = list(queryset.values_list("pk", flat=True)[:chunk])
            if not ids:
                return total
            total += model._default_manager.filter(pk__in=ids).delete()[0]
