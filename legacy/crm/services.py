"""CRM writes: staff decisions on orders, notes, and the orchestration towards the MES."""

from dataclasses import dataclass
from datetime import datetime

import structlog
from django.contrib.auth import get_user_model
from django.db import transaction
from rest_framework.authtoken.models import Token

from legacy.crm.exceptions import EmptyNote, InvalidTransition, OrderNotFound
from legacy.crm.models import Note
from legacy.mes.models import ProductionStatus
from legacy.shop.models import Customer, Order, OrderStatus
from legacy.shop.services import order_status_record

logger = structlog.get_logger(__name__)


@dataclass(frozen=True)
class StaffCredential:
    username: str
    token: str  # "Authorization: Token <token>" on the CRM's staff API
    created: bool  # the user is new
    promoted: bool  # the user existed without staff rights (or inactive) and has them now


@transaction.atomic
def staff_token_ensure(*, username: str, email: str = "", rotate: bool = False) -> StaffCredential:
    """A staff user (created with no password if new) and their API token, the same on every call;
    `rotate` replaces the token (the old one stops working)."""
    user, created = get_user_model().objects.get_or_create(
        username=username, defaults={"email": email, "is_staff": True, "is_active": True}
    )
    promoted = not created and not (user.is_staff and user.is_active)
    if created:
        # Staff reach the API with the token; `manage.py changepassword` gives an admin login.
        user.set_unusable_password()
        user.save(update_fields=["password"])
    elif promoted:
        user.is_staff = user.is_active = True
        user.save(update_fields=["is_staff", "is_active"])
    if rotate:
        Token.objects.filter(user=user).delete()
    token = Token.objects.get_or_create(user=user)[0].key
    logger.info(
        "staff.credential_issued", username=username, created=created, promoted=promoted, rotated=rotate
    )
    return StaffCredential(username=username, token=token, created=created, promoted=promoted)


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
    """Applies a MES status reply to the order; replies that are old or repeated change nothing,
    and a reply naming an unknown order or stage is logged and changes nothing."""
    stages = [s.value for s in ProductionStatus]
    if stage not in stages:
        logger.warning("production.unknown_stage", order_id=order_id, stage=stage)
        return None
    order = Order.objects.select_for_update().filter(id=order_id).first()
    if order is None:
        logger.warning("production.status_for_unknown_order", order_id=order_id, stage=stage)
        return None
    if order.production_stage and stages.index(stage) <= stages.index(order.production_stage):
        return order
    order.production_stage = stage
    order.save(update_fields=["production_stage", "updated_at"])
    if stage == ProductionStatus.DONE:
        order_status_record(order=order, status=OrderStatus.DONE, at=at, actor="mes")
    elif order.status == OrderStatus.CONFIRMED:
        order_status_record(order=order, status=OrderStatus.IN_PRODUCTION, at=at, actor="mes")
    return order
