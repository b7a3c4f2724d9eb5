"""Staff decisions on orders that the CRM asks the shop for: the legacy CRM's rules
(legacy/crm/services.py), written on the shop's database together with the event each status
change announces, through the shop's outbox in the same transaction."""

from __future__ import annotations

from datetime import datetime

import structlog
from django.db import transaction

from cdc.cloudevents import iso_time
from cdc.outbox_events import outbox_write
from config.routers import model_database_alias
from shop_app.internal.exceptions import InvalidTransition, OrderNotFound
from shop_app.models import Order, OrderStatus, OrderStatusChange, ShopOutboxEvent

logger = structlog.get_logger(__name__)

# The event a status-history row announces: the types and payload the legacy capture derives from
# the same row (legacy/shop/change_events.py, STATUS_EVENTS), so a consumer cannot tell the sides apart.
STATUS_EVENTS = {
    OrderStatus.CONFIRMED: "shop.order.confirmed.v1",
    OrderStatus.CANCELLED: "shop.order.cancelled.v1",
}


def _status_record(*, order: Order, status: OrderStatus, at: datetime, actor: str, note: str = "") -> None:
    order.status = status
    order.save(update_fields=["status", "updated_at"])
    change = OrderStatusChange.objects.create(order=order, status=status, at=at, actor=actor, note=note)
    outbox_write(
        aggregate_type="order",
        aggregate_id=order.id,
        event_type=STATUS_EVENTS[status],
        payload={"order_id": order.id, "at": iso_time(change.at), "actor": actor, "note": note},
        outbox=ShopOutboxEvent,
        at=at,
    )


def _locked_order(order_id: int) -> Order:
    order = Order.objects.select_for_update().filter(id=order_id).first()
    if order is None:
        raise OrderNotFound(order_id=order_id)
    return order


def order_confirm(*, order_id: int, actor: str, at: datetime) -> Order:
    """Confirms a placed order (a confirmed one stays as it is). Raises InvalidTransition."""
    with transaction.atomic(using=model_database_alias(Order)):
        order = _locked_order(order_id)
        if order.status == OrderStatus.CONFIRMED:
            return order
        if order.status != OrderStatus.PLACED:
            raise InvalidTransition(
                f"Order {order_id} is {order.status}; only a placed order can be confirmed."
            )
        _status_record(order=order, status=OrderStatus.CONFIRMED, at=at, actor=actor)
    logger.info("order.confirmed", order_id=order.id, actor=actor)
    return order


def order_cancel(*, order_id: int, actor: str, reason: str, at: datetime) -> Order:
    """Cancels an order not yet sent to production (a cancelled one stays as it is). Raises
    InvalidTransition."""
    with transaction.atomic(using=model_database_alias(Order)):
        order = _locked_order(order_id)
        if order.status == OrderStatus.CANCELLED:
            return order
        if order.status not in (OrderStatus.PLACED, OrderStatus.CONFIRMED) or order.sent_to_mes_at:
            raise InvalidTransition(f"Order {order_id} is already in production and cannot be cancelled.")
        _status_record(order=order, status=OrderStatus.CANCELLED, at=at, actor=actor, note=reason)
    logger.info("order.cancelled", order_id=order.id, actor=actor)
    return order
