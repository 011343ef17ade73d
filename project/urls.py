from django.contrib import admin
from django.urls import include, path

from project.api_docs import StaffSchemaView, StaffSwaggerView
from project.views import home

# The admin's "View site" link leads to the root page, which links back to it.
admin.site.site_url = "/"

# While DEBUG is off Django renders its errors with these: JSON on API paths (project.views).
handler400 = "project.views.bad_request"
handler403 = "project.views.permission_denied"
handler404 = "project.views.page_not_found"
handler500 = "project.views.server_error"

urlpatterns = [
    path("", home, name="home"),
    path("admin/", admin.site.urls),
    # Staff only unless API_DOCS_PUBLIC=1 (project/api_docs.py).
    path("api/schema/", StaffSchemaView.as_view(), name="api-schema"),
    path("api/docs/", StaffSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("", include("outbox.console.urls")),
    path("", include("tickets.urls")),
]
