"""The reconcile finds each kind of drift, reports it, and its fixes make one effect, not two.

The fake gateway runs in a thread (real HTTP); the relay runs passes directly, no sleeps."""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission, User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import transaction
from django.db.models import F
from django.db.models.functions import Now
from django.test import override_settings
from django.utils import timezone

from outbox.models import Task, TaskState
from outbox.registry import TaskContext, get_handler
from tests.conftest import ticket
from tickets import kinds
from tickets.models import DriftItem, DriftKind, ReconcileRun, Ticket
from tickets.reconcile import CannotFix, Reconciler, Scope, drift_acknowledge, drift_fix
from tickets.reconcile.sheets import SheetReader
from tickets.services import ticket_refund_request

pytestmark = pytest.mark.django_db

PRINT, REFUND = kinds.PRINT_SHEET, kinds.REFUND_SHEET


def drain() -> None:
    """Run every waiting task's handler in this thread, as the relay would, and record it.

    (The relay's own threads cannot write the in-memory test database's tickets table.)"""
    for task in Task.objects.filter(state=TaskState.PENDING).order_by("pk"):
        context = TaskContext(
            id=task.pk,
            kind=task.kind,
            payload=task.payload,
            idempotency_key=task.idempotency_key,
            attempt=task.attempts + 1,
            max_attempts=task.max_attempts,
            correlation_id=task.correlation_id,
        )
        result = get_handler(task.kind).func(context)
        Task.objects.filter(pk=task.pk).update(
            state=TaskState.SUCCEEDED, result=result, attempts=F("attempts") + 1, finished_at=Now()
        )


def sold(post_tickets, *ids: str, status: str = "confirmed", key: str = "k-1") -> None:
    response = post_tickets([ticket(t, status) for t in ids], key=key)
    assert response.status_code == 200, response.content


def reconcile(*ids: str, reader: SheetReader | None = None) -> ReconcileRun:
    scope = Scope(ticket_ids=ids) if ids else Scope()
    return Reconciler(scope=scope, by="ada", reader=reader).run()


def items(run: ReconcileRun, kind: str | None = None) -> list[DriftItem]:
    found = run.items.order_by("pk")
    return list(found.filter(kind=kind) if kind else found)


def print_rows(gateway, ticket_id: str) -> int:
    return sum(1 for row in gateway.snapshot()["sheets"].get(PRINT, []) if row[0] == ticket_id)


def test_a_drained_day_reconciles_clean(post_tickets, gateway_url, gateway):
    sold(post_tickets, "t-1", "t-2")
    sold(post_tickets, "t-3", status="canceled", key="k-2")
    drain()

    run = reconcile()

    assert (run.status, run.drift_open, run.counts) == ("done", 0, {})
    assert (run.tickets_checked, run.rows_read) == (3, 3)


def test_a_deleted_row_is_missing_and_its_fix_run_twice_makes_one_row(
    post_tickets, gateway_url, gateway
):
    sold(post_tickets, "t-1")
    drain()
    gateway.plant_drift(PRINT, {"action": "delete", "ticket_id": "t-1"})

    run = reconcile()
    [missing] = items(run, DriftKind.MISSING_ROW)
    assert (run.drift_open, missing.seller_ticket_id, missing.effect) == (
        1,
        "t-1",
        "sheet:" + PRINT,
    )
    assert missing.evidence["task"]["state"] == "succeeded"

    outcome = drift_fix(item_id=missing.pk, by="ada")
    with pytest.raises(CannotFix, match="fixed already"):
        drift_fix(item_id=missing.pk, by="ada")
    assert "requeued" in outcome.done
    drain()
    # A second fix from a fresh run, after the row is back: the rerun reads first.
    gateway.plant_drift(PRINT, {"action": "delete", "ticket_id": "t-1"})
    again = items(reconcile(), DriftKind.MISSING_ROW)[0]
    drift_fix(item_id=again.pk, by="ada")
    gateway.plant_drift(
        PRINT, {"action": "add", "columns": ["t-1", "ada@example.com", "50.00", "EUR"]}
    )
    drain()

    assert print_rows(gateway, "t-1") == 1
    assert reconcile().drift_open == 0
    history = LogEntry.objects.filter(object_id=str(missing.pk)).values_list(
        "change_message", flat=True
    )
    assert any("Fixed" in m for m in history)


