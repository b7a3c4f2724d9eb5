"""The CRM's orchestrator: send confirmed orders to the MES, found by polling the shared database
(ORCHESTRATION_MODE=polling, today) or told by a shop.order.confirmed event (events mode).

Both publish while holding the row locks and marks the orders sent in the same transaction: a
crash after publishing and before commit sends an order twice, which the MES absorbs because a
production order is unique per shop order. Nothing is lost; the cost is the polling delay.
"""

from collections.abc import Callable
from datetime import datetime
from typing import Any

import structlog
from django.db import transaction

from legacy.shop.models import Order, OrderStatus

logger = structlog.get_logger(__name__)


def production_request(order: Order) -> dict[str, Any]:
    return {
        "order_id": order.id,
        "order_public_id": str(order.public_id),
        "lines": [
            {"sku": line.product.sku, "quantity": line.quantity, "options": line.options}
            for line in order.lines.all()
        ],
    }


def confirmed_orders_dispatch(
    *, batch_size: int, at: datetime, send: Callable[[dict[str, Any]], None]
) -> int:
    """Sends up to `batch_size` confirmed, unsent orders to the MES; returns how many were sent."""
    with transaction.atomic():
        orders = list(
            Order.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(status=OrderStatus.CONFIRMED, sent_to_mes_at__isnull=True)
            .prefetch_related("lines__product")
            .order_by("id")[:batch_size]
        )
        for order in orders:
            send(production_request(order))
        Order.objects.filter(id__in=[o.id for o in orders]).update(sent_to_mes_at=at)
    if orders:
        logger.info("crm.orders_sent_to_mes", count=len(orders), first_order_id=orders[0].id)
    return len(orders)


def confirmed_orders_dispatch_all(
    *, batch_size: int, at: datetime, send: Callable[[dict[str, Any]], None]
) -> int:
    """Sends every confirmed, unsent order to the MES, a batch per transaction; returns how many."""
    total = 0
    while True:
        sent = confirmed_orders_dispatch(batch_size=batch_size, at=at, send=send)
        total += sent
        if sent < batch_size:
            return total


def confirmed_orders_waiting() -> int:
    """How many confirmed orders have not been sent to the MES yet."""
    return Order.objects.filter(status=OrderStatus.CONFIRMED, sent_to_mes_at__isnull=True).count()


def order_production_dispatch(*, order_id: int, at: datetime, send: Callable[[dict[str, Any]], None]) -> bool:
    """Sends one order to the MES if it is confirmed and not sent yet; False when there is nothing to do.

    The events-mode step. It waits for the row lock rather than skipping it, so an order the
    polling loop is sending at the same moment (during a switch of modes) is found sent, not sent
    twice; an order cancelled before its event was handled is not sent.
    """
    with transaction.atomic():
        order = (
            Order.objects.select_for_update(of=("self",))
            .filter(id=order_id, status=OrderStatus.CONFIRMED, sent_to_mes_at__isnull=True)
            .prefetch_related("lines__product")
            .first()
        )
        if order is None:
            logger.info("crm.order_not_sent_to_mes", order_id=order_id, why="not confirmed or already sent")
            return False
        send(production_request(order))
        Order.objects.filter(id=order.id).update(sent_to_mes_at=at)
    logger.info("crm.orders_sent_to_mes", count=1, first_order_id=order_id)
    return True
