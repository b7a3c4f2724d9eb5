"""Shop routes: HTML pages under /shop/, the customer API under /shop/api/."""

from django.urls import path

from legacy.shop import apis, views

urlpatterns = [
    path("", views.catalogue, name="shop-catalogue"),
    path("order/", views.order_form, name="shop-order-form"),
    path("orders/<uuid:public_id>/", views.order_status, name="shop-order-status"),
    path("api/products/", apis.ProductListApi.as_view(), name="shop-api-products"),
    path("api/products/<str:sku>/", apis.ProductDetailApi.as_view(), name="shop-api-product"),
    path("api/orders/", apis.OrderListCreateApi.as_view(), name="shop-api-orders"),
    path("api/orders/<uuid:public_id>/", apis.OrderDetailApi.as_view(), name="shop-api-order"),
]
