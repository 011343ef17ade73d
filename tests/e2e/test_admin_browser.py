"""A person from accounting retries a dead receipt task in the admin, in a real browser.

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


def check_readable_on_a_laptop(page: Page, stack: Stack, pages: dict[str, str]) -> None:
    """Each page at 1366 x 768: nothing cut off, no sideways scroll; a screenshot of each."""
    DOC_IMAGES.mkdir(parents=True, exist_ok=True)
    for name, path in pages.items():
        page.goto(f"{stack.web_url}{path}")
        page.screenshot(path=str(DOC_IMAGES / f"{name}.png"), full_page=True)
        assert clipped_cells(page) == [], f"{name} ({path}) at 1366 px"


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
                "dashboard": "/admin/outbox/task/dashboard/",
                "task-list": "/admin/outbox/task/",
                "triage": "/admin/outbox/task/triage/",
                "ticket-list": "/admin/tickets/ticket/",
                "deliveries": "/admin/tickets/webhookdelivery/",
                "ticket-with-effects": ticket_admin_path(stack, TICKET),
            },
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
        # After: the task with its two attempts.
        check_readable_on_a_laptop(
            page,
            stack,
            {"task-with-attempts": task_href},
        )
        expect(page.locator(".field-subject a")).to_have_text(f"ticket_id {TICKET}")

    receipts = [r for r in stack.gateway_state()["receipts"] if r["ticket_id"] == TICKET]
    assert len(receipts) == 1, receipts
