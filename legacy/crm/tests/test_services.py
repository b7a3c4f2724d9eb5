"""Staff decisions on orders and the MES's status replies: which transitions are allowed."""

from datetime import UTC, datetime, timedelta

import pytest

from legacy.crm.exceptions import EmptyNote, InvalidTransition, OrderNotFound
from legacy.crm.models import Note
from legacy.crm.services import note_add, order_cancel, order_confirm, production_status_apply
from legacy.shop.models import Order, OrderStatus, OrderStatusChange
from legacy.shop.services import OrderLineRequest, order_place
from tests.factories import CustomerFactory, PricingRuleFactory, ProductFactory

pytestmark = pytest.mark.django_db
AT = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def order() -> Order:
    PricingRuleFactory()
    product = ProductFactory()
    return order_place(
        customer=CustomerFactory(), lines=[OrderLineRequest(sku=product.sku, quantity=1)], at=AT
    )


def history(order: Order) -> list[str]:
    return list(OrderStatusChange.objects.filter(order=order).values_list("status", flat=True))


def set_status(order: Order, status: str, *, sent: bool = False) -> None:
    Order.objects.filter(id=order.id).update(status=status, sent_to_mes_at=AT if sent else None)


def test_confirm_records_the_staff_member(order: Order) -> None:
    confirmed = order_confirm(order_id=order.id, actor="alice", at=AT)
    assert confirmed.status == OrderStatus.CONFIRMED
    assert list(order.history.values_list("status", "actor")) == [
        ("placed", order.customer.email),
        ("confirmed", "alice"),
    ]


def test_confirm_twice_changes_nothing_the_second_time(order: Order) -> None:
    order_confirm(order_id=order.id, actor="alice", at=AT)
    again = order_confirm(order_id=order.id, actor="bob", at=AT + timedelta(seconds=1))
    assert again.status == OrderStatus.CONFIRMED
    assert history(order) == ["placed", "confirmed"]


@pytest.mark.parametrize("status", [OrderStatus.CANCELLED, OrderStatus.IN_PRODUCTION, OrderStatus.DONE])
def test_only_a_placed_order_can_be_confirmed(order: Order, status: str) -> None:
    set_status(order, status)
    with pytest.raises(InvalidTransition) as refused:
        order_confirm(order_id=order.id, actor="alice", at=AT)
    assert refused.value.code == "invalid_transition"
    order.refresh_from_db()
    assert order.status == status
    assert history(order) == ["placed"]


def test_confirm_of_a_missing_order_is_refused() -> None:
    with pytest.raises(OrderNotFound) as refused:
        order_confirm(order_id=999_999, actor="alice", at=AT)
    assert refused.value.code == "not_found"


@pytest.mark.parametrize("status", [OrderStatus.PLACED, OrderStatus.CONFIRMED])
def test_an_order_not_yet_sent_to_the_mes_can_be_cancelled_with_a_reason(order: Order, status: str) -> None:
    set_status(order, status)
    cancelled = order_cancel(order_id=order.id, actor="alice", reason="customer called", at=AT)
    assert cancelled.status == OrderStatus.CANCELLED
    assert order.history.last().note == "customer called"


# A confirmed order the polling loop has already sent, and the statuses after it.
@pytest.mark.parametrize("status", [OrderStatus.CONFIRMED, OrderStatus.IN_PRODUCTION, OrderStatus.DONE])
def test_an_order_sent_to_the_mes_cannot_be_cancelled(order: Order, status: str) -> None:
    set_status(order, status, sent=True)
    with pytest.raises(InvalidTransition) as refused:
        order_cancel(order_id=order.id, actor="alice", reason="too late", at=AT)
    assert refused.value.code == "invalid_transition"
    order.refresh_from_db()
    assert order.status == status


def test_cancel_twice_changes_nothing_the_second_time(order: Order) -> None:
    order_cancel(order_id=order.id, actor="alice", reason="first", at=AT)
    order_cancel(order_id=order.id, actor="bob", reason="second", at=AT)
    assert history(order) == ["placed", "cancelled"]


def test_production_replies_move_a_confirmed_order_into_production_then_done(order: Order) -> None:
    order_confirm(order_id=order.id, actor="alice", at=AT)
    for stage in ["queued", "cutting", "assembly", "quality_check", "done"]:
        production_status_apply(order_id=order.id, stage=stage, at=AT)
    order.refresh_from_db()
    assert (order.status, order.production_stage) == (OrderStatus.DONE, "done")
    assert history(order) == ["placed", "confirmed", "in_production", "done"]


def test_stale_and_repeated_production_replies_change_nothing(order: Order) -> None:
    order_confirm(order_id=order.id, actor="alice", at=AT)
    production_status_apply(order_id=order.id, stage="assembly", at=AT)
    for stale in ["queued", "cutting", "assembly"]:
        production_status_apply(order_id=order.id, stage=stale, at=AT)
    order.refresh_from_db()
    assert (order.status, order.production_stage) == (OrderStatus.IN_PRODUCTION, "assembly")
    assert history(order) == ["placed", "confirmed", "in_production"]
    production_status_apply(order_id=order.id, stage="done", at=AT)
    production_status_apply(order_id=order.id, stage="done", at=AT)
    assert history(order) == ["placed", "confirmed", "in_production", "done"]


@pytest.mark.parametrize("first_stage", [None, "cutting"])
def test_a_reply_with_an_unknown_stage_changes_nothing(order: Order, first_stage: str | None) -> None:
    order_confirm(order_id=order.id, actor="alice", at=AT)
    if first_stage:
        production_status_apply(order_id=order.id, stage=first_stage, at=AT)
    before = history(order)
    assert production_status_apply(order_id=order.id, stage="painting", at=AT) is None
    order.refresh_from_db()
    assert order.production_stage == (first_stage or "")
    assert history(order) == before


def test_a_reply_for_an_unknown_order_is_ignored() -> None:
    assert production_status_apply(order_id=999_999, stage="queued", at=AT) is None


def test_note_needs_text(order: Order) -> None:
    with pytest.raises(EmptyNote) as refused:
        note_add(customer=order.customer, order=order, author="alice", text="   ")
    assert refused.value.code == "empty_note"
    note = note_add(customer=order.customer, order=order, author="alice", text="  call back  ")
    assert note.text == "call back"
    assert Note.objects.count() == 1


def test_production_status_of_a_cancelled_order_changes_nothing(order: Order) -> None:
    # MES_PRODUCTION=service: staff may cancel a confirmed order before its first production event.
    set_status(order, OrderStatus.CANCELLED)
    production_status_apply(order_id=order.id, stage="queued", at=AT)
    production_status_apply(order_id=order.id, stage="done", at=AT)

    order.refresh_from_db()
    assert (order.status, order.production_stage) == (OrderStatus.CANCELLED, "")
    assert history(order) == ["placed"]
