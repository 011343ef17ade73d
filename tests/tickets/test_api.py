from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone
from rest_framework.authtoken.models import Token

from outbox.models import Attempt, AttemptOutcome, Task, TaskState
from tests.conftest import grant, ticket
from tickets import kinds
from tickets.services import ticket_receipt_record, ticket_refund_request

pytestmark = pytest.mark.django_db


def token_for(username: str, *, staff: bool, perms: tuple[str, ...] = ()) -> str:
    user = grant(User.objects.create_user(username, password="x", is_staff=staff), *perms)
    return Token.objects.create(user=user).key


@pytest.fixture
def staff_client() -> Client:
    key = token_for("op", staff=True, perms=("tickets.view_ticket",))
    return Client(headers={"Authorization": f"Token {key}"})


def test_a_staff_user_sees_the_ticket_and_its_tasks(staff_client, post_tickets):
    post_tickets([ticket("t-1", amount="50.00", currency="EUR", booking_id="b-7")])
    receipt, row = Task.objects.order_by("id")

    response = staff_client.get("/api/tickets/t-1")

    assert response.status_code == 200
    assert response.json() == {
        "ticket_id": "t-1",
        "status": "confirmed",
        "customer_email": "ada@example.com",
        "price": {"amount": "50.00", "currency": "EUR"},
        "booking_id": "b-7",
        "receipt": None,
        "tasks": [
            {
                "id": receipt.id,
                "kind": kinds.ISSUE_RECEIPT,
                "state": "pending",
                "attempts": 0,
                "last_error": "",
            },
            {
                "id": row.id,
                "kind": kinds.APPEND_ROW,
                "state": "pending",
                "attempts": 0,
                "last_error": "",
            },
        ],
    }


def test_the_receipt_shows_once_it_is_issued(staff_client, post_tickets):
    post_tickets([ticket("t-1")])
    issued_at = datetime(2025, 3, 1, 9, 30, tzinfo=UTC)
    ticket_receipt_record(ticket_id="t-1", number="R-0042", issued_at=issued_at)

    body = staff_client.get("/api/tickets/t-1").json()

    assert body["receipt"] == {"number": "R-0042", "issued_at": "2025-03-01T09:30:00Z"}


def test_task_states_attempts_and_errors_are_the_tasks_own(staff_client, post_tickets):
    post_tickets([ticket("t-1")])
    Task.objects.filter(kind=kinds.ISSUE_RECEIPT).update(
        state=TaskState.FAILED, attempts=3, last_error="receipts answered 400: bad currency"
    )

    tasks = staff_client.get("/api/tickets/t-1").json()["tasks"]

    receipt = next(task for task in tasks if task["kind"] == kinds.ISSUE_RECEIPT)
    assert (receipt["state"], receipt["attempts"], receipt["last_error"]) == (
        "failed",
        3,
        "receipts answered 400: bad currency",
    )


def test_a_refunded_ticket_lists_every_task_it_caused(staff_client, post_tickets):
    post_tickets([ticket("t-1")], key="k-1")
    post_tickets([ticket("t-1", "canceled")], key="k-2")
    ticket_refund_request(ticket_id="t-1", correlation_id="c")

    body = staff_client.get("/api/tickets/t-1").json()

    assert body["status"] == "canceled"
    assert {task["kind"] for task in body["tasks"]} == {
        kinds.ISSUE_RECEIPT,
        kinds.APPEND_ROW,
        kinds.VOID_RECEIPT,
        kinds.REFUND_PAYMENT,
    }
    assert len(body["tasks"]) == 5
    assert [task["id"] for task in body["tasks"]] == sorted(task["id"] for task in body["tasks"])


def test_tasks_of_a_ticket_whose_id_extends_another_are_not_mixed_up(staff_client, post_tickets):
    post_tickets([ticket("t-1"), ticket("t-10"), ticket("t-1:x")])

    tasks = staff_client.get("/api/tickets/t-1").json()["tasks"]

    ids = {task["id"] for task in tasks}
    assert ids == set(Task.objects.filter(payload__ticket_id="t-1").values_list("id", flat=True))
    assert len(ids) == 2


