"""`manage.py simulate`: post realistic webhooks, then wait until the gateway shows every effect."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from devtools.simulation import (
    EffectCheck,
    EffectsReport,
    GatewayInspector,
    GatewayUnavailable,
    PlanError,
    PostReport,
    SimulationPlan,
    WebhookPoster,
    plan_simulation,
    service_problem,
    wait_for_effects,
)
from outbox.console.progress import ProgressBar
from tickets.intake.signature import decode_secrets
from tickets.kinds import REFUND_SHEET

EXIT_FAILED = 1
EXIT_BAD_ARGUMENTS = 2
SHOWN_IDS = 10


def _url(option: str, value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise CommandError(
            f"{option} must be an http(s) URL such as http://127.0.0.1:8080, got {value!r}",
            returncode=EXIT_BAD_ARGUMENTS,
        )
    return value.rstrip("/")


class Command(BaseCommand):
    help = (
        "Play the ticket seller: post realistic webhooks (orders of tickets, later partial "
        "cancellations, repeats with the same Idempotency-Key, a Correlation-ID per order) to "
        "URL/tickets-status, then wait until the fake gateway shows every expected effect: one "
        "receipt and one tickets-to-print row per ticket ever confirmed, one tickets-to-refund "
        "row per canceled ticket. Exit codes: 0 every effect present exactly once; 1 an effect "
        "missing after the deadline, duplicated, unexpected or wrong, or a webhook refused; "
        "2 bad arguments, a service that does not answer, or a gateway that cannot be checked."
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--url",
            default="http://127.0.0.1:8080",
            help="Base URL of the service to post to (default http://127.0.0.1:8080, where "
            "scripts/serve.sh runs it); webhooks go to URL/tickets-status.",
        )
        parser.add_argument(
            "--orders",
            type=int,
            default=10,
            metavar="N",
            help="How many orders to post (default 10).",
        )
        parser.add_argument(
            "--tickets-per-order",
            type=int,
            default=10,
            metavar="M",
            help="Tickets in each order's webhook (default 10).",
        )
        parser.add_argument(
            "--cancel-rate",
            type=float,
            default=0.2,
            metavar="R",
            help="Share of orders (0..1) later followed by a webhook canceling some of their "
            "confirmed tickets (default 0.2).",
        )
        parser.add_argument(
            "--unconfirmed-cancel-rate",
            type=float,
            default=0.0,
            metavar="R",
            help="Share of tickets (0..1) that arrive already canceled in their order's first "
            "webhook, never confirmed: they get a refund row and nothing else (default 0).",
        )
        parser.add_argument(
            "--repeat-rate",
            type=float,
            default=0.1,
            metavar="R",
            help="Share of webhooks (0..1) sent again later with the same Idempotency-Key and "
            "body, as a seller's retry (default 0.1).",
        )
        parser.add_argument(
            "--concurrency",
            type=int,
            default=4,
            metavar="N",
            help="Webhooks posted in parallel (default 4).",
        )
        parser.add_argument(
            "--gateway",
            metavar="URL",
            help="Base URL of the fake gateway whose /fake-gateway/state shows the effects "
            "(default: the GATEWAY_ADDR setting).",
        )
        parser.add_argument(
            "--deadline",
            type=float,
            default=120.0,
            metavar="SECONDS",
            help="How long to wait for the effects once every webhook is posted (default 120).",
        )
        parser.add_argument(
            "--settle",
            type=float,
            default=1.0,
            metavar="SECONDS",
            help="Once every effect is present, look again after this long to catch a late "
            "duplicate (default 1; 0 does not look again).",
        )
        parser.add_argument(
            "--seed",
            type=int,
            help="Seed of the plan (prices, currencies, which orders cancel or repeat). With "
            "--run-id too, the same webhooks are sent again.",
        )
        parser.add_argument(
            "--run-id",
            metavar="ID",
            help="Part of every ticket id, key and Correlation-ID of this run "
            "(default: random), so runs never collide.",
        )
        parser.add_argument(
            "--secret",
            default=None,
            help="Sign every webhook with this 'whsec_<base64>' key (Standard Webhooks), as a "
            "service with WEBHOOK_SECRET set requires (default: WEBHOOK_SECRET; unsigned when "
            "empty).",
        )
        parser.add_argument(
            "--no-verify",
            action="store_true",
            help="Only post; do not check effects. Needed when --gateway is a real gateway, "
            "which has no /fake-gateway/state.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        service_url = _url("--url", options["url"])
        gateway_url = _url("--gateway", options["gateway"] or settings.GATEWAY_ADDR)
        if options["concurrency"] < 1:
            raise CommandError("--concurrency must be at least 1.", returncode=EXIT_BAD_ARGUMENTS)
        if options["deadline"] <= 0 or options["settle"] < 0:
            raise CommandError(
                "--deadline must be above 0 and --settle at least 0.",
                returncode=EXIT_BAD_ARGUMENTS,
            )
        secret = settings.WEBHOOK_SECRET if options["secret"] is None else options["secret"]
        try:
            # The seller signs with the newest key: the last of a rollover's secrets.
            key = decode_secrets(secret)[-1] if secret.strip() else None
        except ImproperlyConfigured as exc:
            message = str(exc).replace("WEBHOOK_SECRET", "--secret (or WEBHOOK_SECRET)", 1)
            raise CommandError(message, returncode=EXIT_BAD_ARGUMENTS) from exc
        try:
            plan = plan_simulation(
                orders=options["orders"],
                tickets_per_order=options["tickets_per_order"],
                cancel_rate=options["cancel_rate"],
                repeat_rate=options["repeat_rate"],
                unconfirmed_cancel_rate=options["unconfirmed_cancel_rate"],
                seed=options["seed"],
                run_id=options["run_id"] or uuid.uuid4().hex[:8],
            )
        except PlanError as exc:
            option = "--" + exc.field.replace("_", "-")
            raise CommandError(f"{option}: {exc}", returncode=EXIT_BAD_ARGUMENTS) from exc

        inspector = GatewayInspector(gateway_url)
        if not options["no_verify"]:
            problem = inspector.problem()
            if problem is not None:
                raise CommandError(
                    f"Cannot verify effects at {gateway_url}: {problem}. The simulator checks "
                    "effects only through a fake gateway's /fake-gateway/state; against a real "
                    "gateway it can only post. Pass --no-verify to post without checking.",
                    returncode=EXIT_BAD_ARGUMENTS,
                )
        problem = service_problem(service_url)
        if problem is not None:
            raise CommandError(
                f"The service at {service_url} does not answer: {problem}. Is --url right?",
                returncode=EXIT_BAD_ARGUMENTS,
            )

        self.describe(plan, service_url, options["seed"])
        started = time.monotonic()
        posted = self.post(plan, service_url, concurrency=options["concurrency"], key=key)
        if not posted.ok:
            raise CommandError(
                "Some webhooks were not accepted; effects were not checked.",
                returncode=EXIT_FAILED,
            )
        if options["no_verify"]:
            self.stdout.write(
                f"Effects not verified (--no-verify): {gateway_url} was not asked. "
                f"Elapsed: {time.monotonic() - started:.1f}s."
            )
            return

        waited_from = time.monotonic()
        waiting = ProgressBar(self.stdout, label="Waiting", unit="effects")
        try:
            report = wait_for_effects(
                inspector.state,
                plan.expected,
                deadline_seconds=options["deadline"],
                settle_seconds=options["settle"],
                on_progress=lambda report, elapsed: waiting.update(
                    report.present, report.expected, f"{elapsed:.0f}s"
                ),
            )
        except GatewayUnavailable as exc:
            waiting.end()
            raise CommandError(
                f"The gateway stopped answering: {exc}", returncode=EXIT_FAILED
            ) from exc
        waiting.end()
        finished = time.monotonic()
        self.summarize(report)
        self.stdout.write(
            f"Elapsed: {finished - started:.1f}s (posting {posted.seconds:.1f}s, waiting "
            f"{finished - waited_from:.1f}s)."
        )
        if not report.complete:
            missing = sum(len(check.missing) for check in report.checks)
            raise CommandError(
                f"FAILED: {missing} effect(s) still missing after the {options['deadline']:g}s "
                "deadline. The service may still be retrying them (backoff grows to "
                "OUTBOX_BACKOFF_CAP_SECONDS): see `manage.py outbox_status`, or raise --deadline.",
                returncode=EXIT_FAILED,
            )
        if not report.ok:
            raise CommandError(
                "FAILED: effects duplicated, unexpected or wrong (see above).",
                returncode=EXIT_FAILED,
            )
        self.stdout.write(
            self.style.SUCCESS("OK: every expected effect is at the gateway, exactly once.")
        )

    # Reporting ----------------------------------------------------------------------------

    def describe(self, plan: SimulationPlan, service_url: str, seed: int | None) -> None:
        refunds = len(plan.expected.by_effect[REFUND_SHEET])
        self.stdout.write(
            f"Run {plan.run_id} (seed {seed}): {plan.orders} orders, {plan.tickets} tickets, "
            f"{refunds} to cancel; {len(plan.webhooks)} webhooks ({plan.repeats} repeats) to "
            f"{service_url}/tickets-status."
        )

    def post(
        self, plan: SimulationPlan, service_url: str, *, concurrency: int, key: bytes | None
    ) -> PostReport:
        poster = WebhookPoster(service_url, concurrency=concurrency, key=key)
        posting = ProgressBar(self.stdout, label="Posting", unit="webhooks")
        report = poster.post_all(plan.phases(), on_progress=posting.update)
        posting.end()
        self.stdout.write(
            f"Posted {report.sent} webhooks in {report.seconds:.1f}s: {report.accepted} "
            f"accepted, {report.repeats} repeats, {report.retries} retried after a failure."
        )
        for problem in report.rejected[:SHOWN_IDS]:
            self.stderr.write(f"  refused: {problem}")
        for problem in report.repeat_mismatches[:SHOWN_IDS]:
            self.stderr.write(f"  repeat answered differently: {problem}")
        return report

    def summarize(self, report: EffectsReport) -> None:
        columns = ("Expected", "Present", "Missing", "Duplicated", "Unexpected")
        self.stdout.write(f"{'Effect':<20}" + "".join(f"{c:>12}" for c in columns))
        for check in report.checks:
            values = (
                check.expected,
                check.present,
                len(check.missing),
                len(check.duplicated),
                len(check.unexpected),
            )
            self.stdout.write(f"{check.effect:<20}" + "".join(f"{v:>12}" for v in values))
        wrong_content = sum(len(check.wrong_content) for check in report.checks)
        wrong_correlation = sum(len(check.wrong_correlation) for check in report.checks)
        self.stdout.write(
            f"Wrong content: {wrong_content}. Wrong Correlation-ID: {wrong_correlation}."
        )
        for check in report.checks:
            self.list_ids(check, "missing", check.missing)
            self.list_ids(check, "duplicated", check.duplicated)
            self.list_ids(check, "unexpected", check.unexpected)
            self.list_ids(check, "wrong content", check.wrong_content)
            self.list_ids(check, "wrong Correlation-ID", check.wrong_correlation)

    def list_ids(self, check: EffectCheck, what: str, ticket_ids: Sequence[str]) -> None:
        if not ticket_ids:
            return
        shown = ", ".join(ticket_ids[:SHOWN_IDS])
        more = len(ticket_ids) - SHOWN_IDS
        self.stderr.write(
            f"  {check.effect} {what}: {shown}" + (f" (+{more} more)" if more > 0 else "")
        )
