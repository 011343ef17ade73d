"""A person from accounting retries dead receipt tasks in the admin, in a real browser: one
task from the task list, and a bad day's whole group with one click on the dashboard.

Playwright (sync API) drives Debian's chromium, /usr/bin/chromium (`scripts/system-deps.sh`
installs it; Playwright's own browser download is never used), against gunicorn, with
qcluster and the fake gateway running as real processes.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Browser, Page, ViewportSize, expect, sync_playwright

from tests.e2e.conftest import ROOT, Stack, wait_until

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOT = ROOT / "tests" / "artifacts" / "admin-retry.png"
# The operators' guide shows these (docs/OPERATORS.md, "On a bad day"). A run writes them to
# tests/artifacts/; UPDATE_DOC_IMAGES=1 writes them over docs/img/, so a plain run of the
# suite leaves the checkout as it was.
DOC_IMAGES = (
    ROOT / "docs" / "img"
    if os.environ.get("UPDATE_DOC_IMAGES") == "1"
    else ROOT / "tests" / "artifacts" / "img"
)
# An accountant's laptop.
LAPTOP: ViewportSize = {"width": 1366, "height": 768}
# Cells that hold an error or an amount: none may be cut off at the laptop's width.
MUST_FIT = (
    # The list's table in its box: every column, the last error included, on screen.
    "#changelist .results",
    "#result_list td.field-price",
    "#result_list td.field-answer",
    "#result_list td.field-error_line",
    ".field-last_error_text .readonly",
    "#attempt_set-group td.field-error_text",
    ".field-price .readonly",
    ".field-standing .readonly",
    ".field-effects_with_retry .readonly",
    ".field-outbox_tasks_detail .readonly",
    ".outbox-scroll",
    "table.outbox-tasks td",
    "#groups td",
    "#failure-groups td",
)

TICKET = "t-browser-1"
RECEIPT_KIND = "tickets.issue_receipt"
USERNAME = "ada.accounting"
RETRY_ACTION = "Retry now (failed or waiting tasks)"
# What the Accounting group may not do; none of these may be offered to it.
REFUSED_ACTIONS = ("Cancel", "Re-run", "Pause", "Resume", "Delete")


def require_chromium() -> None:
    # Fail, not skip: a CI without the browser would otherwise go green having tested nothing.
    if not CHROMIUM.is_file():
        pytest.fail(
            f"{CHROMIUM} is missing: the browser tests drive Debian's chromium. "
            "Install it with `bash scripts/system-deps.sh` (apt-get install chromium).",
            pytrace=False,
        )


@contextmanager
def chromium() -> Iterator[Browser]:
    require_chromium()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def post_confirmed_ticket(stack: Stack, ticket_id: str) -> None:
    response = requests.post(
        f"{stack.web_url}/tickets-status",
        json={
            "tickets": [
                {
                    "ticket_id": ticket_id,
                    "status": "confirmed",
                    "customer_email": f"{ticket_id}@example.com",
                    "price": {"amount": "12.50", "currency": "EUR"},
                }
            ]
        },
        headers={"Idempotency-Key": f"order-{ticket_id}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text


def receipt_task(stack: Stack) -> tuple[int, str, str]:
    """(id, state, last_error) of the only receipt task."""
    rows = stack.db.rows(
        "SELECT id, state, last_error FROM outbox_task WHERE kind = %s", (RECEIPT_KIND,)
    )
    assert len(rows) == 1, rows
    task_id, state, last_error = rows[0]
    return int(task_id), str(state), str(last_error)


def create_accounting_user(stack: Stack, password: str) -> None:
    """A staff member of the Accounting group, and nothing more: not a superuser."""
    code = (
        "from django.contrib.auth import get_user_model\n"
        "from django.contrib.auth.models import Group\n"
        f"user = get_user_model().objects.create_user({USERNAME!r}, password={password!r},"
        " is_staff=True)\n"
        "user.groups.add(Group.objects.get(name='Accounting'))\n"
    )
    stack.manage("shell", "-c", code)


def fail_the_receipt_task(stack: Stack, task_id: int) -> None:
    """Let the relay kill the receipt task for real, against the down Receipts API.

    The receipt handler allows 30 attempts, and burning through them against an API that
    answers 503 would take most of a minute even with the fast backoff. So this one task's
    budget shrinks to 1 before any relay runs: its first real try (a real 503 from the
    gateway) is its last, and the relay marks it failed itself, with the real error and
    attempt history, exactly as a task that ran out of attempts ends.
    """
    # RETURNING: Database.rows fetches, and PostgreSQL has no rows to fetch without it.
    shrunk = stack.db.rows(
        "UPDATE outbox_task SET max_attempts = 1 WHERE id = %s RETURNING id", (task_id,)
    )
    assert shrunk == [(task_id,)]
    stack.start_cluster()
    wait_until(
        lambda: receipt_task(stack)[1] == "failed",
        timeout=30,
        what="the receipt task to fail against the down Receipts API",
    )
    assert "503" in receipt_task(stack)[2]


def log_in(page: Page, stack: Stack, password: str) -> None:
    page.goto(f"{stack.web_url}/admin/")
    expect(page).to_have_url(re.compile(r"/admin/login/"))
    page.fill("#id_username", USERNAME)
    page.fill("#id_password", password)
    page.click("#login-form [type=submit]")
    expect(page.locator("#user-tools")).to_contain_text(USERNAME)


def retry_from_the_failed_list(page: Page, task_id: int) -> str:
    """Outbox > Tasks, filter "failed", select the task, "Retry now". Returns its page's URL."""
    page.locator("#content-main").get_by_role("link", name="Tasks", exact=True).click()
    expect(page).to_have_url(re.compile(r"/admin/outbox/task/$"))
    state_filter = page.locator('#changelist-filter details[data-filter-title="state"]')
    state_filter.get_by_role("link", name="Failed", exact=True).click()
    expect(page).to_have_url(re.compile(r"state__exact=failed"))

    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(1)
    row = rows.first
    expect(row).to_contain_text(RECEIPT_KIND)
    expect(row.locator(".field-state")).to_have_text("Failed")
    expect(row.locator(".field-error_line")).to_contain_text("503")
    task_href = row.locator(".field-id a").get_attribute("href")
    assert task_href is not None
    assert task_href.startswith(f"/admin/outbox/task/{task_id}/change/"), task_href

    row.locator(f'input.action-select[value="{task_id}"]').check()
    action = page.locator('select[name="action"]')
    offered = [text.strip() for text in action.locator("option").all_inner_texts()]
    assert RETRY_ACTION in offered, offered
    for refused in REFUSED_ACTIONS:
        assert not any(refused in text for text in offered), offered
    action.select_option(label=RETRY_ACTION)
    page.click('#changelist-form button[name="index"]')
    expect(page.locator("ul.messagelist li.success")).to_have_text(
        "1 task due now with a fresh attempt budget."
    )
    return task_href