def test_a_ticket_reads_in_a_fixed_number_of_queries(
    staff_client, post_tickets, django_assert_num_queries
):
    post_tickets([ticket("t-1")], key="k-1")
    post_tickets([ticket("t-1", "canceled")], key="k-2")
    ticket_refund_request(ticket_id="t-1", correlation_id="c")
    post_tickets([ticket("t-2")], key="k-3")
    for task in Task.objects.filter(payload__ticket_id="t-1"):
        for number in (1, 2):
            Attempt.objects.create(
                task=task,
                number=number,
                started_at=timezone.now(),
                duration_ms=1.0,
                outcome=AttemptOutcome.RETRY,
            )

    # The token and its user, the user's own and group permissions, the ticket, its tasks:
    # the same for two tasks as for five with their attempts.
    with django_assert_num_queries(5):
        few = staff_client.get("/api/tickets/t-2")
    with django_assert_num_queries(5):
        many = staff_client.get("/api/tickets/t-1")

    assert (len(few.json()["tasks"]), len(many.json()["tasks"])) == (2, 5)


def test_an_unknown_ticket_is_a_404_with_an_error(staff_client):
    response = staff_client.get("/api/tickets/nope")

    assert response.status_code == 404
    assert response.json() == {"error": "there is no ticket 'nope'"}


def test_an_anonymous_request_for_a_ticket_gets_401(client, post_tickets):
    post_tickets([ticket("t-1")])

    response = client.get("/api/tickets/t-1")

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    assert "ada@example.com" not in response.content.decode()


def test_a_ticket_is_refused_to_a_user_who_is_not_staff(client, post_tickets):
    post_tickets([ticket("t-1")])
    key = token_for("clerk", staff=False, perms=("tickets.view_ticket",))

    response = client.get("/api/tickets/t-1", headers={"Authorization": f"Token {key}"})

    assert response.status_code == 403
    assert "ada@example.com" not in response.content.decode()


def test_a_staff_user_without_view_ticket_cannot_read_a_customers_email(client, post_tickets):
    post_tickets([ticket("t-1")])
    key = token_for("intern", staff=True, perms=("outbox.view_task",))

    response = client.get("/api/tickets/t-1", headers={"Authorization": f"Token {key}"})

    assert response.status_code == 403
    assert response.json() == {"error": "this needs the permission tickets.view_ticket"}
    assert "ada@example.com" not in response.content.decode()


def test_the_accounting_group_reads_tickets_through_the_api(client, post_tickets):
    from django.contrib.auth.models import Group

    post_tickets([ticket("t-1")])
    user = User.objects.create_user("clerk", password="x", is_staff=True)
    user.groups.add(Group.objects.get(name="Accounting"))
    key = Token.objects.create(user=user).key

    response = client.get("/api/tickets/t-1", headers={"Authorization": f"Token {key}"})

    assert response.status_code == 200
    assert response.json()["customer_email"] == "ada@example.com"


def test_api_token_prints_a_working_token_of_a_staff_user(capsys, client, post_tickets):
    grant(User.objects.create_user("op", password="x", is_staff=True), "tickets.view_ticket")
    post_tickets([ticket("t-1")])

    call_command("api_token", "op")
    key = capsys.readouterr().out.strip()

    assert key == Token.objects.get(user__username="op").key
    response = client.get("/api/tickets/t-1", headers={"Authorization": f"Token {key}"})
    assert response.status_code == 200


def test_api_token_prints_the_same_token_every_time(capsys):
    User.objects.create_user("op", password="x", is_staff=True)

    call_command("api_token", "op")
    call_command("api_token", "op")

    first, second = capsys.readouterr().out.split()
    assert first == second
    assert Token.objects.count() == 1


def test_api_token_refuses_an_unknown_user():
    with pytest.raises(CommandError, match="no user named 'ghost'"):
        call_command("api_token", "ghost")


def test_api_token_refuses_a_user_who_is_not_staff():
    User.objects.create_user("clerk", password="x", is_staff=False)

    with pytest.raises(CommandError, match="not staff"):
        call_command("api_token", "clerk")

    assert not Token.objects.exists()


@pytest.mark.parametrize("path_id", ["a%00b", "t-1%0A", "..", "a%5Cb", "x" * 256], ids=repr)
def test_an_id_no_ticket_can_have_is_400_naming_it_before_any_query(staff_client, path_id):
    # A NUL reached PostgreSQL, which refuses it in a literal: a 500.
    response = staff_client.get(f"/api/tickets/{path_id}")

    assert response.status_code == 400, response.content
    assert [e["field"] for e in response.json()["errors"]] == ["ticket_id"]


def test_an_anonymous_request_with_a_bad_id_is_still_401(client):
    response = client.get("/api/tickets/a%00b")

    assert response.status_code == 401
