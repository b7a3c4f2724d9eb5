"""The shop's order status from production: what mes_production's production.* events do to the
shop's own order rows once the shop owns them (slice shop-orders live).

The same writes, in the same order, as the monolith's production_status_apply
(legacy/crm/services.py): the order's production_stage, then a status history row (in_production
at the first stage, done at the last), each announced through the shop's outbox with the events the
legacy CDC capture derives from those row changes (shop.order.production_stage_changed.v1, then
shop.order.production_started.v1 or shop.order.production_completed.v1).
"""

from __future__ import annotations

from datetime import datetime

import structlog

from shop_app.events import event_publish, order_production_stage_event
from shop_app.models import Order, OrderStatus
from shop_app.services import order_status_record, shop_atomic

logger = structlog.get_logger(__name__)

# The stages of a production order, in the order they happen (mes_production's and the legacy MES's).
PRODUCTION_STAGES = ("queued", "cutting", "assembly", "quality_check", "done")


def order_production_status_apply(*, order_id: int, stage: str, at: datetime) -> Order | None:
    """Moves the order to production `stage`; a stage the order is already at or past (a repeated
    or late event) changes nothing, and an unknown stage or order, or a cancelled order, is logged
    and changes nothing."""
    if stage not in PRODUCTION_STAGES:
        logger.warning("production.unknown_stage", order_id=order_id, stage=stage)
        return None
    with shop_atomic():
        order = Order.objects.select_for_update().filter(id=order_id).first()
        if order is None:
            logger.warning("production.status_for_unknown_order", order_id=order_id, stage=stage)
            return None
        if order.status == OrderStatus.CANCELLED:
            logger.warning("production.status_for_cancelled_order", order_id=order_id, stage=stage)
            return order
        previous = order.production_stage
        if previous in PRODUCTION_STAGES and PRODUCTION_STAGES.index(stage) <= PRODUCTION_STAGES.index(
            previous
        ):
            return order
        order.production_stage = stage
        order.save(update_fields=["production_stage", "updated_at"])
        event_publish(order_production_stage_event(order, previous_stage=previous))
        if stage == "done":
            order_status_record(order=order, status=OrderStatus.DONE, at=at, actor="mes")
        elif order.status == OrderStatus.CONFIRMED:
            order_status_record(order=order, status=OrderStatus.IN_PRODUCTION, at=at, actor="mes")
    logger.info("order.production_status_applied", order_id=order_id, stage=stage)
    return order