def task_state_after_reload(page: Page) -> str:
    page.reload()
    return page.locator(".field-state .readonly").inner_text().strip()


def clipped_cells(page: Page) -> list[str]:
    """The error and amount cells whose text runs past their box, and a page that scrolls
    sideways; empty when everything can be read without scrolling."""
    found: list[str] = page.evaluate(
        """(selectors) => {
            const clipped = [];
            for (const selector of selectors) {
                for (const el of document.querySelectorAll(selector)) {
                    if (el.scrollWidth > el.clientWidth + 1) {
                        clipped.push(`${selector}: ${el.scrollWidth} > ${el.clientWidth}`);
                    }
                }
            }
            const root = document.documentElement;
            if (root.scrollWidth > window.innerWidth) {
                clipped.push(`the page: ${root.scrollWidth} > ${window.innerWidth}`);
            }
            return clipped;
        }""",
        list(MUST_FIT),
    )
    return found


def readable_on_a_laptop(page: Page, name: str, *, picture: bool = True) -> None:
    """The page as it is at 1366 x 768: nothing cut off, no sideways scroll; its picture for
    the docs (DOC_IMAGES/<name>.png) unless `picture` is False."""
    if picture:
        DOC_IMAGES.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(DOC_IMAGES / f"{name}.png"), full_page=True)
    assert clipped_cells(page) == [], f"{name} ({page.url}) at 1366 px"


