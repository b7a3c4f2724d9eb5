"""Staff decisions on orders that the CRM asks the shop for: the legacy CRM's rules
(legacy/crm/services.py) on the shop's database. Each status change and the event it announces
(shop.order.confirmed.v1 / shop.order.cancelled.v1, built by shop_app.events from the history row
as legacy CDC builds it) are written in one transaction by shop_app.services.order_status_record."""

from __future__ import annotations

from datetime import datetime

import structlog

from shop_app.internal.exceptions import InvalidTransition, OrderNotFound
from shop_app.models import Order, OrderStatus
from shop_app.services import order_status_record, shop_atomic

logger = structlog.get_logger(__name__)


def _locked_order(order_id: int) -> Order:
    order = Order.objects.select_for_update().filter(id=order_id).first()
    if order is None:
        raise OrderNotFound(order_id=order_id)
    return order


def order_confirm(*, order_id: int, actor: str, at: datetime) -> Order:
    """Confirms a placed order (a confirmed one stays as it is). Raises InvalidTransition."""
    with shop_atomic():
        order = _locked_order(order_id)
        if order.status == OrderStatus.CONFIRMED:
            return order
        if order.status != OrderStatus.PLACED:
            raise InvalidTransition(
                f"Order {order_id} is {order.status}; only a placed order can be confirmed."
            )
        order_status_record(order=order, status=OrderStatus.CONFIRMED, at=at, actor=actor)
    logger.info("order.confirmed", order_id=order.id, actor=actor)
    return order


def order_cancel(*, order_id: int, actor: str, reason: str, at: datetime) -> Order:
    """Cancels an order not yet sent to production (a cancelled one stays as it is). Raises
    InvalidTransition."""
    with shop_atomic():
        order = _locked_order(order_id)
        if order.status == OrderStatus.CANCELLED:
            return order
        if order.status not in (OrderStatus.PLACED, OrderStatus.CONFIRMED) or order.sent_to_mes_at:
            raise InvalidTransition(f"Order {order_id} is already in production and cannot be cancelled.")
        order_status_record(order=order, status=OrderStatus.CANCELLED, at=at, actor=actor, note=reason)
    logger.info("order.cancelled", order_id=order.id, actor=actor)
    return order
