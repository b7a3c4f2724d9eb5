"""MES external API routes under /mes/api/."""

from django.urls import path

from legacy.mes import apis

urlpatterns = [
    path("quotes/", apis.QuoteApi.as_view(), name="mes-quotes"),
    path("production-orders/", apis.ProductionOrderListApi.as_view(), name="mes-production-orders"),
    path("production-orders/<int:pk>/", apis.ProductionOrderDetailApi.as_view(), name="mes-production-order"),
]
