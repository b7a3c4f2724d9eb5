"""Routes of the crm process: the CRM staff API (the legacy CRM's /crm/api/ contracts)."""

from django.urls import include, path

urlpatterns = [
    path("", include("ops.urls")),
    path("crm/api/", include("crm_app.urls")),
]

handler400 = "ops.errors.handler400"
handler403 = "ops.errors.handler403"
handler404 = "ops.errors.handler404"
handler500 = "ops.errors.handler500"
