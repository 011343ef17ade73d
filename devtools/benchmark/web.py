"""The web of figure (p): the project's URLs and, beside them, the baseline's plain view.

gunicorn serves it with `DJANGO_SETTINGS_MODULE=devtools.benchmark_settings`, so the
webhook and the plain view run in the same processes, behind the same middleware.
"""

from __future__ import annotations

from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt

from project.urls import handler400, handler403, handler404, handler500

__all__ = ["handler400", "handler403", "handler404", "handler500", "urlpatterns"]

PLAIN_TABLE = "benchmark_plain_insert"


def create_plain_table() -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {PLAIN_TABLE}")
        cursor.execute(
            f"CREATE TABLE {PLAIN_TABLE} (id bigserial PRIMARY KEY, "
            "created_at timestamptz NOT NULL DEFAULT now(), body text NOT NULL)"
        )


def drop_plain_table() -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {PLAIN_TABLE}")


@csrf_exempt
def plain_insert(request: HttpRequest) -> HttpResponse:
    """One INSERT of the request's body, autocommit: the least a view that writes can do."""
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {PLAIN_TABLE} (body) VALUES (%s)", [request.body.decode()])
    return HttpResponse(b"ok", content_type="text/plain")


urlpatterns = [
    path("benchmark/plain-insert", plain_insert),
    path("", include("project.urls")),
]
