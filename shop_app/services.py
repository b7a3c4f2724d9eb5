"""Shop writes: customers and placing orders, each change and its events in one transaction.

Prices come from the MES quotes API over HTTP (shop_app/mes_quotes.py), asked BEFORE the
transaction opens: no database transaction waits on the network, and a refused or unpriceable
order writes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import structlog
from django.db import transaction

from config.routers import model_database_alias
from shop_app.events import (
    customer_registered_event,
    event_publish,
    order_created_event,
    order_line_event,
    order_status_event,
)
from shop_app.exceptions import (
    EmptyOrder,
    OrderLineRefused,
    PricingUnavailable,
    TooManyLines,
    UnknownProduct,
)
from shop_app.mes_quotes import Quote, QuoteRefused, QuoteRequest, quote_fetch
from shop_app.models import (
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
QuoteFetcher = Callable[[QuoteRequest], Quote]


@dataclass(frozen=True)
class OrderLineRequest:
    sku: str
    quantity: int
    options: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class PricedLine:
    request: OrderLineRequest
    product: Product
    quote: Quote


def shop_atomic() -> transaction.Atomic:
    """A transaction on the database that holds the shop's tables in this process."""
    return transaction.atomic(using=model_database_alias(Order))


def customer_get_or_create(*, email: str, name: str) -> tuple[Customer, bool]:
    """The customer with this email, created (and announced) if new. Runs in the caller's transaction."""
    with shop_atomic():
        customer, created = Customer.objects.get_or_create(email=email.lower(), defaults={"name": name})
        if created:
            event_publish(customer_registered_event(customer))
    return customer, created


def customer_credential_ensure(*, email: str, name: str, rotate: bool = False) -> tuple[Customer, bool]:
    """The customer with this email, created if new, and whether it was; with `rotate`, their API
    token is replaced (the old one stops working; a token change announces nothing)."""
    with shop_atomic():
        customer, created = customer_get_or_create(email=email, name=name)
        if rotate and not created:
            customer.api_token = new_customer_token()
            customer.save(update_fields=["api_token"])
    logger.info("customer.credential_issued", customer_id=customer.id, created=created, rotated=rotate)
    return customer, created


def order_lines_price(
    *, lines: list[OrderLineRequest], fetch: QuoteFetcher = quote_fetch
) -> list[PricedLine]:
    """Each line with its active product and the MES's quote; identical lines are quoted once.

    Raises OrderRefused (no lines, too many, an unknown product, a line the MES refuses),
    PricingUnavailable (the MES has no active pricing rule) or PricingServiceUnavailable (the MES
    cannot be asked)."""
    if not lines:
        raise EmptyOrder()
    if len(lines) > MAX_LINES_PER_ORDER:
        raise TooManyLines(limit=MAX_LINES_PER_ORDER)
    skus = {line.sku for line in lines}
    products = {p.sku: p for p in Product.objects.filter(sku__in=skus, active=True)}
    unknown = sorted(skus - products.keys())
    if unknown:
        raise UnknownProduct(skus=unknown)
    quotes: dict[QuoteRequest, Quote] = {}
    priced = []
    for number, line in enumerate(lines, start=1):
        # The option order is the customer's (a duplicate must reach the MES as such).
        request = QuoteRequest(sku=line.sku, quantity=line.quantity, options=tuple(line.options))
        if request not in quotes:
            quotes[request] = _quote(request, line_number=number, fetch=fetch)
        priced.append(PricedLine(request=line, product=products[line.sku], quote=quotes[request]))
    return priced


def _quote(request: QuoteRequest, *, line_number: int, fetch: QuoteFetcher) -> Quote:
    try:
        return fetch(request)
    except QuoteRefused as refused:
        if refused.code == UnknownProduct.code:  # retired in the MES's catalogue since our check
            raise UnknownProduct(skus=[request.sku]) from refused
        if refused.code == PricingUnavailable.code:  # no active rule: legacy names no line
            raise PricingUnavailable(refused.message) from refused
        raise OrderLineRefused(
            line_number=line_number, code=refused.code, message=refused.message, details=refused.details
        ) from refused


def order_place(
    *, customer: Customer, lines: list[OrderLineRequest], at: datetime, fetch: QuoteFetcher = quote_fetch
) -> Order:
    """Prices every line through the MES, then stores the order, its lines and its first status
    with their events; all or nothing (see order_lines_price for what is refused)."""
    priced = order_lines_price(lines=lines, fetch=fetch)
    with shop_atomic():
        return _order_store(customer=customer, priced=priced, at=at)


def guest_order_place(
    *, email: str, name: str, lines: list[OrderLineRequest], at: datetime, fetch: QuoteFetcher = quote_fetch
) -> Order:
    """Places an order for the customer with this email, creating them if new; all or nothing,
    so a refused order leaves no new customer behind."""
    priced = order_lines_price(lines=lines, fetch=fetch)
    with shop_atomic():
        customer, _ = customer_get_or_create(email=email, name=name)
        return _order_store(customer=customer, priced=priced, at=at)


def _order_store(*, customer: Customer, priced: list[PricedLine], at: datetime) -> Order:
    # The legacy write order (order, lines, placed history row), which is also the event order
    # the CDC capture gives: created, each line added, placed.
    order = Order.objects.create(
        customer=customer, total=sum(p.quote.total for p in priced), status=OrderStatus.PLACED
    )
    event_publish(order_created_event(order))
    order_lines = OrderLine.objects.bulk_create(
        OrderLine(
            order=order,
            product=p.product,
            quantity=p.request.quantity,
            options=sorted(p.request.options),
            unit_price=p.quote.unit_price,
            line_total=p.quote.total,
        )
        for p in priced
    )
    for line, p in zip(order_lines, priced, strict=True):
        event_publish(order_line_event(line, sku=p.product.sku))
    placed = OrderStatusChange.objects.create(
        order=order, status=OrderStatus.PLACED, at=at, actor=customer.email
    )
    event_publish(order_status_event(order, placed))
    logger.info("order.placed", order_id=order.id, customer_id=customer.id, total=str(order.total))
    return order


def order_status_record(
    *, order: Order, status: str, at: datetime, actor: str, note: str = ""
) -> OrderStatusChange:
    """Moves the order to `status`, records who and when in its history, and announces it
    (order_status_event); in the caller's transaction, or one of its own."""
    with shop_atomic():
        order.status = status
        order.save(update_fields=["status", "updated_at"])
        change = OrderStatusChange.objects.create(order=order, status=status, at=at, actor=actor, note=note)
        event_publish(order_status_event(order, change))
    return change
