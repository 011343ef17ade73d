"""The webhook simulator behind `manage.py simulate`: plan, post, check.

It plays the ticket seller: it plans realistic orders (a seeded, reproducible plan), posts
their webhooks to the service the way a seller does (retrying what did not answer 200, with
the same Idempotency-Key, and repeating some on purpose), then watches the fake gateway's
`/fake-gateway/state` until every effect the plan implies is there, once.

Effects are judged only for the tickets of this run, so the gateway may hold anything else.

Split by step: `plan` (the orders, their webhooks and expected effects), `posting` (sending
them as a seller does), `effects` (reading the gateway back and checking).
"""

from __future__ import annotations

from devtools.simulation.effects import (
    EffectCheck,
    EffectRecord,
    EffectsReport,
    GatewayInspector,
    GatewayUnavailable,
    WaitProgress,
    check_effects,
    effect_records,
    wait_for_effects,
)
from devtools.simulation.plan import (
    DEFAULT_CURRENCY,
    EFFECTS,
    RECEIPTS,
    ExpectedEffects,
    PlanError,
    PlannedTicket,
    SimulationPlan,
    Webhook,
    plan_simulation,
)
from devtools.simulation.posting import (
    PostProgress,
    PostReport,
    WebhookPoster,
    service_problem,
    webhook_request,
)

__all__ = [
    "DEFAULT_CURRENCY",
    "EFFECTS",
    "RECEIPTS",
    "EffectCheck",
    "EffectRecord",
    "EffectsReport",
    "ExpectedEffects",
    "GatewayInspector",
    "GatewayUnavailable",
    "PlanError",
    "PlannedTicket",
    "PostProgress",
    "PostReport",
    "SimulationPlan",
    "WaitProgress",
    "Webhook",
    "WebhookPoster",
    "check_effects",
    "effect_records",
    "plan_simulation",
    "service_problem",
    "wait_for_effects",
    "webhook_request",
]
