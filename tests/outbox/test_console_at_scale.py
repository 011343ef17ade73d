"""The console's pages read in the same number of queries with 10 tasks and with 100,000.

The table is filled in one INSERT .. SELECT (devtools.bulk): four kinds, finished tasks over
the last 23 hours (inside the chart's 24 hourly bars), every tenth failed and every tenth
retrying, each failing one with an attempt (`HTTP 503` for a third of them). The counts are
constants, not measured on a small table first, so a page that grew a query per kind, per
group or per row fails at either size.
"""

from __future__ import annotations

import pytest

from devtools.bulk import fill_tasks
from outbox.models import Task, TaskState

pytestmark = pytest.mark.django_db

DASHBOARD = "/admin/outbox/task/dashboard/"
TRIAGE = "/admin/outbox/task/triage/"
KINDS = ["k.receipt", "k.sheet", "k.void", "k.refund"]
SIZES = [10, 100_000]

# The session and its user.
REQUEST = 2
# Counts by kind and state; the hourly chart's successes and failed attempts; the waiting
# tasks by kind and their newest error; circuits; relay passes and running tasks by node;
# the oldest due task; successes in the last minutes; paused kinds; the biggest groups of
# failing tasks; the notes other apps register (the last reconcile run).
DASHBOARD_READS = 13
# The failing tasks with their newest attempts' statuses.
TRIAGE_READS = 1


def fill(rows: int) -> list[int]:
    """`rows` tasks; the numbers of the failing ones (failed, or retrying after a try)."""
    fill_tasks(rows, kinds=KINDS, failed_every=10, retrying_every=10, spread_seconds=23 * 3600)
    assert Task.objects.count() == rows
    return [x for x in range(1, rows + 1) if x % 10 in (0, 1)]


@pytest.mark.parametrize("rows", SIZES)
def test_the_dashboard_reads_in_the_same_queries_with_100_000_tasks(
    admin_client, django_assert_num_queries, rows
):
    admin_client.get(DASHBOARD)  # fills the content types' process-wide cache
    failing = len(fill(rows))

    with django_assert_num_queries(REQUEST + DASHBOARD_READS):
        response = admin_client.get(DASHBOARD)

    assert response.status_code == 200
    assert response.context["grand_total"] == rows
    totals = dict(zip(TaskState.values, response.context["totals"], strict=True))
    assert totals[TaskState.FAILED] + totals[TaskState.PENDING] == failing
    assert response.context["all_waiting"].retrying == failing // 2
    assert {kind for kind, _chart in response.context["kind_charts"]} == set(KINDS)


@pytest.mark.parametrize("rows", SIZES)
def test_the_triage_page_reads_in_the_same_queries_with_100_000_tasks(
    admin_client, django_assert_num_queries, rows
):
    admin_client.get(TRIAGE)  # fills the content types' process-wide cache
    failing = fill(rows)

    with django_assert_num_queries(REQUEST + TRIAGE_READS):
        response = admin_client.get(TRIAGE)

    assert response.status_code == 200
    assert response.context["total"] == len(failing)
    signatures = {group.signature for group, _url in response.context["groups"]}
    assert signatures == {"HTTP 503" if x % 3 == 0 else "timed out after #s on #" for x in failing}
    assert len(response.context["groups"]) == (2 if rows == 10 else 2 * len(KINDS))
