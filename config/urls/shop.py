"""Routes of the shop process; its own routes arrive with the issue that extracts it."""

from django.urls import include, path

urlpatterns = [
    path("", include("ops.urls")),
    path("shop/internal/", include("shop_app.internal.urls")),
]

handler404 = "ops.errors.handler404"
handler500 = "ops.errors.handler500"
