"""The production service's consumer group: the shop's order events keep a projection of orders
and their lines, and a confirmed order starts its production order (once).

Run with `SERVICE=mes_production manage.py consume production`. The inbox (production_inbox), the
projection, the production orders and the outbox share the production database and the consumer's
transaction, so a redelivered event has no second effect and production.order.started is written
exactly when its production order is. An order's events come in order (one partition per order):
its lines arrive before its confirmation.
"""

from dataclasses import dataclass, field

from django.utils import timezone

from cdc.consuming.envelope import CloudEvent
from cdc.consuming.groups import ConsumerGroup
from mes_production.models import ProductionInboxEntry
from mes_production.services import (
    production_order_start,
    shop_order_line_forget,
    shop_order_line_record,
    shop_order_record,
)

production = ConsumerGroup("production", service="mes_production", inbox=ProductionInboxEntry)


@dataclass(frozen=True)
class OrderCreated:
    order_id: int
    public_id: str


@dataclass(frozen=True)
class OrderLine:
    order_id: int
    line_id: int
    sku: str
    quantity: int
    options: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class OrderLineRemoved:
    order_id: int
    line_id: int


@dataclass(frozen=True)
class OrderConfirmed:
    order_id: int


@production.handles("shop.order.created.v1", OrderCreated)
def order_created(event: OrderCreated, meta: CloudEvent) -> None:
    shop_order_record(order_id=event.order_id, public_id=event.public_id)


@production.handles("shop.order_line.added.v1", OrderLine)
def order_line_added(event: OrderLine, meta: CloudEvent) -> None:
    shop_order_line_record(
        order_id=event.order_id,
        line_id=event.line_id,
        sku=event.sku,
        quantity=event.quantity,
        options=event.options,
    )


@production.handles("shop.order_line.changed.v1", OrderLine)
def order_line_changed(event: OrderLine, meta: CloudEvent) -> None:
    order_line_added(event, meta)


@production.handles("shop.order_line.removed.v1", OrderLineRemoved)
def order_line_removed(event: OrderLineRemoved, meta: CloudEvent) -> None:
    shop_order_line_forget(line_id=event.line_id)


@production.handles("shop.order.confirmed.v1", OrderConfirmed)
def order_confirmed(event: OrderConfirmed, meta: CloudEvent) -> None:
    production_order_start(order_id=event.order_id, at=timezone.now())
