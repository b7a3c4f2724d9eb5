"""Shop reads: the catalogue and a customer's orders."""

from django.db.models import QuerySet

from shop_app.models import Customer, Order, Product


def product_list() -> QuerySet[Product]:
    return Product.objects.filter(active=True).prefetch_related("options")


def order_list_for(*, customer: Customer) -> QuerySet[Order]:
    return Order.objects.filter(customer=customer).prefetch_related("lines__product", "history")


def order_get_for(*, customer: Customer, public_id: str) -> Order | None:
    return order_list_for(customer=customer).filter(public_id=public_id).first()


def order_get(*, public_id: str) -> Order | None:
    """Any order by its public id (the status page: whoever holds the link may see it)."""
    return Order.objects.prefetch_related("lines__product", "history").filter(public_id=public_id).first()
