"""How long a reconcile of N tickets against sheets of N rows takes, against the fake gateway.

Everything it writes (the tickets, the run, its items) is rolled back at the end: it runs in
one transaction on the configured database, which it leaves as it found it.
"""

from __future__ import annotations

import resource
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection, transaction
from django.utils import timezone

from devtools.fake_gateway import FakeGateway, FaultConfig, start_in_thread
from tickets import kinds
from tickets.models import Ticket, TicketStatus
from tickets.reconcile import Reconciler, Scope
from tickets.reconcile.sheets import SheetReader

DOC = Path(__file__).resolve().parents[3] / "docs" / "BENCHMARKS.md"
SECTION = "## Reconcile at scale"


class _RolledBack(Exception):
    pass


class Command(BaseCommand):
    help = (
        "Time a reconcile of --tickets tickets (a tenth of them canceled) against print and "
        "refund sheets holding their rows, with 0.1%% of the rows deleted, duplicated or "
        "changed, against the fake gateway in a thread. Rolls back what it wrote; --write "
        "puts the result in docs/BENCHMARKS.md."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tickets", type=int, default=100_000, help="How many tickets.")
        parser.add_argument("--write", action="store_true", help="Write docs/BENCHMARKS.md.")

    def handle(self, *args: Any, **options: Any) -> None:
        n: int = options["tickets"]
        if n < 1000:
            raise CommandError("--tickets must be at least 1000.")
        gateway = FakeGateway(FaultConfig(seed=0))
        server, url = start_in_thread(gateway)
        try:
            with self.settings_for(url):
                result = self.measure(n, gateway)
        finally:
            server.stop()
        line = (
            f"{n:,} tickets against {result['rows']:,} sheet rows ({connection.vendor}): "
            f"{result['seconds']:.1f} s, {result['pages']} pages, "
            f"{result['drift']} drift items found (of {result['planted']} planted); "
            f"peak RSS growth {result['rss_mb']:.0f} MiB (this process, the in-thread fake "
            "gateway's copy of the sheets included)"
        )
        self.stdout.write(line)
        if options["write"]:
            self.write_doc(line, n)

    def settings_for(self, url: str) -> Any:
        from django.test import override_settings

        # The reconcile's own pace: pages of 5,000 at up to 20 a second (the defaults).
        return override_settings(GATEWAY_ADDR=url)

    def measure(self, n: int, gateway: FakeGateway) -> dict[str, Any]:
        now = timezone.now()
        canceled = set(range(0, n, 10))
        tickets = [
            Ticket(
                ticket_id=f"b-{i:07d}",
                status=TicketStatus.CANCELED if i in canceled else TicketStatus.CONFIRMED,
                customer_email=f"c{i}@example.com",
                price_amount=Decimal("12.50"),
                price_currency="EUR",
                receipt_number=f"R-{i:07d}",
                created_at=now,
                updated_at=now,
            )
            for i in range(n)
        ]
        print_rows = [[t.ticket_id, t.customer_email, "12.50", "EUR"] for t in tickets]
        refund_rows = [print_rows[i] for i in sorted(canceled)]
        gateway.load_rows(kinds.PRINT_SHEET, print_rows)
        gateway.load_rows(kinds.REFUND_SHEET, refund_rows)
        planted = 0
        for i in range(1, n, 1000):
            tid = f"b-{i:07d}"
            for drift in (
                {"action": "duplicate", "ticket_id": tid},
                {"action": "delete", "ticket_id": f"b-{i + 1:07d}"},
                {"action": "change", "ticket_id": f"b-{i + 2:07d}", "amount": "1.00"},
            ):
                gateway.plant_drift(kinds.PRINT_SHEET, drift)
                planted += 1
        del print_rows, refund_rows
        outcome: dict[str, Any] = {}
        try:
            with transaction.atomic():
                for start in range(0, n, 5000):
                    Ticket.objects.bulk_create(tickets[start : start + 5000])
                del tickets
                before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                reader = SheetReader()
                started = time.perf_counter()
                run = Reconciler(
                    scope=Scope(since=now - timedelta(minutes=1)),
                    by="benchmark",
                    reader=reader,
                ).run()
                outcome = {
                    "seconds": time.perf_counter() - started,
                    "rows": run.rows_read,
                    "pages": reader.pages_read,
                    "drift": run.drift_open,
                    "planted": planted,
                    "rss_mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024,
                }
                raise _RolledBack
        except _RolledBack:
            pass
        return outcome

    def write_doc(self, line: str, n: int) -> None:
        text = DOC.read_text()
        body = (
            f"{SECTION}\n\n"
            "A reconcile reads both sheets in pages of 5,000 rows (at most 20 pages a second) "
            "through the gateway client, looks the tickets of each page up by id, then walks "
            "the tickets in scope in chunks of 2,000 with their tasks; between pages it keeps "
            "only each sheet's first-row number per ticket. Measured with:\n\n"
            "```sh\n"
            f"python manage.py reconcile_benchmark --tickets {n} --write\n"
            "```\n\n"
            f"- {line}.\n"
        )
        if SECTION in text:
            head, _, rest = text.partition(SECTION)
            tail = rest.split("\n## ", 1)
            text = head + body + ("\n## " + tail[1] if len(tail) > 1 else "")
        else:
            text = text.rstrip("\n") + "\n\n" + body
        DOC.write_text(text)