def check_readable_on_a_laptop(
    page: Page, stack: Stack, pages: dict[str, str], *, pictures: bool = True
) -> None:
    """Each page opened at 1366 x 768: nothing cut off, no sideways scroll; a picture of each
    for the docs unless `pictures` is False (another test takes that page's picture)."""
    for name, path in pages.items():
        page.goto(f"{stack.web_url}{path}")
        readable_on_a_laptop(page, name, picture=pictures)


def ticket_admin_path(stack: Stack, ticket_id: str) -> str:
    [(pk,)] = stack.db.rows("SELECT id FROM tickets_ticket WHERE ticket_id = %s", (ticket_id,))
    return f"/admin/tickets/ticket/{pk}/change/"


def test_accounting_retries_a_failed_receipt_from_the_admin(stack: Stack):
    require_chromium()  # before starting anything
    stack.start_gateway()
    stack.configure_gateway(down=["receipts"])
    stack.start_web()
    post_confirmed_ticket(stack, TICKET)
    task_id, state, _ = receipt_task(stack)
    assert state == "pending"
    fail_the_receipt_task(stack, task_id)

    # The cause is fixed (the runbook's order); the task stays dead until someone retries it.
    stack.configure_gateway(down=[])
    password = uuid.uuid4().hex
    create_accounting_user(stack, password)

    with chromium() as browser:
        page = browser.new_page(viewport=LAPTOP)
        page.set_default_timeout(15_000)
        log_in(page, stack, password)
        # A bad day, before the retry: the dead task, its group, its ticket with a Retry.
        check_readable_on_a_laptop(
            page,
            stack,
            {
                "task-list": "/admin/outbox/task/",
                "ticket-list": "/admin/tickets/ticket/",
                "deliveries": "/admin/tickets/webhookdelivery/",
            },
        )
        # The bad day's test below takes these pages' pictures, in the middle of its outage.
        check_readable_on_a_laptop(
            page,
            stack,
            {
                "dashboard": "/admin/outbox/task/dashboard/",
                "triage": "/admin/outbox/task/triage/",
                "ticket-with-effects": ticket_admin_path(stack, TICKET),
            },
            pictures=False,
        )
        expect(page.locator(".field-effects_with_retry")).to_contain_text("Receipt: failed")
        page.goto(f"{stack.web_url}/admin/")
        task_href = retry_from_the_failed_list(page, task_id)
        logged = stack.db.value(
            "SELECT COUNT(*) FROM django_admin_log WHERE object_id = %s AND change_message LIKE %s",
            (str(task_id), "Retried now%"),
        )
        assert logged == 1, "the retry is in the admin history"

        # The running cluster picks the task up; its page shows it once it has succeeded.
        page.goto(f"{stack.web_url}{task_href}")
        wait_until(
            lambda: task_state_after_reload(page) == "Succeeded",
            timeout=30,
            what="the task's page to show the retried receipt task succeeded",
            every=0.3,
        )
        expect(page.locator(".field-attempts_used .readonly")).to_have_text(
            re.compile(r"^attempt 2 ")
        )
        history = page.locator("#attempt_set-group")
        expect(history).to_contain_text("503")
        expect(history).to_contain_text("Succeeded")
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOT), full_page=True)
        # After: the task with its two attempts (the bad day's test takes its picture).
        check_readable_on_a_laptop(page, stack, {"task-with-attempts": task_href}, pictures=False)
        expect(page.locator(".field-subject a")).to_have_text(f"ticket_id {TICKET}")

    receipts = [r for r in stack.gateway_state()["receipts"] if r["ticket_id"] == TICKET]
    assert len(receipts) == 1, receipts


