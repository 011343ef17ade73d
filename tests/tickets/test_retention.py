"""Webhook deliveries and messages are pruned with the tasks, and a repeat after the prune is
still answered right: by the tickets' state, with no new task and no second effect."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.test import override_settings
from django.utils import timezone

from outbox.models import Task
from outbox.services import prune_finished_tasks
from tests.conftest import ticket
from tests.tickets.test_exactly_once import drain, effects
from tests.tickets.test_webhook_security import post_signed, signed_mode  # noqa: F401
from tickets.intake.signature import TOLERANCE_SECONDS
from tickets.models import WebhookDelivery, WebhookMessage

pytestmark = pytest.mark.django_db(transaction=True)


def age_everything(days: int = 31) -> None:
    then = timezone.now() - timedelta(days=days)
    WebhookDelivery.objects.update(received_at=then)
    WebhookMessage.objects.update(received_at=then)
    Task.objects.exclude(finished_at=None).update(finished_at=then)


def prune(*args: str) -> str:
    out = StringIO()
    call_command("prune_outbox", *args, stdout=out)
    return out.getvalue()


@override_settings(SHEET_SETTLE_SECONDS=0.0)
def test_a_delivery_repeated_after_its_row_was_pruned_is_answered_by_the_tickets_state(
    post_tickets, gateway_url, gateway
):
    sold = [ticket("t-1"), ticket("t-2"), ticket("t-3", "canceled")]
    first = post_tickets(sold, key="order-1")
    drain()
    before = effects(gateway)
    tasks = Task.objects.count()
    age_everything()

    out = prune()

    assert "Deleted 1 webhook delivery(ies) older than 30d." in out
    assert WebhookDelivery.objects.count() == 0
    repeat = post_tickets(sold, key="order-1")
    drain()
    assert first.status_code == repeat.status_code == 200
    assert repeat.json()["tickets"] == first.json()["tickets"]
    assert repeat.json()["tasks"] == [], "no new task"
    assert tasks > 0
    assert Task.objects.count() == 0, "the finished tasks were pruned and none came back"
    assert effects(gateway) == before, "no second effect"
    assert before["receipts"] == Counter(["t-1", "t-2"])


@override_settings(SHEET_SETTLE_SECONDS=0.0)
def test_a_signed_message_replayed_after_its_rows_were_pruned_repeats_no_effect(
    post_signed,  # noqa: F811
    gateway_url,
    gateway,
):
    first = post_signed([ticket("t-1")], key="order-1", webhook_id="msg_1")
    drain()
    before = effects(gateway)
    age_everything()

    out = prune()

    assert "Deleted 1 webhook message(s) older than 30d." in out
    assert WebhookMessage.objects.count() == WebhookDelivery.objects.count() == 0
    repeat = post_signed([ticket("t-1")], key="order-1", webhook_id="msg_1")
    drain()
    assert first.status_code == repeat.status_code == 200
    assert repeat.json()["tickets"] == first.json()["tickets"]
    assert repeat.json()["tasks"] == []
    assert effects(gateway) == before == {**before, "receipts": Counter(["t-1"])}


def test_a_message_inside_the_signatures_tolerance_is_kept_whatever_the_cutoff(
    post_signed,  # noqa: F811
):
    post_signed([ticket("t-1")], key="order-1", webhook_id="msg_1")
    ten_seconds_ago = timezone.now() - timedelta(seconds=10)
    WebhookMessage.objects.update(received_at=ten_seconds_ago)
    WebhookDelivery.objects.update(received_at=ten_seconds_ago)

    out = prune("--older-than", "1s")

    assert "Deleted 0 webhook message(s) older than 1s." in out
    assert "Deleted 1 webhook delivery(ies) older than 1s." in out
    assert WebhookMessage.objects.count() == 1, "a replay inside the tolerance is refused by id"
    WebhookMessage.objects.update(
        received_at=timezone.now() - timedelta(seconds=2 * TOLERANCE_SECONDS + 5)
    )
    assert "Deleted 1 webhook message(s)" in prune("--older-than", "1s")


def test_rows_inside_the_window_stay_and_a_dry_run_deletes_nothing(post_tickets):
    post_tickets([ticket("t-1")], key="old")
    age_everything(days=3)
    post_tickets([ticket("t-2")], key="new")

    dry = prune("--older-than", "2d", "--dry-run")

    assert "Dry run: 1 webhook delivery(ies) older than 2d would be deleted." in dry
    assert WebhookDelivery.objects.count() == 2
    assert "Deleted 1 webhook delivery(ies) older than 2d." in prune("--older-than", "2d")
    assert list(WebhookDelivery.objects.values_list("idempotency_key", flat=True)) == ["new"]


def test_the_hourly_schedule_prunes_deliveries_by_the_same_cutoff(post_tickets):
    post_tickets([ticket("t-1")], key="old")
    age_everything(days=31)
    post_tickets([ticket("t-2")], key="new")

    prune_finished_tasks()

    assert list(WebhookDelivery.objects.values_list("idempotency_key", flat=True)) == ["new"]
