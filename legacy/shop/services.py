"""Shop writes: placing an order (priced by the MES in-process, as the monolith does today)."""

from dataclasses import dataclass, field
from datetime import datetime

import structlog
from django.db import transaction

from legacy.mes.exceptions import PricingRefused
from legacy.mes.services import active_rule, quote_calculate
from legacy.shop.exceptions import EmptyOrder, OrderLineRefused, TooManyLines, UnknownProduct
from legacy.shop.models import (
    Customer,
    Order,
    OrderLine,
    OrderStatus,
    OrderStatusChange,
    Product,
    new_customer_token,
)

logger = structlog.get_logger(__name__)

MAX_LINES_PER_ORDER = 50


@dataclass(frozen=True)
class OrderLineRequest:
    sku: str
    quantity: int
    options: list[str] = field(default_factory=list)


def customer_get_or_create(*, email: str, name: str) -> Customer:
    customer, _ = Customer.objects.get_or_create(email=email.lower(), defaults={"name": name})
    return customer


@transaction.atomic
def customer_credential_ensure(*, email: str, name: str, rotate: bool = False) -> tuple[Customer, bool]:
    """The customer with this email, created if new, and whether it was; with `rotate`, their API
    token is replaced (the old one stops working)."""
    customer, created = Customer.objects.get_or_create(email=email.lower(), defaults={"name": name})
    if rotate and not created:
        customer.api_token = new_customer_token()
        customer.save(update_fields=["api_token"])
    logger.info("customer.credential_issued", customer_id=customer.id, created=created, rotated=rotate)
    return customer, created


def order_status_record(*, order: Order, status: str, at: datetime, actor: str, note: str = "") -> None:
    order.status = status
    order.save(update_fields=["status", "updated_at"])
    OrderStatusChange.objects.create(order=order, status=status, at=at, actor=actor, note=note)


@transaction.atomic
def order_place(*, customer: Customer, lines: list[OrderLineRequest], at: datetime) -> Order:
    """Prices every line and stores the order with its first status; all or nothing.

    Raises OrderRefused (a line naming an unknown product or option, too few or many lines) or
    PricingUnavailable (no active pricing rule)."""
    if not lines:
        raise EmptyOrder()
    if len(lines) > MAX_LINES_PER_ORDER:
        raise TooManyLines(limit=MAX_LINES_PER_ORDER)
    skus = {line.sku for line in lines}
    products = {
        p.sku: p
        for p in Product.objects.filter(sku__in=skus, active=True).prefetch_related(
            "materials__material", "options__extra_material"
        )
    }
    unknown = sorted(skus - products.keys())
    if unknown:
        raise UnknownProduct(skus=unknown)
    rule = active_rule()
    priced = []
    for index, line in enumerate(lines):
        try:
            breakdown = quote_calculate(
                product=products[line.sku], option_codes=line.options, quantity=line.quantity, rule=rule
            )
        except PricingRefused as exc:
            raise OrderLineRefused(line_number=index + 1, cause=exc) from exc
        priced.append((line, breakdown))
    order = Order.objects.create(
        customer=customer, total=sum(b.total for _, b in priced), status=OrderStatus.PLACED
    )
    OrderLine.objects.bulk_create(
        OrderLine(
            order=order,
            product=products[line.sku],
            quantity=line.quantity,
            options=sorted(line.options),
            unit_price=breakdown.unit_price,
            line_total=breakdown.total,
        )
        for line, breakdown in priced
    )
    OrderStatusChange.objects.create(order=order, status=OrderStatus.PLACED, at=at, actor=customer.email)
    logger.info("order.placed", order_id=order.id, customer_id=customer.id, total=str(order.total))
    return order


@transaction.atomic
def guest_order_place(*, email: str, name: str, lines: list[OrderLineRequest], at: datetime) -> Order:
    """Places an order for the customer with this email, creating them if new; all or nothing,
    so a refused order leaves no new customer behind."""
    return order_place(customer=customer_get_or_create(email=email, name=name), lines=lines, at=at)