def test_a_fix_for_a_pruned_task_enqueues_the_webhooks_task_which_reads_first(
    post_tickets, gateway_url, gateway
):
    sold(post_tickets, "t-1")
    drain()
    old = Task.objects.get(dedupe_key=kinds.PRINT_ROW.dedupe_key("t-1"))
    Task.objects.filter(pk=old.pk).delete()  # pruned
    gateway.plant_drift(PRINT, {"action": "delete", "ticket_id": "t-1"})
    [missing] = items(reconcile(), DriftKind.MISSING_ROW)
    # The row comes back by hand before the fix runs: the fix must not double it.
    gateway.plant_drift(
        PRINT, {"action": "add", "columns": ["t-1", "ada@example.com", "50.00", "EUR"]}
    )

    drift_fix(item_id=missing.pk, by="ada")
    new = Task.objects.get(dedupe_key=kinds.PRINT_ROW.dedupe_key("t-1"))
    drain()

    assert new.idempotency_key == old.idempotency_key
    assert new.payload[kinds.READ_SHEET_FIRST] is True
    assert print_rows(gateway, "t-1") == 1


def test_a_duplicate_an_extra_and_a_changed_row_are_each_reported(
    post_tickets, gateway_url, gateway
):
    sold(post_tickets, "t-1", "t-2", "t-3")
    drain()
    gateway.plant_drift(PRINT, {"action": "duplicate", "ticket_id": "t-1"})
    gateway.plant_drift(PRINT, {"action": "change", "ticket_id": "t-2", "amount": "5.00"})
    gateway.plant_drift(
        PRINT, {"action": "add", "columns": ["t-x", "eve@example.com", "1.00", "EUR"]}
    )
    gateway.plant_drift(
        REFUND, {"action": "add", "columns": ["t-3", "ada@example.com", "50.00", "EUR"]}
    )

    run = reconcile()

    assert run.counts == {"duplicate_row": 1, "different_row": 1, "extra_row": 2}
    [dup] = items(run, DriftKind.DUPLICATE_ROW)
    assert (dup.seller_ticket_id, dup.evidence["first_row"], dup.evidence["row"]) == ("t-1", 1, 4)
    [changed] = items(run, DriftKind.DIFFERENT_ROW)
    assert changed.evidence["differences"] == {"amount": {"ours": "50.00", "sheet": "5.00"}}
    extras = {i.seller_ticket_id: i for i in items(run, DriftKind.EXTRA_ROW)}
    assert extras["t-x"].ticket_id is None
    assert "no record" in extras["t-x"].summary
    assert "not canceled" in extras["t-3"].summary
    with pytest.raises(CannotFix, match="corrected by hand"):
        drift_fix(item_id=dup.pk, by="ada")


def test_what_differs_only_in_how_it_is_written_is_not_drift(post_tickets, gateway_url, gateway):
    sold(post_tickets, "t-1", "t-2", "t-3")
    drain()
    # The same amount, mailbox and currency, written otherwise (a hand, another export).
    gateway.plant_drift(PRINT, {"action": "change", "ticket_id": "t-1", "amount": "50.0"})
    gateway.plant_drift(PRINT, {"action": "change", "ticket_id": "t-2", "amount": "50"})
    gateway.plant_drift(
        PRINT,
        {"action": "change", "ticket_id": "t-3", "customer_email": "Ada@Example.COM"},
    )
    gateway.plant_drift(PRINT, {"action": "change", "ticket_id": "t-3", "currency": "eur"})

    run = reconcile()

    assert (run.counts, run.drift_open) == ({}, 0)


def test_a_ticket_canceled_after_it_was_confirmed_has_both_rows_and_no_drift(
    post_tickets, gateway_url, gateway
):
    sold(post_tickets, "t-1")
    drain()
    sold(post_tickets, "t-1", status="canceled", key="k-2")
    drain()
    assert print_rows(gateway, "t-1") == 1
    assert [r[0] for r in gateway.snapshot()["sheets"][REFUND]] == ["t-1"]

    run = reconcile()
    window = Reconciler(scope=Scope(since=timezone.now() - timedelta(hours=1)), by="ada").run()

    assert (run.counts, run.drift_open) == ({}, 0)
    assert (window.counts, window.tickets_checked) == ({}, 1)


