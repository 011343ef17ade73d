from __future__ import annotations

from django.db import models


class TicketStatus(models.TextChoices):
    CONFIRMED = "confirmed", "Confirmed"
    """Sold: gets a receipt and a row on the print sheet."""
    CANCELED = "canceled", "Canceled"
    """Final: gets a row on the refund sheet; a later confirmation changes nothing."""


class Ticket(models.Model):
    ticket_id = models.CharField(max_length=255, unique=True)
    status = models.CharField(max_length=16, choices=TicketStatus.choices)
    customer_email = models.EmailField(max_length=254)
    price_amount = models.DecimalField(max_digits=12, decimal_places=2)
    price_currency = models.CharField(max_length=3, default="USD")
    booking_id = models.CharField(max_length=255, blank=True, default="")
    receipt_number = models.CharField(max_length=255, blank=True, default="")
    receipt_issued_at = models.DateTimeField(null=True, blank=True)
    refund_requested_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["customer_email"], name="tickets_email")]
        # Who may ask for a refund by token when the seller's endpoints are signed
        # (docs/SECURITY.md); `view_ticket` (Django's default) guards the reads.
        permissions = [("request_refund", "Can request a ticket's refund")]

    def __str__(self) -> str:
        # A refunded ticket stays `confirmed`: its title must not read like a sale that stands.
        refund = ", refund requested" if self.refund_requested_at is not None else ""
        return f"{self.ticket_id} ({self.status}{refund})"


class WebhookDelivery(models.Model):
    """One accepted webhook, so a repeat with the same Idempotency-Key gets the same answer."""

    idempotency_key = models.CharField(max_length=255, unique=True)
    body_hash = models.CharField(max_length=64)
    response = models.JSONField(default=dict)
    # The first answer's exact bytes (UTF-8 text), which every repeat answers again: a JSON
    # column does not keep them (PostgreSQL's jsonb reorders keys). Empty on deliveries
    # stored before this column; those are answered from `response` (services.stored_answer).
    response_body = models.TextField(blank=True, default="", db_default="")
    correlation_id = models.CharField(max_length=64, blank=True, default="")
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "webhook deliveries"
        # The search by Correlation-ID (a whole value, so an equality on this index).
        indexes = [
            models.Index(fields=["correlation_id"], name="tickets_delivery_correlation"),
            # The prune's range (tickets.retention).
            models.Index(fields=["received_at"], name="tickets_delivery_received"),
        ]

    def __str__(self) -> str:
        return self.idempotency_key


class WebhookMessage(models.Model):
    """A signed webhook's `webhook-id`, so a replay of the message writes nothing.

    Written in the transaction of the delivery it led to; `idempotency_key` finds that
    delivery, whose first answer a replay gets (docs/SECURITY.md).
    """

    webhook_id = models.CharField(max_length=255, unique=True)
    idempotency_key = models.CharField(max_length=255)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        # The prune's range (tickets.retention).
        indexes = [models.Index(fields=["received_at"], name="tickets_message_received")]

    def __str__(self) -> str:
        return self.webhook_id
