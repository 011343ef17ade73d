"""Checks a cluster runs once at start-up, before any task: is each destination reachable?

The domain registers them (tickets registers one per API); outbox knows no destination. A
check returns warnings: the cluster logs them and starts anyway, because the destination may
come up later and tasks then wait pending behind its circuit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

logger = logging.getLogger("outbox.preflight")

_checks: list[Callable[[], list[str]]] = []


def register(check: Callable[[], list[str]]) -> Callable[[], list[str]]:
    if check not in _checks:
        _checks.append(check)
    return check


def run() -> list[str]:
    warnings: list[str] = []
    for check in _checks:
        try:
            warnings.extend(check())
        except Exception as exc:  # a check must never stop the cluster
            warnings.append(f"start-up check {check.__name__} failed: {exc}")
    for warning in warnings:
        logger.warning("%s", warning)
    return warnings