def test_a_window_holds_its_start_and_not_its_end(post_tickets, gateway_url, gateway):
    sold(post_tickets, "t-in", "t-before", "t-at-end")
    drain()
    start = timezone.now().replace(microsecond=0) - timedelta(hours=2)
    end = start + timedelta(hours=1)
    for tid, moment in (("t-in", start), ("t-before", start - timedelta(microseconds=1))):
        Ticket.objects.filter(ticket_id=tid).update(created_at=moment, updated_at=moment)
    Ticket.objects.filter(ticket_id="t-at-end").update(created_at=end, updated_at=end)
    # Each sheet row of a ticket outside the window is skipped, not called extra; and the
    # ticket inside it, with its row deleted, is the one finding.
    gateway.plant_drift(PRINT, {"action": "delete", "ticket_id": "t-in"})
    gateway.plant_drift(PRINT, {"action": "delete", "ticket_id": "t-before"})

    run = Reconciler(scope=Scope(since=start, until=end), by="ada").run()

    assert run.tickets_checked == 1
    assert [(i.kind, i.seller_ticket_id) for i in items(run)] == [("missing_row", "t-in")]


def test_an_acknowledged_row_stays_acknowledged_in_the_next_run(post_tickets, gateway_url, gateway):
    sold(post_tickets, "t-1")
    drain()
    gateway.plant_drift(PRINT, {"action": "duplicate", "ticket_id": "t-1"})
    [dup] = items(reconcile(), DriftKind.DUPLICATE_ROW)
    with pytest.raises(CannotFix, match="needs a note"):
        drift_acknowledge(item_id=dup.pk, by="ada", note=" ")

    drift_acknowledge(item_id=dup.pk, by="ada", note="row 2 struck out on paper")
    run = reconcile()

    [again] = items(run, DriftKind.DUPLICATE_ROW)
    assert (again.state, run.drift_open) == ("acknowledged", 0)
    assert "row 2 struck out" in again.note


def test_a_task_still_pending_is_in_flight_not_missing(post_tickets, gateway_url, gateway):
    sold(post_tickets, "t-1")  # not drained: every effect is still to do

    run = reconcile()

    assert run.drift_open == 0
    assert {i.effect for i in items(run, DriftKind.IN_FLIGHT)} == {"receipt", "sheet:" + PRINT}


def test_a_failed_receipt_is_missing_and_its_fix_requeues_the_same_task(
    post_tickets, gateway_url, gateway
):
    sold(post_tickets, "t-1")
    receipt = Task.objects.get(dedupe_key=kinds.RECEIPT.dedupe_key("t-1"))
    Task.objects.filter(pk=receipt.pk).update(state=TaskState.FAILED, attempts=30)
    drain()

    [missing] = items(reconcile(), DriftKind.MISSING_RECEIPT)
    drift_fix(item_id=missing.pk, by="ada")
    drain()

    assert Ticket.objects.get(ticket_id="t-1").receipt_number
    assert len(gateway.snapshot()["receipts"]) == 1
    assert Task.objects.filter(dedupe_key=receipt.dedupe_key).count() == 1


def test_a_fix_of_an_item_whose_ticket_changed_since_the_run_enqueues_nothing(
    post_tickets, gateway_url, gateway
):
    sold(post_tickets, "t-1", "t-2")
    for tid in ("t-1", "t-2"):
        Task.objects.filter(dedupe_key=kinds.RECEIPT.dedupe_key(tid)).update(
            state=TaskState.FAILED, attempts=30
        )
    drain()
    run = reconcile()
    stale, live = items(run, DriftKind.MISSING_RECEIPT)
    # Since the run, t-1's receipt came (a retry from the task's page, by hand).
    Ticket.objects.filter(ticket_id="t-1").update(receipt_number="R-by-hand")
    Task.objects.filter(dedupe_key=kinds.RECEIPT.dedupe_key("t-1")).update(
        state=TaskState.SUCCEEDED
    )

    out, err = StringIO(), StringIO()
    with pytest.raises(CommandError) as raised:
        call_command("reconcile", "--fix", str(run.pk), stdout=out, stderr=err)

    # The stale one is refused and left open; the refusal does not stop the other's fix.
    assert raised.value.returncode == 1
    assert "changed since run" in err.getvalue()
    assert "1 missing effect(s)" in out.getvalue()
    stale.refresh_from_db()
    live.refresh_from_db()
    assert (stale.state, live.state) == ("open", "fixed")
    receipt = Task.objects.get(dedupe_key=kinds.RECEIPT.dedupe_key("t-1"))
    assert receipt.state == TaskState.SUCCEEDED  # not requeued


