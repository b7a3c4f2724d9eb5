"""CRM reads over the shared database."""

from django.db.models import QuerySet

from legacy.shop.models import Order


def order_list(*, status: str | None) -> QuerySet[Order]:
    orders = Order.objects.select_related("customer").prefetch_related("lines__product", "history")
    return orders.filter(status=status) if status else orders
