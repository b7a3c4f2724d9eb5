"""Routes of the shop's internal API, under /shop/internal/."""

from django.urls import path

from shop_app.internal import apis

urlpatterns = [
    path("customers/", apis.CustomerListApi.as_view(), name="shop-internal-customers"),
    path("customers/<int:pk>/", apis.CustomerDetailApi.as_view(), name="shop-internal-customer"),
    path("orders/", apis.OrderListApi.as_view(), name="shop-internal-orders"),
    path("orders/<int:pk>/", apis.OrderDetailApi.as_view(), name="shop-internal-order"),
    path("orders/<int:pk>/confirm/", apis.OrderConfirmApi.as_view(), name="shop-internal-order-confirm"),
    path("orders/<int:pk>/cancel/", apis.OrderCancelApi.as_view(), name="shop-internal-order-cancel"),
]
