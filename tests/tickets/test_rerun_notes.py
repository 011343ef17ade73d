"""What a re-run of each ticket kind does is said once, by its handler, and the guide agrees."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.utils import timezone

from outbox.models import Task, TaskState
from outbox.registry import rerun_note
from tickets import kinds

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "OPERATORS.md"


@pytest.mark.parametrize(
    "kind", [kinds.ISSUE_RECEIPT, kinds.APPEND_ROW, kinds.VOID_RECEIPT, kinds.REFUND_PAYMENT]
)
def test_the_operators_guide_says_what_each_handler_says_a_rerun_does(kind):
    note = rerun_note(kind)
    assert note
    assert f"| `{kind}` | {note} |" in GUIDE.read_text()


def test_no_page_of_the_guide_says_a_rerun_sheet_task_appends_again():
    text = " ".join(GUIDE.read_text().split())
    assert "appended again" not in text
    assert "may do the effect twice" not in text


@pytest.mark.django_db
def test_the_rerun_confirmation_says_what_a_second_run_of_each_kind_does(admin_client):
    task = Task.objects.create(
        kind=kinds.APPEND_ROW, state=TaskState.SUCCEEDED, attempts=1, finished_at=timezone.now()
    )
    page = admin_client.post(
        "/admin/outbox/task/",
        {"action": "rerun_succeeded", ACTION_CHECKBOX_NAME: [task.pk], "index": 0},
    ).content.decode()

    assert "never a second row for one ticket" in page
    assert "may do the effect twice" not in page
