"""Routes of the shop process: the shop's pages and customer API (the paths the legacy shop
served), the internal API the other services call (/shop/internal/), its health and metrics."""

from django.urls import include, path

urlpatterns = [
    path("", include("ops.urls")),
    path("shop/internal/", include("shop_app.internal.urls")),
    path("shop/", include("shop_app.urls")),
]

handler400 = "ops.errors.handler400"
handler403 = "ops.errors.handler403"
handler404 = "ops.errors.handler404"
handler500 = "ops.errors.handler500"