# A bad day --------------------------------------------------------------------------------

BAD_DAY_TICKETS = tuple(f"t-bad-day-{n}" for n in range(1, 5))
# Refresh the live part of the dashboard every 2 s (the least `?refresh=` allows).
LIVE_DASHBOARD = "/admin/outbox/task/dashboard/?refresh=2"
GROUP = f"{RECEIPT_KIND} / HTTP 503"
# The cluster of the bad day. One relay pass at a time, so one process counts the failures
# that open the receipts circuit; it opens at the last ticket's failure, so every task has
# been tried once before it does; and it rests 15 s (an outage's later rests last up to
# 30 s) so the dashboard can be seen saying "open" before it reads "probing".
BAD_DAY_CLUSTER = {
    "OUTBOX_MAX_PASSES": "1",
    "OUTBOX_CIRCUIT_FAILURES": str(len(BAD_DAY_TICKETS)),
    "OUTBOX_CIRCUIT_COOLDOWN_SECONDS": "15",
}


def receipt_tasks(stack: Stack) -> dict[int, str]:
    """{id: state} of the receipt tasks."""
    rows = stack.db.rows("SELECT id, state FROM outbox_task WHERE kind = %s", (RECEIPT_KIND,))
    return {int(task_id): str(state) for task_id, state in rows}


def mark_the_document(page: Page) -> None:
    """Tag the page's document; `still_the_same_document` then tells a reload from none."""
    page.evaluate("window.__badDay = 'not reloaded'")


def still_the_same_document(page: Page) -> bool:
    return bool(page.evaluate("window.__badDay === 'not reloaded'"))


