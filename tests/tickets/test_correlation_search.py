"""The search by Correlation-ID reads indexes, not tables, on SQLite and PostgreSQL.

Each test asks the database for its plan (EXPLAIN) of the very statements the search sends,
on tables big enough and analysed, so a planner that could scan would rather scan.
"""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from devtools.bulk import fill_tasks
from tickets.models import WebhookDelivery
from tickets.selectors import tickets_by_correlation_id

pytestmark = pytest.mark.django_db

TASK_INDEX = "outbox_task_correlation"
DELIVERY_INDEX = "tickets_delivery_correlation"


def plan(sql: str) -> str:
    explain = "EXPLAIN" if connection.vendor == "postgresql" else "EXPLAIN QUERY PLAN"
    with connection.cursor() as cursor:
        cursor.execute(f"{explain} {sql}")
        return "\n".join(" ".join(str(part) for part in row) for row in cursor.fetchall())


def scans_the_table(text: str, table: str) -> bool:
    if connection.vendor == "postgresql":
        return f"Seq Scan on {table}" in text
    return f"SCAN {table}" in text and "USING" not in text


@pytest.fixture
def big_tables() -> None:
    """20,000 tasks and 5,000 deliveries, each with its own Correlation-ID, analysed."""
    fill_tasks(20_000, kinds=["k.one", "k.two"], failed_every=10, retrying_every=10)
    WebhookDelivery.objects.bulk_create(
        WebhookDelivery(idempotency_key=f"key-{n}", body_hash="h", correlation_id=f"corr-{n}")
        for n in range(5_000)
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


def test_the_correlation_columns_are_indexed_on_their_own():
    with connection.cursor() as cursor:
        for table, name in (
            ("outbox_task", TASK_INDEX),
            ("tickets_webhookdelivery", DELIVERY_INDEX),
        ):
            constraints = connection.introspection.get_constraints(cursor, table)
            assert constraints[name]["index"]
            assert constraints[name]["columns"] == ["correlation_id"]


def test_every_statement_of_the_correlation_lookup_reads_an_index(big_tables):
    with CaptureQueriesContext(connection) as sent:
        tickets_by_correlation_id("corr-77")

    tasks, deliveries = (query["sql"] for query in sent.captured_queries)
    assert TASK_INDEX in plan(tasks)
    assert not scans_the_table(plan(tasks), "outbox_task")
    assert DELIVERY_INDEX in plan(deliveries)
    assert not scans_the_table(plan(deliveries), "tickets_webhookdelivery")


def test_the_deliveries_list_searches_by_correlation_id_on_the_index(big_tables, admin_client):
    response = admin_client.get("/admin/tickets/webhookdelivery/", {"q": "corr-77"})

    assert [d.correlation_id for d in response.context["cl"].result_list] == ["corr-77"]
    found = response.context["cl"].queryset.explain()
    assert DELIVERY_INDEX in found
    assert not scans_the_table(found, "tickets_webhookdelivery")


def test_the_deliveries_search_takes_the_value_exactly_as_sent(admin_client):
    WebhookDelivery.objects.create(idempotency_key="Key-1", body_hash="h", correlation_id="Corr-1")

    for exact in ("Corr-1", "Key-1"):
        response = admin_client.get("/admin/tickets/webhookdelivery/", {"q": exact})
        assert len(response.context["cl"].result_list) == 1
    for other in ("corr-1", "key-1", "Corr"):
        response = admin_client.get("/admin/tickets/webhookdelivery/", {"q": other})
        assert len(response.context["cl"].result_list) == 0
