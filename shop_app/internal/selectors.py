"""Reads of the internal API over the shop's database."""

from django.db.models import QuerySet

from shop_app.models import Customer, Order


def customer_list() -> QuerySet[Customer]:
    return Customer.objects.order_by("id")


def order_list(*, status: str | None) -> QuerySet[Order]:
    """Orders with what the staff shape shows (customer, lines and their products, history)."""
    orders = Order.objects.select_related("customer").prefetch_related("lines__product", "history")
    return orders.filter(status=status) if status else orders
