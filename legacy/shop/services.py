"""Shop writes: placing an order (priced by the MES in-process, as the monolith does today, or by the
extracted pricing service over HTTP when PRICING_API_URL is set)."""

from dataclasses import dataclass, field
from datetime import datetime

import structlog
from django.db import transaction

from legacy.mes.exceptions import PricingRefused, PricingUnavailable, RemotePricingRefused
from legacy.mes.pricing import PriceBreakdown
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
from legacy.shop.pricing_client import remote_pricing_enabled, remote_quote

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


def _order_lines_price(
    *, lines: list[OrderLineRequest]
) -> tuple[dict[str, Product], list[tuple[OrderLineRequest, PriceBreakdown]]]:
    """The lines' products and prices: in-process as ever, or by the pricing service over HTTP when
    PRICING_API_URL is set (identical lines are then asked once). Outside any transaction, so that
    no database transaction waits on the network."""
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
    remote = remote_pricing_enabled()
    rule = None if remote else active_rule()
    asked: dict[tuple[str, int, tuple[str, ...]], PriceBreakdown] = {}
    priced = []
    for index, line in enumerate(lines):
        try:
            if not remote:
                breakdown = quote_calculate(
                    product=products[line.sku], option_codes=line.options, quantity=line.quantity, rule=rule
                )
            else:
                question = (line.sku, line.quantity, tuple(line.options))
                if question not in asked:
                    asked[question] = remote_quote(
                        sku=line.sku, option_codes=line.options, quantity=line.quantity
                    )
                breakdown = asked[question]
        except RemotePricingRefused as exc:
            if exc.code == UnknownProduct.code:  # retired on the pricing side since our check
                raise UnknownProduct(skus=[line.sku]) from exc
            if exc.code == PricingUnavailable.code and not exc.details:  # no active rule: no line named
                raise PricingUnavailable() from exc
            raise OrderLineRefused(line_number=index + 1, cause=exc) from exc
        except PricingRefused as exc:
            raise OrderLineRefused(line_number=index + 1, cause=exc) from exc
        priced.append((line, breakdown))
    return products, priced


@transaction.atomic
def _order_store(
    *,
    customer: Customer,
    products: dict[str, Product],
    priced: list[tuple[OrderLineRequest, PriceBreakdown]],
    at: datetime,
) -> Order:
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


def order_place(*, customer: Customer, lines: list[OrderLineRequest], at: datetime) -> Order:
    """Prices every line and stores the order with its first status; all or nothing.

    Raises OrderRefused (a line naming an unknown product or option, too few or many lines),
    PricingUnavailable (no active pricing rule) or PricingServiceUnavailable (PRICING_API_URL is
    set and the pricing service cannot answer)."""
    products, priced = _order_lines_price(lines=lines)
    return _order_store(customer=customer, products=products, priced=priced, at=at)


def guest_order_place(*, email: str, name: str, lines: list[OrderLineRequest], at: datetime) -> Order:
    """Places an order for the customer with this email, creating them if new; all or nothing,
    so a refused order leaves no new customer behind."""
    products, priced = _order_lines_price(lines=lines)
    with transaction.atomic():
        customer = customer_get_or_create(email=email, name=name)
        return _order_store(customer=customer, products=products, priced=priced, at=at)
