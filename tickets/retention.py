"""The webhook's own tables, pruned with the outbox's tasks (outbox.register_retention).

Both keep the same window as the tasks (`OUTBOX_RETENTION_DAYS`, or `prune_outbox
--older-than`). What each must keep, and why pruning it is safe (docs/OPERATORS.md):

- a delivery (its key, body hash and first answer) answers a repeat with the same key byte for
  byte. Once pruned, a repeat is taken as a new delivery of the same tickets: the tickets'
  state machine makes it enqueue nothing and it is answered 200 with the tickets as they
  stand, no tasks. A reused key with another body is then no longer refused (422).
- a message (a signed webhook's `webhook-id`) refuses a replay; a signature older than the
  verifier's tolerance is refused anyway, so a message is always kept for at least that long,
  whatever the cutoff.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.utils import timezone

import outbox
from tickets.intake.signature import TOLERANCE_SECONDS
from tickets.models import WebhookDelivery, WebhookMessage


def prune_deliveries(cutoff: datetime, dry_run: bool) -> tuple[str, int]:
    old = WebhookDelivery.objects.filter(received_at__lt=cutoff)
    return "webhook delivery(ies)", outbox.delete_in_chunks(old, dry_run=dry_run)


def prune_messages(cutoff: datetime, dry_run: bool) -> tuple[str, int]:
    # Never inside the signature's tolerance: there a replay must still be refused by its id.
    cutoff = min(cutoff, timezone.now() - timedelta(seconds=2 * TOLERANCE_SECONDS))
    old = WebhookMessage.objects.filter(received_at__lt=cutoff)
    return "webhook message(s)", outbox.delete_in_chunks(old, dry_run=dry_run)
