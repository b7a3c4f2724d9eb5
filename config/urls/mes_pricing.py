"""Routes of the mes_pricing process: the public MES API (quotes, legacy contract and /pricing/api/v1/),
and the deprecated production-order reads served from its projection."""

from django.urls import include, path

urlpatterns = [
    path("", include("ops.urls")),
    path("", include("mes_pricing.urls")),
    path("", include("mes_pricing.production_orders.urls")),
]

handler400 = "ops.errors.handler400"
handler403 = "ops.errors.handler403"
handler404 = "ops.errors.handler404"
handler500 = "ops.errors.handler500"