def test_a_refunded_ticket_whose_void_and_refund_failed_is_reported_twice(
    post_tickets, gateway_url, gateway
):
    sold(post_tickets, "t-1")
    drain()
    with transaction.atomic():
        ticket_refund_request(ticket_id="t-1", correlation_id="c")
    Task.objects.filter(kind__in=[kinds.VOID_RECEIPT, kinds.REFUND_PAYMENT]).update(
        state=TaskState.FAILED, attempts=30
    )

    run = reconcile("t-1")

    assert run.counts == {"missing_void": 1, "missing_refund": 1}
    assert any("no lookup" in note for note in run.notes)


def test_pages_are_read_at_a_bounded_rate_and_a_duplicate_across_pages_is_found(
    post_tickets, gateway_url, gateway
):
    sold(post_tickets, "t-1", "t-2", "t-3")
    drain()
    gateway.plant_drift(PRINT, {"action": "duplicate", "ticket_id": "t-1"})
    waits: list[float] = []
    reader = SheetReader(page_rows=2, pages_per_second=10, sleep=waits.append)

    run = reconcile(reader=reader)

    assert run.counts == {"duplicate_row": 1}
    assert reader.pages_read == 3  # 4 print rows in pages of 2, and the empty refund sheet
    assert all(0 < w <= 0.1 for w in waits)


def test_the_command_exits_1_on_drift_and_prints_json(post_tickets, gateway_url, gateway):
    sold(post_tickets, "t-1")
    drain()
    gateway.plant_drift(PRINT, {"action": "delete", "ticket_id": "t-1"})
    out = StringIO()

    with pytest.raises(CommandError) as raised:
        call_command("reconcile", "--ticket", "t-1", "--json", stdout=out)

    document = json.loads(out.getvalue())
    assert raised.value.returncode == 1
    assert document["counts"] == {"missing_row": 1}
    assert document["items"][0]["amount"] == "50.00"
    fixed = StringIO()
    call_command("reconcile", "--fix", str(document["run"]), stdout=fixed)
    call_command("reconcile", "--fix", str(document["run"]), stdout=fixed)
    assert "1 missing effect(s)" in fixed.getvalue()
    assert "0 missing effect(s)" in fixed.getvalue()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "yesterday"], "--since 'yesterday' is not an ISO date"),
        (["--since", "2026-05-02", "--until", "2026-05-01"], "must be before --until"),
        (["--ticket", "t-1", "--since", "2026-05-01"], "does not take --since"),
        (["--ticket", "nobody"], "unknown ticket"),
        (["--fix", "999"], "does not exist"),
        # A date that looks like one (ten characters) but is not on the calendar.
        (["--since", "2026-13-45"], "--since '2026-13-45' is not an ISO date"),
        (["--until", "2026-02-30"], "--until '2026-02-30' is not an ISO date"),
        # A window that starts tomorrow holds nothing: said, not run (and stored) empty.
        (["--since", "2999-01-01"], "is in the future"),
        (["--ticket", "t-\x001"], r"--ticket 't-\\x001' is not a ticket id: it must be plain"),
        (["--ticket", " "], "must not be blank"),
        (["--fix", "1", "--since", "2026-05-01"], "does not take --since"),
    ],
)
def test_bad_arguments_are_refused_naming_the_problem_and_store_nothing(args, message):
    with pytest.raises(CommandError, match=message) as raised:
        call_command("reconcile", *args)

    assert raised.value.returncode == 2
    assert not ReconcileRun.objects.exists()


def test_an_unreachable_sheet_stops_the_run_as_an_error(post_tickets, gateway_url, gateway):
    sold(post_tickets, "t-1")
    gateway.configure({"down": ["spreadsheets"]})

    with pytest.raises(CommandError) as raised:
        call_command("reconcile", stdout=StringIO())

    assert raised.value.returncode == 3
    assert ReconcileRun.objects.get().status == "error"


