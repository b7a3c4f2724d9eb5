"""The CRM's polling orchestrator, as it runs today: poll the shared database, send to the MES.

It publishes while holding the row locks and marks the orders sent in the same transaction: a
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
