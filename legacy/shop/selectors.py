"""Shop reads: the catalogue and a customer's orders."""

from django.db.models import QuerySet

from legacy.shop.models import Customer, Order, Product


def product_list() -> QuerySet[Product]:
    return Product.objects.filter(active=True).prefetch_related("options")


def order_list_for(*, customer: Customer) -> QuerySet[Order]:
    return Order.objects.filter(customer=customer).prefetch_related("lines__product", "history")


def order_get_for(*, customer: Customer, public_id: str) -> Order | None:
    return order_list_for(customer=customer).filter(public_id=public_id).first()
