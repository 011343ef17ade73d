"""The root page, and JSON errors on API paths."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.test import Client

pytestmark = pytest.mark.django_db


def test_the_root_url_is_a_404_page(client: Client):
    response = client.get("/")

    assert response.status_code == 200
    body = response.content.decode()
    for link in ('href="/admin/"', 'href="/api/docs/"', 'href="/health"'):
        assert link in body


def test_the_admins_view_site_link_leads_nowhere():
    assert admin.site.site_url == "/"


def test_a_mistyped_api_path_answers_html(client: Client):
    response = client.post("/ticket-status", data={}, content_type="application/json")

    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"error": "no such endpoint: POST /ticket-status"}


def test_a_wrong_method_on_a_plain_view_answers_an_empty_405(client: Client):
    response = client.post("/health")

    assert response.status_code == 405
    assert response.json() == {"error": "POST is not allowed on /health"}
    assert response["Allow"] == "GET"


def test_the_admins_own_404_stays_html(admin_client: Client):
    response = admin_client.get("/admin/no-such-page/")

    assert response.status_code == 404
    assert not response["Content-Type"].startswith("application/json")