def test_a_bad_day_receipts_down_then_one_click_retries_the_group(stack: Stack):
    """The Receipts API goes down under the accountant's eyes, and comes back.

    The dashboard, opened before anything fails, shows by itself (no reload) the receipts
    circuit open and the four dead receipt tasks as one group; the API comes back; one click
    on the group's "Retry this group" retries all four; the dashboard shows them succeeded,
    again by itself; each task's history names the accountant. Every ticket gets one receipt.

    Each receipt task's budget shrinks to one attempt before the relay first runs (as in the
    test above): each dies at its first real 503, so only the click can bring them back.
    """
    require_chromium()  # before starting anything
    stack.start_gateway()
    stack.configure_gateway(down=["receipts"])
    stack.start_web()
    for ticket_id in BAD_DAY_TICKETS:
        post_confirmed_ticket(stack, ticket_id)
    tasks = receipt_tasks(stack)
    assert sorted(tasks.values()) == ["pending"] * len(BAD_DAY_TICKETS)
    shrunk = stack.db.rows(
        "UPDATE outbox_task SET max_attempts = 1 WHERE kind = %s RETURNING id", (RECEIPT_KIND,)
    )
    assert sorted(task_id for (task_id,) in shrunk) == sorted(tasks)
    password = uuid.uuid4().hex
    create_accounting_user(stack, password)

    with chromium() as browser:
        context = browser.new_context(viewport=LAPTOP)
        context.set_default_timeout(15_000)
        page = context.new_page()
        log_in(page, stack, password)
        page.goto(f"{stack.web_url}{LIVE_DASHBOARD}")
        mark_the_document(page)
        failures = page.locator("#failure-groups")
        circuit_alert = page.locator("#circuit-alert-receipts")
        receipt_counts = page.locator("#counts tbody tr", has_text=RECEIPT_KIND)
        # Before the relay runs: nothing has failed, no circuit is open.
        expect(failures).to_contain_text("No task is failing.")
        expect(circuit_alert).to_have_count(0)

        # The relay starts against the down API, the dashboard still open.
        stack.start_cluster(**BAD_DAY_CLUSTER)
        expect(circuit_alert).to_contain_text("Circuit receipts open since", timeout=30_000)
        expect(circuit_alert).to_contain_text("503")
        group = failures.locator("tbody tr", has_text=RECEIPT_KIND)
        expect(group).to_have_count(1, timeout=30_000)
        expect(group.locator("td").nth(1)).to_contain_text("HTTP 503")
        # Tasks, failed, retrying: all four dead.
        expect(group.locator("td.num")).to_have_text(["4", "4", "0"], timeout=30_000)
        expect(page.locator("#failure-summary")).to_contain_text("4 failing tasks in 1 group.")
        assert still_the_same_document(page), "the dashboard was reloaded"
        assert sorted(receipt_tasks(stack).values()) == ["failed"] * len(BAD_DAY_TICKETS)
        readable_on_a_laptop(page, "dashboard")

        # Beside the dashboard, in a second tab: the group on the triage page, and a ticket.
        other = context.new_page()
        other.goto(f"{stack.web_url}/admin/outbox/task/triage/")
        triage_row = other.locator("#groups tbody tr", has_text=RECEIPT_KIND)
        expect(triage_row).to_contain_text("HTTP 503")
        expect(triage_row).to_contain_text("Retry this group (4)")
        readable_on_a_laptop(other, "triage")
        other.goto(f"{stack.web_url}{ticket_admin_path(stack, BAD_DAY_TICKETS[0])}")
        expect(other.locator(".field-effects_with_retry")).to_contain_text("Receipt: failed")
        readable_on_a_laptop(other, "ticket-with-effects")

        # The API comes back; the dead tasks stay dead until someone retries them.
        stack.configure_gateway(down=[])
        group.get_by_role("button", name="Retry this group (4)").click()
        expect(page).to_have_url(f"{stack.web_url}{LIVE_DASHBOARD}")
        expect(page.locator("ul.messagelist li.success")).to_have_text(
            f"4 tasks of {GROUP} due now with a fresh attempt budget."
        )
        # The click's page: from here on the dashboard refreshes itself, never reloaded.
        mark_the_document(page)
        # They wait out the circuit's rest (at most 15 s), then one probe closes it for all.
        expect(failures).to_contain_text("No task is failing.", timeout=40_000)
        expect(circuit_alert).to_have_count(0, timeout=15_000)
        # Pending, running, succeeded, failed, canceled, total.
        expect(receipt_counts.locator("td.num")).to_have_text(
            ["0", "0", "4", "0", "0", "4"], timeout=15_000
        )
        expect(page.locator("#circuits tbody tr", has_text="receipts")).to_contain_text("closed")
        assert still_the_same_document(page), "the dashboard was reloaded"
        assert sorted(receipt_tasks(stack).values()) == ["succeeded"] * len(BAD_DAY_TICKETS)

        # One task: who retried it, and its attempts (the 503, then the receipt).
        task_id = min(tasks)
        other.goto(f"{stack.web_url}/admin/outbox/task/{task_id}/history/")
        entries = other.locator("#change-history tbody tr")
        expect(entries).to_have_count(1)
        expect(entries).to_contain_text(USERNAME)
        expect(entries).to_contain_text(f"Retried from failure triage ({GROUP}).")
        other.goto(f"{stack.web_url}/admin/outbox/task/{task_id}/change/")
        expect(other.locator(".field-state .readonly")).to_have_text("Succeeded")
        attempts = other.locator("#attempt_set-group")
        expect(attempts).to_contain_text("503")
        expect(attempts).to_contain_text("Succeeded")
        readable_on_a_laptop(other, "task-with-attempts")

    receipts = [r["ticket_id"] for r in stack.gateway_state()["receipts"]]
    assert sorted(receipts) == sorted(BAD_DAY_TICKETS), receipts
