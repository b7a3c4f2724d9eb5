"""Routes of the mes_production process: internal only (health, metrics, its own internal routes)."""

from django.urls import include, path

urlpatterns = [
    path("", include("ops.urls")),
    path("", include("mes_production.urls")),
]

handler400 = "ops.errors.handler400"
handler403 = "ops.errors.handler403"
handler404 = "ops.errors.handler404"
handler500 = "ops.errors.handler500"
