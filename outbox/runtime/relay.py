"""The relay's loop: claim due tasks, run their handlers, renew their leases, record outcomes.

A `Relay` claims batches, runs the handlers in a thread pool (the work is HTTP I/O), writes the
outcomes back in bulk, and waits for new work between claims (outbox.waiter). `run` stops
claiming after the seconds it was given, finishes what it started and returns. The django-q2
tasks that run it, one bounded pass at a time, are in outbox.runtime.passes.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import connection

from outbox.claim import (
    DATABASE_TROUBLE,
    ClaimedTask,
    claim_due_tasks,
    release_leases,
    renew_leases,
)
from outbox.conf import DEFAULTS, outbox_settings
from outbox.models import AttemptOutcome
from outbox.outcomes import Outcome, record_outcomes
from outbox.retry import RetryPolicy
from outbox.runtime.execution import HandlerPool, attempt_logger
from outbox.runtime.shutdown import cluster_stopping
from outbox.runtime.waiter import Waiter

# Its logger keeps the name it had before the runtime became a package: operators filter on it.
logger = logging.getLogger("outbox.relay")

HEARTBEAT_SECONDS = 5.0


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.current_thread().name}"


def draw_queue_order(weights: dict[str, int], rand: random.Random | None = None) -> list[str]:
    """A weighted lottery without replacement: heavy queues usually go first, none starves."""
    rand = rand or random.Random()
    queues = list(weights)
    shares = [weights[queue] for queue in queues]
    order: list[str] = []
    while queues:
        index = rand.choices(range(len(queues)), weights=shares)[0]
        order.append(queues.pop(index))
        shares.pop(index)
    return order


@dataclass(slots=True)
class PassStats:
    claimed: int = 0
    succeeded: int = 0
    retried: int = 0
    failed: int = 0
    lease_lost: int = 0
    released: int = 0
    saw_backlog: bool = False

    def add(self, outcomes: Sequence[Outcome], lost: set[int]) -> None:
        for item in outcomes:
            if item.task.id in lost:
                self.lease_lost += 1
            elif item.verdict == AttemptOutcome.SUCCEEDED:
                self.succeeded += 1
            elif item.verdict == AttemptOutcome.RETRY:
                self.retried += 1
            else:
                self.failed += 1


@dataclass(kw_only=True)
class Relay:
    """Claims and runs tasks. Tests call `run_once`/`drain`; django-q2 runs `run`."""

    # The defaults are OutboxSettings' (outbox.conf); `from_settings` reads settings.OUTBOX.
    batch_size: int = DEFAULTS.batch_size
    threads: int = DEFAULTS.threads
    lease_seconds: float = DEFAULTS.lease_seconds
    renew_seconds: float = DEFAULTS.renew_seconds
    poll_seconds: float = DEFAULTS.poll_seconds
    max_task_seconds: float = DEFAULTS.max_task_seconds
    queue_weights: dict[str, int] = field(default_factory=lambda: dict(DEFAULTS.queue_weights))
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    worker: str = field(default_factory=worker_name)
    stop_event: threading.Event = field(default_factory=threading.Event)
    # Set once a stopping pass has given back what it had not started.
    wound_down: threading.Event = field(default_factory=threading.Event)
    on_backlog: Callable[[], None] | None = None
    rand: random.Random = field(default_factory=random.Random)

    @classmethod
    def from_settings(cls, **overrides: Any) -> Relay:
        conf = outbox_settings()
        options: dict[str, Any] = {
            "batch_size": conf.batch_size,
            "threads": conf.threads,
            "lease_seconds": conf.lease_seconds,
            "renew_seconds": conf.renew_seconds,
            "poll_seconds": conf.poll_seconds,
            "max_task_seconds": conf.max_task_seconds,
            "queue_weights": dict(conf.queue_weights),
            "policy": RetryPolicy.from_settings(conf),
        }
        options.update(overrides)
        return cls(**options)

    def claim(self, limit: int) -> list[ClaimedTask]:
        return claim_due_tasks(
            limit=limit,
            worker=self.worker,
            lease_seconds=self.lease_seconds,
            queue_order=draw_queue_order(self.queue_weights, self.rand),
        )

    def _pool(self, threads: int) -> HandlerPool:
        return HandlerPool(threads, policy=self.policy, worker=self.worker)

    def run_once(self, *, limit: int | None = None) -> PassStats:
        """Claim one batch, run it to the end, record it. Deterministic: no waiting."""
        stats = PassStats()
        tasks = self.claim(limit or self.batch_size)
        stats.claimed = len(tasks)
        if not tasks:
            return stats
        with self._pool(min(self.threads, len(tasks))) as pool:
            outcomes = pool.run_all(tasks)
        batch = list(outcomes)
        stats.add(batch, record_outcomes(outcomes))
        return stats

    def drain(self, *, max_batches: int = 1000) -> PassStats:
        """Run batches until none is due (tasks retrying later stay pending)."""
        total = PassStats()
        for _ in range(max_batches):
            stats = self.run_once()
            if not stats.claimed:
                break
            for name in ("claimed", "succeeded", "retried", "failed", "lease_lost"):
                setattr(total, name, getattr(total, name) + getattr(stats, name))
        return total

    def run(
        self,
        *,
        seconds: float,
        heartbeat: Callable[[], None] | None = None,
        until_idle: bool = False,
    ) -> PassStats:
        """Claim and run for `seconds`, keeping the pool busy; then finish and return.

        While handlers run, their leases are renewed every `renew_seconds`. On stop (SIGTERM)
        it stops claiming, finishes the attempts already running, and gives back the leases
        of tasks it claimed but had not started.
        """
        stats = PassStats()
        claim_until = time.monotonic() + seconds
        # Each claim of a task (ClaimedTask compares by identity): the same pass can claim a task
        # again after its lease ran out (renewals failed through an outage) while the first
        # attempt is still running.
        inflight: set[ClaimedTask] = set()
        running_ids: dict[int, ClaimedTask] = {}
        done: list[Outcome] = []
        last_flush = last_beat = last_renew = time.monotonic()
        low_water = max(1, self.batch_size // 2)
        pool = self._pool(self.threads)
        abandoned = False
        backlog = False
        claiming_ended: float | None = None
        try:
            with Waiter(self.poll_seconds) as waiter:
                while True:
                    now = time.monotonic()
                    if cluster_stopping():
                        self.stop_event.set()
                    claiming = now < claim_until and not self.stop_event.is_set()
                    if not claiming and claiming_ended is None:
                        claiming_ended = now
                    tasks = []
                    # While tasks run, claim again only if the last claim was full (a backlog),
                    # a NOTIFY came, or a poll's interval passed: not after every outcome.
                    if (
                        claiming
                        and len(inflight) < low_water
                        and (not inflight or backlog or waiter.new_work())
                    ):
                        try:
                            tasks = self.claim(self.batch_size - len(inflight))
                        except DATABASE_TROUBLE:
                            self._database_trouble("claim")
                        stats.claimed += len(tasks)
                        backlog = len(tasks) == self.batch_size - len(inflight)
                        if backlog:
                            stats.saw_backlog = True
                            if self.on_backlog is not None:
                                self.on_backlog()
                        for task in tasks:
                            earlier = running_ids.get(task.id)
                            if earlier is not None:
                                # Its lease was taken over (by this very pass): the earlier
                                # attempt starts no further call, and its write will be refused.
                                earlier.lease.lose()
                            running_ids[task.id] = task
                            inflight.add(task)
                        pool.submit_many(tasks)
                    if now - last_renew >= self.renew_seconds:
                        # Outcomes not yet written hold their leases too: an expired one would
                        # let another pass run the task again.
                        self._renew([*inflight, *(o.task for o in done)], stats)
                        last_renew = now
                    if heartbeat is not None and now - last_beat > HEARTBEAT_SECONDS:
                        try:
                            heartbeat()
                        except DATABASE_TROUBLE:
                            self._database_trouble("heartbeat")
                        last_beat = now
                    if not inflight:
                        self._flush(done, stats)
                        if not claiming or (until_idle and not tasks and not done):
                            self.wound_down.set()
                            break
                        waiter.wait(min(claim_until - now, 1.0), self.stop_event)
                        continue
                    if not claiming and not self.wound_down.is_set():
                        self._give_back_unstarted(pool, inflight, running_ids, stats)
                        self.wound_down.set()
                    # While claiming, wake when there is room for a claim (or to flush on
                    # time); otherwise for each outcome, to finish promptly.
                    wake_below = low_water if claiming else None
                    for outcome in pool.results(timeout=0.05, unfinished_below=wake_below):
                        inflight.remove(outcome.task)
                        if running_ids.get(outcome.task.id) is outcome.task:
                            del running_ids[outcome.task.id]
                        done.append(outcome)
                    if (
                        len(done) >= low_water
                        or not inflight
                        or time.monotonic() - last_flush > 0.05
                    ):
                        self._flush(done, stats)
                        last_flush = time.monotonic()
                    if (
                        claiming_ended is not None
                        and time.monotonic() > claiming_ended + self.max_task_seconds
                    ):
                        # Handlers stuck outside their calls' deadlines (a bug): no further
                        # call may start, and whatever call is in flight ends by its deadline,
                        # before the unrenewed lease lets another pass take the task.
                        for task in inflight:
                            task.lease.lose()
                        logger.error(
                            "relay pass abandons %d stuck attempts (tasks %s); their leases "
                            "expire and other passes take them again",
                            len(inflight),
                            ", ".join(str(task.id) for task in inflight),
                        )
                        abandoned = True
                        break
        finally:
            # Whatever way the loop ended: give back what no thread started, keep every outcome
            # that finished meanwhile, and write them while the leases hold.
            unstarted = pool.take_unstarted()
            pool.shutdown(wait=not abandoned)
            done.extend(pool.results(timeout=0))
            self._release(unstarted, stats)
            self._flush_before(done, stats, time.monotonic() + self.max_task_seconds)
        return stats

    def _renew(self, tasks: list[ClaimedTask], stats: PassStats) -> None:
        if not tasks:
            return
        try:
            lost = renew_leases(tasks)
        except DATABASE_TROUBLE:
            # Not renewed: the local estimates run down, and handlers stop starting calls
            # before the leases can expire.
            self._database_trouble("renewing leases")
            return
        if lost:
            logger.warning(
                "relay pass lost the leases of tasks %s; their handlers start no further call",
                ", ".join(str(task_id) for task_id in sorted(lost)),
            )

    def _flush(self, done: list[Outcome], stats: PassStats) -> bool:
        """Record finished attempts; on a database outage keep them for the next try."""
        if not done:
            return True
        batch = list(done)
        try:
            lost = record_outcomes(done)
        except DATABASE_TROUBLE:
            # Outcomes written one by one before the outage have left `done`.
            stats.add(batch[: len(batch) - len(done)], set())
            self._database_trouble(f"recording {len(done)} outcomes")
            return False
        stats.add(batch, lost)
        if lost:
            attempt_logger.warning(
                "outcome=lease_lost tasks=%s: another pass owned them when their outcomes were "
                "written; the writes were refused",
                ",".join(str(task_id) for task_id in sorted(lost)),
                extra={"outcome": "lease_lost"},
            )
        return True

    def _flush_before(self, done: list[Outcome], stats: PassStats, deadline: float) -> None:
        # Outcomes not written are not lost work, but their tasks would run again once their
        # leases expire: keep trying while the leases still hold.
        while not self._flush(done, stats) and time.monotonic() < deadline:
            time.sleep(0.5)
        if done:
            logger.error("%d outcomes not recorded; their tasks will run again", len(done))

    def _database_trouble(self, doing: str) -> None:
        logger.warning("database unavailable while %s; retrying", doing, exc_info=True)
        connection.close()
        self.stop_event.wait(0.5)

    def _give_back_unstarted(
        self,
        pool: HandlerPool,
        inflight: set[ClaimedTask],
        running_ids: dict[int, ClaimedTask],
        stats: PassStats,
    ) -> None:
        unstarted = pool.take_unstarted()
        for task in unstarted:
            inflight.remove(task)
            if running_ids.get(task.id) is task:
                del running_ids[task.id]
        self._release(unstarted, stats)

    def _release(self, tasks: list[ClaimedTask], stats: PassStats) -> None:
        if not tasks:
            return
        try:
            stats.released += release_leases(tasks)
        except DATABASE_TROUBLE:
            # Not given back: their leases expire and another pass takes them, one attempt
            # spent. Never a reason to lose the outcomes this pass still has to write.
            self._database_trouble(f"giving back {len(tasks)} unstarted tasks")
