"""Dotted paths that django-q2 rows stored before the runtime became a package.

Schedules are rewritten by migrations 0005 and 0013; a task queued before a deploy is pickled
with its dotted path and may still name these. Thin aliases: the code is in outbox.runtime.
"""

from __future__ import annotations

from outbox.runtime.passes import keep_passes_alive, run_pass

__all__ = ["keep_passes_alive", "run_pass"]
