"""The deprecated /mes/api/production-orders/ routes (legacy's paths and names)."""

from django.urls import path

from mes_pricing.production_orders import apis

urlpatterns = [
    path("mes/api/production-orders/", apis.ProductionOrderListApi.as_view(), name="mes-production-orders"),
    path(
        "mes/api/production-orders/<int:pk>/",
        apis.ProductionOrderDetailApi.as_view(),
        name="mes-production-order",
    ),
]
