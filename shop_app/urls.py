"""Shop routes, the legacy shop's paths and names: HTML pages under /shop/, the customer API under
/shop/api/."""

from django.urls import path, register_converter

from shop_app import apis, views


class SkuConverter:
    """Any path segment without a NUL: PostgreSQL refuses NUL in a query (a 500 otherwise)."""

    regex = "[^/\x00]+"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(SkuConverter, "sku")

urlpatterns = [
    path("", views.catalogue, name="shop-catalogue"),
    path("order/", views.order_form, name="shop-order-form"),
    path("orders/<uuid:public_id>/", views.order_status, name="shop-order-status"),
    path("api/products/", apis.ProductListApi.as_view(), name="shop-api-products"),
    path("api/products/<sku:sku>/", apis.ProductDetailApi.as_view(), name="shop-api-product"),
    path("api/orders/", apis.OrderListCreateApi.as_view(), name="shop-api-orders"),
    path("api/orders/<uuid:public_id>/", apis.OrderDetailApi.as_view(), name="shop-api-order"),
]
