from __future__ import annotations

import uuid

from django.db import models
from django.db.models.functions import Now

from outbox.conf import DEFAULTS


def new_idempotency_key() -> str:
    return uuid.uuid4().hex


class TaskState(models.TextChoices):
    PENDING = "pending", "Pending"
    """Waiting to run: new, scheduled for later (available_at in the future) or retrying."""
    RUNNING = "running", "Running"
    """Leased by a relay pass; taken again by another pass once the lease expires."""
    SUCCEEDED = "succeeded", "Succeeded"
    """The handler returned; the effect happened."""
    FAILED = "failed", "Failed"
    """Dead: a permanent error, or out of attempts. Only an operator brings it back."""
    CANCELED = "canceled", "Canceled"
    """Stopped by an operator; never runs."""


class Queue(models.TextChoices):
    CRITICAL = "critical", "Critical"
    DEFAULT = "default", "Default"
    LOW = "low", "Low"


FINISHED_STATES = (TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELED)


class TaskQuerySet(models.QuerySet["Task"]):
    def pending(self) -> TaskQuerySet:
        return self.filter(state=TaskState.PENDING)

    def running(self) -> TaskQuerySet:
        return self.filter(state=TaskState.RUNNING)

    def failed(self) -> TaskQuerySet:
        return self.filter(state=TaskState.FAILED)

    def finished(self) -> TaskQuerySet:
        return self.filter(state__in=FINISHED_STATES)

    def due(self) -> TaskQuerySet:
        return self.filter(state=TaskState.PENDING, available_at__lte=Now())


