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


class ReconcileRun(models.Model):
    """One comparison of our records with the APIs' own (tickets.reconcile): who, when, what."""

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        """Started; its items are written as they are found."""
        DONE = "done", "Done"
        """Finished: every sheet was read and every ticket in scope checked."""
        ERROR = "error", "Error"
        """Stopped before the end (an API that did not answer): its counts are partial."""

    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    by = models.CharField(max_length=150, blank=True, default="")
    trigger = models.CharField(max_length=16, default="command")
    # The window of tickets created or changed, or the tickets named (then no window).
    since = models.DateTimeField(null=True, blank=True)
    until = models.DateTimeField(null=True, blank=True)
    ticket_ids = models.JSONField(default=list, blank=True)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.RUNNING)
    error = models.TextField(blank=True, default="")
    tickets_checked = models.PositiveIntegerField(default=0)
    rows_read = models.PositiveIntegerField(default=0)
    # Items per kind, and those still open (neither fixed nor acknowledged, not in flight).
    counts = models.JSONField(default=dict, blank=True)
    drift_open = models.PositiveIntegerField(default=0)
    # What this run could not check against the APIs, in words (APIs with no lookup).
    notes = models.JSONField(default=list, blank=True)
    seconds = models.FloatField(null=True, blank=True)

    class Meta:
        verbose_name = "reconcile run"
        indexes = [models.Index(fields=["-started_at"], name="tickets_reconcile_started")]

    def __str__(self) -> str:
        return f"Reconcile #{self.pk} ({self.started_at:%Y-%m-%d %H:%M})"


class DriftKind(models.TextChoices):
    MISSING_ROW = "missing_row", "Missing row"
    """A ticket that should have a sheet row has none, and no task is working on it."""
    DUPLICATE_ROW = "duplicate_row", "Duplicate row"
    """A ticket has more than one row on a sheet."""
    EXTRA_ROW = "extra_row", "Extra row"
    """A row for a ticket we do not know, or that should not be on that sheet."""
    DIFFERENT_ROW = "different_row", "Different data"
    """A row whose email, amount or currency differs from the ticket's."""
    MISSING_RECEIPT = "missing_receipt", "Missing receipt"
    """A confirmed, unrefunded ticket with no receipt number and no task working on it."""
    MISSING_VOID = "missing_void", "Missing void"
    """A refunded ticket whose receipt may exist and whose void did not succeed."""
    MISSING_REFUND = "missing_refund", "Missing refund"
    """A refunded ticket whose payment refund did not succeed."""
    IN_FLIGHT = "in_flight", "In flight"
    """An effect not there yet whose task is waiting or running: not drift."""


# The kinds a fix enqueues a task for; the others are corrected by hand and acknowledged.
FIXABLE_KINDS = (
    DriftKind.MISSING_ROW,
    DriftKind.MISSING_RECEIPT,
    DriftKind.MISSING_VOID,
    DriftKind.MISSING_REFUND,
)


class DriftItem(models.Model):
    """One difference a reconcile run found, with its evidence and what was done about it."""

    class State(models.TextChoices):
        OPEN = "open", "Open"
        """Found, nothing done yet."""
        FIXED = "fixed", "Fixed"
        """The missing effect's task was enqueued (or requeued)."""
        ACKNOWLEDGED = "acknowledged", "Acknowledged"
        """Corrected by hand, or accepted, with a note."""
        INFO = "info", "Information"
        """In flight: nothing to do, shown so the report says what it did not count."""

    run = models.ForeignKey(ReconcileRun, on_delete=models.CASCADE, related_name="items")
    kind = models.CharField(max_length=16, choices=DriftKind.choices)
    state = models.CharField(max_length=16, choices=State.choices, default=State.OPEN)
    # The seller's ticket id; `ticket` is set when we know the ticket.
    seller_ticket_id = models.CharField(max_length=255)
    ticket = models.ForeignKey(
        Ticket, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    effect = models.CharField(max_length=64)
    customer_email = models.CharField(max_length=254, blank=True, default="")
    amount = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    currency = models.CharField(max_length=3, blank=True, default="")
    summary = models.CharField(max_length=500)
    evidence = models.JSONField(default=dict, blank=True)
    task_ids = models.JSONField(default=list, blank=True)
    # The same difference in a later run has the same fingerprint: an acknowledgement carries.
    fingerprint = models.CharField(max_length=64)
    handled_by = models.CharField(max_length=150, blank=True, default="")
    handled_at = models.DateTimeField(null=True, blank=True)
    note = models.TextField(blank=True, default="")
    fix_task_id = models.BigIntegerField(null=True, blank=True)

    class Meta:
        verbose_name = "drift item"
        indexes = [
            models.Index(fields=["run", "kind"], name="tickets_drift_run_kind"),
            models.Index(fields=["fingerprint", "state"], name="tickets_drift_fingerprint"),
        ]
        permissions = [
            ("fix_driftitem", "Can fix a reconcile's missing effect"),
            ("acknowledge_driftitem", "Can acknowledge a reconcile's drift item"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.seller_ticket_id} ({self.effect})"
