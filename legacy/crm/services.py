"""CRM writes: staff decisions on orders, notes, and the orchestration towards the MES."""

from datetime import datetime

import structlog
from django.db import transaction

from legacy.crm.exceptions import EmptyNote, InvalidTransition, OrderNotFound
from legacy.crm.models import Note
from legacy.mes.models import ProductionStatus
from legacy.shop.models import Customer, Order, OrderStatus
from legacy.shop.services import order_status_record

logger = structlog.get_logger(__name__)


def _locked_order(order_id: int) -> Order:
    order = Order.objects.select_for_update().filter(id=order_id).first()
    if order is None:
        raise OrderNotFound(order_id=order_id)
    return order


@transaction.atomic
def order_confirm(*, order_id: int, actor: str, at: datetime) -> Order:
    order = _locked_order(order_id)
    if order.status == OrderStatus.CONFIRMED:
        return order
    if order.status != OrderStatus.PLACED:
        raise InvalidTransition(f"Order {order_id} is {order.status}; only a placed order can be confirmed.")
    order_status_record(order=order, status=OrderStatus.CONFIRMED, at=at, actor=actor)
    logger.info("order.confirmed", order_id=order.id, actor=actor)
    return order


@transaction.atomic
def order_cancel(*, order_id: int, actor: str, reason: str, at: datetime) -> Order:
    order = _locked_order(order_id)
    if order.status == OrderStatus.CANCELLED:
        return order
    if order.status not in (OrderStatus.PLACED, OrderStatus.CONFIRMED) or order.sent_to_mes_at:
        raise InvalidTransition(f"Order {order_id} is already in production and cannot be cancelled.")
    order_status_record(order=order, status=OrderStatus.CANCELLED, at=at, actor=actor, note=reason)
    logger.info("order.cancelled", order_id=order.id, actor=actor)
    return order


def note_add(*, customer: Customer, order: Order | None, author: str, text: str) -> Note:
    if not text.strip():
        raise EmptyNote()
    return Note.objects.create(customer=customer, order=order, author=author, text=text.strip())


@transaction.atomic
def production_status_apply(*, order_id: int, stage: str, at: datetime) -> Order | None:
    """Applies a MES status reply (or a production.* event) to the order; replies that are old or
    repeated change nothing, and a reply naming an unknown order or stage, or a cancelled order,
    is logged and changes nothing."""
    stages = [s.value for s in ProductionStatus]
    if stage not in stages:
        logger.warning("production.unknown_stage", order_id=order_id, stage=stage)
        return None
    order = Order.objects.select_for_update().filter(id=order_id).first()
    if order is None:
        logger.warning("production.status_for_unknown_order", order_id=order_id, stage=stage)
        return None
    if order.status == OrderStatus.CANCELLED:
        # Only with MES_PRODUCTION=service: staff may cancel a confirmed order before its first
        # production event arrives (the legacy MES refused that once the order was sent to it).
        logger.warning("production.status_for_cancelled_order", order_id=order_id, stage=stage)
        return order
    if order.production_stage and stages.index(stage) <= stages.index(order.production_stage):
        return order
    order.production_stage = stage
    order.save(update_fields=["production_stage", "updated_at"])
    if stage == ProductionStatus.DONE:
        order_status_record(order=order, status=OrderStatus.DONE, at=at, actor="mes")
    elif order.status == OrderStatus.CONFIRMED:
        order_status_record(order=order, status=OrderStatus.IN_PRODUCTION, at=at, actor="mes")
    return order
