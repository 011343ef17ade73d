"""An accountant closes the month in a real browser: the reconcile runs, a run's items filtered
by kind, and a duplicate row acknowledged with a note through the confirmation page (a POST
with the admin's CSRF token, by a member of Accounting who is not a superuser).

It takes the pictures of docs/OPERATORS.md's walk-through ("Reconciling our records with the
APIs") at 1366 x 768 and fails if any cell is cut off or the page scrolls sideways;
`UPDATE_DOC_IMAGES=1` writes them over docs/img/ (tests/e2e/test_admin_browser.py).
"""

from __future__ import annotations

import json
import re
import uuid

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import Stack, wait_until
from tests.e2e.test_admin_browser import (
    LAPTOP,
    chromium,
    create_accounting_user,
    log_in,
    readable_on_a_laptop,
    require_chromium,
)
from tests.e2e.test_cluster import confirmed, post_order
from tests.e2e.test_reconcile import plant

pytestmark = pytest.mark.e2e

TICKETS = [f"t-nov-{i}" for i in range(1, 7)]
NOTE = "Struck the second row of t-nov-2 on the print sheet (November close)."


def drained(stack: Stack) -> bool:
    states = stack.db.task_states()
    return states.get("succeeded", 0) == 2 * len(TICKETS) and not states.get("pending")


def item_state(stack: Stack, item_id: int) -> tuple[str, str, str]:
    [(state, by, note)] = stack.db.rows(
        "SELECT state, handled_by, note FROM tickets_driftitem WHERE id = %s", (item_id,)
    )
    return str(state), str(by), str(note)


def test_accounting_works_a_reconcile_run_in_the_admin(stack: Stack):
    require_chromium()  # before starting anything
    stack.start_gateway()
    stack.start_web()
    post_order(stack, "order-november", [confirmed(tid) for tid in TICKETS])
    stack.start_cluster()
    wait_until(lambda: drained(stack), timeout=30, what="the sale's receipts and rows")
    plant(stack, action="duplicate", ticket_id="t-nov-2")
    plant(stack, action="delete", ticket_id="t-nov-4")
    plant(stack, action="change", ticket_id="t-nov-5", amount="1.25")
    result = stack.manage("reconcile", "--json", "--by", "nightly", check=False)
    assert result.returncode == 1, result.stderr
    run = json.loads(result.stdout)
    assert run["counts"] == {"duplicate_row": 1, "missing_row": 1, "different_row": 1}
    [duplicate] = [i for i in run["items"] if i["kind"] == "duplicate_row"]
    password = uuid.uuid4().hex
    create_accounting_user(stack, password)

    with chromium() as browser:
        page = browser.new_page(viewport=LAPTOP)
        log_in(page, stack, password)

        page.goto(f"{stack.web_url}/admin/tickets/reconcilerun/")
        rows = page.locator("#result_list tbody tr")
        expect(rows).to_have_count(1)
        expect(rows.first.locator(".field-drift_open")).to_have_text("3")
        readable_on_a_laptop(page, "reconcile-runs")

        # The run's page: the counts per kind, each a link to its items.
        rows.first.locator("th a").click()
        page.get_by_role("link", name=re.compile(r"^Duplicate row: 1")).click()
        expect(page).to_have_url(re.compile(r"kind__exact=duplicate_row"))
        items = page.locator("#result_list tbody tr")
        expect(items).to_have_count(1)
        expect(items.first).to_contain_text("t-nov-2")
        readable_on_a_laptop(page, "reconcile-items")

        items.first.locator(f'input.action-select[value="{duplicate["id"]}"]').check()
        page.locator('select[name="action"]').select_option(label="Acknowledge with a note…")
        page.click('#changelist-form button[name="index"]')
        expect(page.locator("#acknowledge-items")).to_contain_text("t-nov-2")
        page.fill("#id_note", NOTE)
        readable_on_a_laptop(page, "reconcile-acknowledge")
        page.click('#content form [type="submit"]')

        expect(page.locator("ul.messagelist li.success")).to_have_text("1 drift item acknowledged.")
        page.close()

    assert item_state(stack, duplicate["id"]) == ("acknowledged", "ada.accounting", NOTE)
