"""Is the relay doing its job? The checks behind `outbox_status --check` and `/health/relay`.

`/health` (the project's) answers whether this web process can serve: liveness. These checks
answer whether tasks are being delivered: a live relay pass somewhere, due tasks not piling
up, no destination resting, no dead task waiting for a person. The answer carries figures and
destination names only: no payload, no error text, nothing about a customer.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import timedelta

from django.db.models.functions import Now
from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET

from outbox.console import selectors
from outbox.models import RelayPass, Task
from outbox.runtime.passes import PASS_STALE_SECONDS

PASS_STALE = timedelta(seconds=PASS_STALE_SECONDS)


@dataclass(frozen=True, slots=True)
class Thresholds:
    """None leaves a figure unchecked. These defaults are documented in docs/OPERATORS.md."""

    max_oldest_due_seconds: float | None = 300.0
    max_failed: int | None = 0
    max_open_circuits: int | None = 0
    min_live_passes: int | None = 1


# The load balancer's view: a dead task needs a person, not a restart, so it is not checked.
ENDPOINT_THRESHOLDS = Thresholds(max_failed=None)


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    value: float
    limit: float
    ok: bool
    message: str


def evaluate(
    thresholds: Thresholds,
    *,
    oldest_due: timedelta | None,
    failed: int,
    open_circuits: list[str],
    live_passes: int,
) -> list[Check]:
    """One Check per threshold set; a crossed one says what crossed what."""
    checks = []
    if thresholds.max_oldest_due_seconds is not None:
        age = max(oldest_due.total_seconds(), 0.0) if oldest_due is not None else 0.0
        limit = thresholds.max_oldest_due_seconds
        checks.append(
            Check(
                "oldest_due",
                round(age, 3),
                limit,
                age <= limit,
                f"the oldest due task has waited {age:.0f}s "
                + _bound(age <= limit, f"at most {limit:g}s", f"more than {limit:g}s"),
            )
        )
    if thresholds.max_failed is not None:
        checks.append(
            Check(
                "failed",
                failed,
                thresholds.max_failed,
                failed <= thresholds.max_failed,
                f"{failed} failed task(s) "
                + _bound(
                    failed <= thresholds.max_failed,
                    f"at most {thresholds.max_failed}",
                    f"more than {thresholds.max_failed}",
                ),
            )
        )
    if thresholds.max_open_circuits is not None:
        n = len(open_circuits)
        checks.append(
            Check(
                "open_circuits",
                n,
                thresholds.max_open_circuits,
                n <= thresholds.max_open_circuits,
                f"{n} open circuit(s)"
                + (f": {', '.join(open_circuits)} " if open_circuits else " ")
                + _bound(
                    n <= thresholds.max_open_circuits,
                    f"at most {thresholds.max_open_circuits}",
                    f"more than {thresholds.max_open_circuits}",
                ),
            )
        )
    if thresholds.min_live_passes is not None:
        checks.append(
            Check(
                "live_passes",
                live_passes,
                thresholds.min_live_passes,
                live_passes >= thresholds.min_live_passes,
                f"{live_passes} live relay pass(es) "
                + _bound(
                    live_passes >= thresholds.min_live_passes,
                    f"at least {thresholds.min_live_passes}",
                    f"fewer than {thresholds.min_live_passes}",
                ),
            )
        )
    return checks


def _bound(ok: bool, allowed: str, crossed: str) -> str:
    """The threshold in words: what is allowed when it holds, what crossed it when not."""
    return f"(limit: {allowed})" if ok else f"({crossed})"


def current_checks(thresholds: Thresholds) -> list[Check]:
    """The checks on the tables as they are now; four queries at most."""
    failed = Task.objects.failed().count() if thresholds.max_failed is not None else 0
    live = RelayPass.objects.filter(heartbeat_at__gte=Now() - PASS_STALE).count()
    return evaluate(
        thresholds,
        oldest_due=selectors.oldest_due_task_age(),
        failed=failed,
        open_circuits=[c.destination for c in selectors.circuit_health() if not c.is_closed],
        live_passes=live,
    )


# A GET-only probe: a POST is a 405 naming GET, never a CSRF refusal (it changes nothing).
@csrf_exempt
@never_cache
@require_GET
def relay_health_view(request: HttpRequest) -> HttpResponse:
    """200 when every check passes, else 503; JSON of the checks either way."""
    checks = current_checks(ENDPOINT_THRESHOLDS)
    ok = all(check.ok for check in checks)
    body = {"ok": ok, "checks": [asdict(check) for check in checks]}
    return HttpResponse(
        json.dumps(body), status=200 if ok else 503, content_type="application/json"
    )