class Task(models.Model):
    kind = models.CharField(max_length=100, help_text="Name of the registered handler.")
    payload = models.JSONField(default=dict)
    result = models.JSONField(null=True, blank=True)
    # Unique: its index serves ON CONFLICT and every lookup (`=`, `IN`). On PostgreSQL,
    # migration 0008 drops the second, `varchar_pattern_ops` index Django adds to a unique
    # CharField for prefix LIKE, which nothing here runs: each task write paid for it.
    dedupe_key = models.CharField(
        max_length=320,
        unique=True,
        null=True,
        blank=True,
        help_text="One task per business effect: a second enqueue with this key is a no-op.",
    )
    idempotency_key = models.CharField(
        max_length=64,
        default=new_idempotency_key,
        help_text="Fixed at enqueue and sent to the external API on every try.",
    )
    queue = models.CharField(max_length=16, choices=Queue.choices, default=Queue.DEFAULT)
    state = models.CharField(max_length=16, choices=TaskState.choices, default=TaskState.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    # enqueue always sets it (the handler's budget or the setting); this is the setting's default.
    max_attempts = models.PositiveIntegerField(default=DEFAULTS.default_max_attempts)
    available_at = models.DateTimeField(db_default=Now())
    lease_token = models.UUIDField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    leased_by = models.CharField(max_length=200, blank=True, default="")
    last_error = models.TextField(blank=True, default="")
    correlation_id = models.CharField(max_length=64, blank=True, default="")
    # The W3C trace context of the span that enqueued the task ({"traceparent", "tracestate"}),
    # its tries' parent (outbox.tracing). NULL in a process that does not trace: the enqueue
    # leaves the column out of its INSERT, and adding it rewrote nothing.
    trace_context = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(db_default=Now())
    updated_at = models.DateTimeField(db_default=Now())
    finished_at = models.DateTimeField(null=True, blank=True)
    # Set when a try of a kind with `settle_seconds` got no answer: a write it sent may land
    # until then, so no try starts before it, an operator's "retry now" included.
    settle_until = models.DateTimeField(null=True, blank=True)
    # The try that succeeded, kept on the task row instead of an Attempt row of its own (as
    # Oban and River keep a job's errors, not its success): a success is one row write, the
    # outcome's UPDATE, where an Attempt INSERT made it two. Its number is `attempts`, its
    # worker `leased_by` (the lease that finished it). Set only while the task is succeeded:
    # a re-run folds them into an Attempt row first (`outbox.history.fold_successes`).
    # Readers get the whole history, this try included, from `outbox.history`.
    # Nullable and without a CHECK, so adding them rewrites and scans nothing on PostgreSQL.
    succeeded_started_at = models.DateTimeField(null=True, blank=True)
    succeeded_duration_ms = models.FloatField(null=True, blank=True)
    succeeded_http_status = models.SmallIntegerField(null=True, blank=True)

    objects = TaskQuerySet.as_manager()

    class Meta:
        indexes = [
            # The claim reads only these two partial indexes, so finished rows cost it nothing.
            models.Index(
                fields=["queue", "available_at"],
                name="outbox_task_due",
                condition=models.Q(state="pending"),
            ),
            models.Index(
                fields=["lease_expires_at"],
                name="outbox_task_lease",
                condition=models.Q(state="running"),
            ),
            # Failed and canceled tasks by kind (triage, the counts, the admin's filters).
            # Partial: a task on its way to success never has an entry, so neither its claim
            # nor its outcome, each a new version of the row with an entry in every index it
            # qualifies for, writes one (the full `state, kind` index it replaced cost 14% of
            # a no-op task's WAL: 2,003 -> 1,718 B, measured by the benchmark's (m)).
            models.Index(
                fields=["state", "kind"],
                name="outbox_task_ended_badly",
                condition=models.Q(state__in=["failed", "canceled"]),
            ),
            # Prune, metrics and the dashboard read finished rows only (`finished_at > x`,
            # `< x`): a pending or running task has no entry, so the claim's UPDATE, which
            # moves every column of a row to a new version, writes one index entry less.
            models.Index(
                fields=["finished_at"],
                name="outbox_task_finished_only",
                condition=models.Q(finished_at__isnull=False),
            ),
            # The search by Correlation-ID (a whole value, so an equality on this index).
            models.Index(fields=["correlation_id"], name="outbox_task_correlation"),
        ]
        permissions = [
            ("retry_task", "Can retry failed or waiting tasks"),
            ("rerun_task", "Can run a succeeded task again"),
            (
                "force_retry_task",
                "Can retry a task at once while a write of an unanswered try may still land",
            ),
            ("cancel_task", "Can cancel tasks"),
            ("pause_kind", "Can pause and resume a kind of task"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} #{self.pk} ({self.state})"


class AttemptOutcome(models.TextChoices):
    SUCCEEDED = "succeeded", "Succeeded"
    """The handler returned."""
    RETRY = "retry", "Transient error"
    """A transient error; the task was scheduled again."""
    FAILED = "failed", "Failed"
    """A permanent error, or the last attempt failed; the task is dead."""
    LEASE_LOST = "lease_lost", "Lease lost"
    """Another pass owned the task by the time the outcome was written, or the lease was too
    short to start a call (nothing was sent)."""
    CANCELED = "canceled", "Canceled"
    """The handler found nothing to do, ever (its cause was withdrawn); the task is canceled."""


class AttemptReply(models.TextChoices):
    """Whether the API answered the try's call (blank: no call was made, or it is unknown)."""

    ANSWERED = "answered", "Answered"
    """The API answered (an error included): it has finished with the request."""
    NO_ANSWER = "no_answer", "No answer"
    """A timeout, a cut connection, a proxy's 504, a worker that vanished mid-call: a write the
    call sent may still land."""
    NOT_SENT = "not_sent", "Not sent"
    """Nothing reached the API (a refused connection, a failed DNS lookup)."""


class Attempt(models.Model):
    # One row per try that did not succeed (and, for tasks that succeeded before migration
    # 0011 or were re-run since, per success too); a success otherwise stays on its task row.
    # No foreign-key constraint in the database (Django still cascades deletes). An attempt is
    # written only by the engine, for a task it claimed, and a task is deleted only by prune,
    # finished and long past any lease, together with its attempts. The constraint's check, a
    # locking lookup of the task for every attempt written, was an eighth of the database's
    # work per task on a drain.
    task = models.ForeignKey(
        Task, on_delete=models.CASCADE, related_name="attempt_set", db_constraint=False
    )
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    duration_ms = models.FloatField()
    outcome = models.CharField(max_length=16, choices=AttemptOutcome.choices)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    worker = models.CharField(max_length=200, blank=True, default="")
    reply = models.CharField(
        max_length=16, choices=AttemptReply.choices, blank=True, default="", db_default=""
    )

    class Meta:
        ordering = ["task_id", "number"]
        indexes = [
            # The dashboard's failures per hour read failed tries only: a successful attempt,
            # most of them, writes no entry here.
            models.Index(
                fields=["started_at"],
                name="outbox_attempt_failed_started",
                condition=models.Q(outcome__in=["retry", "failed"]),
            )
        ]

    def __str__(self) -> str:
        return f"attempt {self.number} of task {self.task_id}: {self.outcome}"


class PausedKind(models.Model):
    """A kind listed here is not claimed; its tasks wait until it is resumed."""

    kind = models.CharField(max_length=100, primary_key=True)
    paused_at = models.DateTimeField(auto_now_add=True)
    paused_by = models.CharField(max_length=150, blank=True, default="")

    def __str__(self) -> str:
        return self.kind


class RelayPass(models.Model):
    """A running relay pass, so passes can be counted across every cluster on the database."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4)
    worker = models.CharField(max_length=200)
    started_at = models.DateTimeField(db_default=Now())
    heartbeat_at = models.DateTimeField(db_default=Now())

    def __str__(self) -> str:
        return f"pass {self.id} on {self.worker}"


class Circuit(models.Model):
    """A destination's circuit breaker, shared by every pass of every cluster.

    Closed while `opened_until` is empty; open until then; afterwards one probe call
    (`probe_until` leases it) decides whether it closes or opens again for longer.
    """

    name = models.CharField(max_length=100, primary_key=True)
    opened_until = models.DateTimeField(null=True, blank=True)
    cooldown_seconds = models.FloatField(default=1.0)
    probe_until = models.DateTimeField(null=True, blank=True)
    opened_count = models.PositiveIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)
    # When the destination went down: set by the first open, kept while probes fail, cleared
    # by the success that closes it, so "open since" names the start of the outage.
    down_since = models.DateTimeField(null=True, blank=True)
    # The transient error that opened it last (storable text: no NUL, bounded by the caller).
    last_error = models.TextField(blank=True, default="")

    def __str__(self) -> str:
        return f"{self.name}: {'closed' if self.opened_until is None else 'open'}"
