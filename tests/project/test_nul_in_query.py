"""A NUL (`%00`) in a query string is a 400 naming it, never a 500 (issue 23, audit).

PostgreSQL text cannot hold U+0000: the admin's changelist search with one (`?q=abc%00`)
raised DataError. Run on PostgreSQL to see the 500 it prevents; on SQLite it matched nothing.
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from rest_framework.authtoken.models import Token

pytestmark = pytest.mark.django_db

CHANGELISTS = [
    "/admin/tickets/ticket/",
    "/admin/outbox/task/",
    "/admin/tickets/webhookdelivery/",
    "/admin/tickets/driftitem/",
    "/admin/outbox/attempt/",
    "/admin/auth/user/",
]


@pytest.mark.parametrize("path", CHANGELISTS)
@pytest.mark.parametrize("term", ["abc%00", "%00", "t-1+abc%00def"])
def test_a_nul_in_a_changelist_search_is_a_400_naming_it(admin_client, path, term):
    response = admin_client.get(f"{path}?q={term}")

    assert response.status_code == 400
    assert response.content.decode() == (
        "the query parameter 'q' holds a NUL character (%00), which no stored value can contain"
    )


def test_a_nul_in_a_parameters_name_is_refused_too(admin_client):
    response = admin_client.get("/admin/tickets/ticket/?status%00=confirmed")

    assert response.status_code == 400


def test_a_nul_in_an_api_query_is_a_json_400(client):
    user = User.objects.create_superuser("staff")
    key = Token.objects.create(user=user).key

    response = client.get("/api/tasks/1?x=%00", headers={"Authorization": f"Token {key}"})

    assert response.status_code == 400
    assert response.json() == {
        "error": "the query parameter 'x' holds a NUL character (%00), which no stored value "
        "can contain"
    }


def test_a_search_without_a_nul_still_searches(admin_client):
    response = admin_client.get("/admin/tickets/ticket/?q=abc")

    assert response.status_code == 200
