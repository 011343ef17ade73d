"""System checks of the tickets domain (`manage.py check --deploy`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core import checks


@checks.register(checks.Tags.security, deploy=True)
def webhook_secret_check(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    if settings.WEBHOOK_SECRET:
        return []
    return [
        checks.Warning(
            "WEBHOOK_SECRET is not set: POST /tickets-status accepts unsigned webhooks from "
            "anyone who can reach it.",
            hint="Set WEBHOOK_SECRET to the seller's Standard Webhooks secret (whsec_...); "
            "see docs/SECURITY.md.",
            id="tickets.W001",
        )
    ]


@checks.register(checks.Tags.security, deploy=True)
def seller_endpoints_open_check(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    # Separate from W001: the webhook only takes data, these two refund money and list
    # every customer's email.
    if settings.WEBHOOK_SECRET:
        return []
    return [
        checks.Warning(
            "WEBHOOK_SECRET is not set: PUT /ticket-refund/{id} refunds any ticket and "
            "GET /tickets lists every customer's email, for anyone who can reach them.",
            hint="Set WEBHOOK_SECRET: both then need the seller's signature or a staff "
            "token with tickets.request_refund / tickets.view_ticket; see docs/SECURITY.md.",
            id="tickets.W002",
        )
    ]
