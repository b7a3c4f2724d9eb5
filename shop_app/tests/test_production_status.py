"""The shop's apply of production status on its own database: forward only, once per stage, and
announced through its outbox with the events the legacy capture derives from the same rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from shop_app.models import Customer, Order, OrderStatus, OrderStatusChange, ShopOutboxEvent
from shop_app.production_status import order_production_status_apply

pytestmark = pytest.mark.django_db(databases=["default", "shop"])
AT = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def order() -> Order:
    customer = Customer.objects.create(email="ann@example.test", name="Ann")
    order = Order.objects.create(customer=customer, total=Decimal("10.00"), status=OrderStatus.CONFIRMED)
    OrderStatusChange.objects.create(order=order, status=OrderStatus.PLACED, at=AT, actor="ann@example.test")
    OrderStatusChange.objects.create(order=order, status=OrderStatus.CONFIRMED, at=AT, actor="staff")
    return order


def history(order: Order) -> list[str]:
    return list(OrderStatusChange.objects.filter(order=order).values_list("status", flat=True))


def outbox_types(order: Order) -> list[str]:
    rows = ShopOutboxEvent.objects.filter(aggregateid=str(order.id)).order_by("created_at")
    return list(rows.values_list("type", flat=True))


def test_first_stage_starts_production_and_done_completes_it(order: Order) -> None:
    for n, stage in enumerate(["queued", "cutting", "assembly", "quality_check", "done"]):
        order_production_status_apply(order_id=order.id, stage=stage, at=AT + timedelta(seconds=n))

    order.refresh_from_db()
    assert (order.status, order.production_stage) == (OrderStatus.DONE, "done")
    assert history(order) == ["placed", "confirmed", "in_production", "done"]
    assert outbox_types(order) == [
        "shop.order.production_stage_changed.v1",
        "shop.order.production_started.v1",
        *["shop.order.production_stage_changed.v1"] * 4,
        "shop.order.production_completed.v1",
    ]


def test_repeated_and_stale_stages_have_no_second_effect(order: Order) -> None:
    order_production_status_apply(order_id=order.id, stage="assembly", at=AT)
    written = (history(order), outbox_types(order))

    for stage in ["assembly", "cutting", "queued"]:
        order_production_status_apply(order_id=order.id, stage=stage, at=AT + timedelta(seconds=5))

    order.refresh_from_db()
    assert order.production_stage == "assembly"
    assert (history(order), outbox_types(order)) == written


def test_unknown_stage_unknown_order_and_cancelled_order_change_nothing(order: Order) -> None:
    assert order_production_status_apply(order_id=order.id, stage="painting", at=AT) is None
    assert order_production_status_apply(order_id=order.id + 1000, stage="queued", at=AT) is None
    Order.objects.filter(id=order.id).update(status=OrderStatus.CANCELLED)
    order_production_status_apply(order_id=order.id, stage="done", at=AT)

    order.refresh_from_db()
    assert (order.status, order.production_stage) == (OrderStatus.CANCELLED, "")
    assert history(order) == ["placed", "confirmed"]
    assert outbox_types(order) == []