def test_outbox_status_check_fails_on_drift_only_when_configured(
    post_tickets, gateway_url, gateway
):
    sold(post_tickets, "t-1")
    drain()
    gateway.plant_drift(PRINT, {"action": "delete", "ticket_id": "t-1"})
    reconcile()
    loose = ["--check", "--max-oldest-due", "-1", "--max-failed", "-1", "--min-live-passes", "-1"]

    call_command("outbox_status", *loose, stdout=StringIO())
    with (
        override_settings(RECONCILE_DRIFT_FAILS_CHECK=True),
        pytest.raises(CommandError, match="reconcile_drift"),
    ):
        call_command("outbox_status", *loose, stdout=StringIO(), stderr=StringIO())


def test_the_dashboard_shows_the_last_runs_open_drift(
    admin_client, post_tickets, gateway_url, gateway
):
    sold(post_tickets, "t-1")
    drain()
    gateway.plant_drift(PRINT, {"action": "delete", "ticket_id": "t-1"})
    run = reconcile()

    html = admin_client.get("/admin/outbox/task/dashboard/").content.decode()

    assert "1 open drift item(s)" in html
    assert f"/admin/tickets/reconcilerun/{run.pk}/change/" in html


def test_the_admin_fixes_and_acknowledges_with_a_note_in_the_history(
    admin_client, post_tickets, gateway_url, gateway
):
    sold(post_tickets, "t-1", "t-2")
    drain()
    gateway.plant_drift(PRINT, {"action": "delete", "ticket_id": "t-1"})
    gateway.plant_drift(PRINT, {"action": "duplicate", "ticket_id": "t-2"})
    run = reconcile()
    missing = items(run, DriftKind.MISSING_ROW)[0]
    dup = items(run, DriftKind.DUPLICATE_ROW)[0]
    url = "/admin/tickets/driftitem/"

    listed = admin_client.get(url, {"run__id__exact": run.pk, "kind__exact": "duplicate_row"})
    admin_client.post(url, {"action": "fix_missing", "_selected_action": [missing.pk]})
    asked = admin_client.post(url, {"action": "acknowledge", "_selected_action": [dup.pk]})
    admin_client.post(
        url,
        {
            "action": "acknowledge",
            "_selected_action": [dup.pk],
            "post": "yes",
            "note": "removed row 3",
        },
    )

    assert "t-2" in listed.content.decode()
    assert "t-1 " not in listed.content.decode()
    assert "A note" not in asked.content.decode()
    assert 'name="note"' in asked.content.decode()
    states = dict(DriftItem.objects.filter(run=run).values_list("pk", "state"))
    assert (states[missing.pk], states[dup.pk]) == ("fixed", "acknowledged")
    messages = set(LogEntry.objects.values_list("change_message", flat=True))
    assert any("Acknowledged from reconcile run" in m and "removed row 3" in m for m in messages)
    assert any(m.startswith("Enqueued by the fix of drift item") for m in messages)


def test_a_viewer_without_the_fix_and_acknowledge_permissions_changes_nothing(
    client, post_tickets, gateway_url, gateway
):
    sold(post_tickets, "t-1", "t-2")
    drain()
    gateway.plant_drift(PRINT, {"action": "delete", "ticket_id": "t-1"})
    gateway.plant_drift(PRINT, {"action": "duplicate", "ticket_id": "t-2"})
    run = reconcile()
    viewer = User.objects.create_user("vic", password="x", is_staff=True)
    viewer.user_permissions.add(*Permission.objects.filter(codename="view_driftitem"))
    client.force_login(viewer)
    url = "/admin/tickets/driftitem/"
    ids = [item.pk for item in items(run)]

    listed = client.get(url)
    client.post(url, {"action": "fix_missing", "_selected_action": ids})
    client.post(url, {"action": "acknowledge", "_selected_action": ids, "post": "yes", "note": "x"})
    # A GET names the action in vain: actions run on POST only.
    client.get(url, {"action": "fix_missing", "_selected_action": ids})

    assert listed.status_code == 200
    assert "fix_missing" not in listed.content.decode()
    assert set(run.items.values_list("state", flat=True)) == {"open"}
    assert Task.objects.filter(state=TaskState.PENDING).count() == 0
