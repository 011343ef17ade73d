from django.contrib import admin
from django.urls import include, path

from project.api_docs import StaffSchemaView, StaffSwaggerView

urlpatterns = [
    path("admin/", admin.site.urls),
    # Staff only unless API_DOCS_PUBLIC=1 (project/api_docs.py).
    path("api/schema/", StaffSchemaView.as_view(), name="api-schema"),
    path("api/docs/", StaffSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("", include("outbox.urls")),
    path("", include("tickets.urls")),
]
