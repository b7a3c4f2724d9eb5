"""What the order-status tests of issue 9 share: orders placed and confirmed through the running
monolith's APIs, and the production.* events mes_production publishes for them, built to the
contracts (contracts/events/production/) and checked against them before they are sent."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import requests

from cdc.event_schemas import event_validate
from legacy.shop.models import Order
from tests.event_transport import cloud_event

PRODUCTION_SOURCE = "/mes_production/production_outbox"
STAGES = ("queued", "cutting", "assembly", "quality_check", "done")


@dataclass(frozen=True)
class PlacedOrder:
    id: int
    public_id: str


def orders_place_and_confirm(
    base_url: str, *, customer_token: str, staff_token: str, skus: list[str], count: int
) -> list[PlacedOrder]:
    """`count` orders placed by the customer on the shop API and confirmed by staff on the CRM API."""
    shop, crm = requests.Session(), requests.Session()
    shop.headers["Authorization"] = f"Bearer {customer_token}"
    crm.headers["Authorization"] = f"Token {staff_token}"
    orders = []
    for n in range(count):
        lines = [{"sku": skus[n % len(skus)], "quantity": 1 + n % 3, "options": []}]
        placed = shop.post(f"{base_url}/shop/api/orders/", json={"lines": lines}, timeout=10)
        assert placed.status_code == 201, placed.text
        public_id = placed.json()["id"]
        order_id = Order.objects.get(public_id=public_id).id
        confirmed = crm.post(f"{base_url}/crm/api/orders/{order_id}/confirm/", timeout=10)
        assert confirmed.status_code == 200, confirmed.text
        orders.append(PlacedOrder(id=order_id, public_id=public_id))
    return orders


def production_events(
    order: PlacedOrder, *, production_order_id: int, start: datetime
) -> list[dict[str, Any]]:
    """The events of one production order run to its end, in the order they are published:
    started (queued), a stage_changed per stage to done, completed. Ids are stable per production
    order and event, as an outbox row's id is."""
    subject = f"order:{order.id}"  # mes_production's subject: the shop order
    lines = [
        {"sku": line.product.sku, "quantity": line.quantity, "options": list(line.options)}
        for line in Order.objects.get(id=order.id).lines.select_related("product")
    ]

    def at(step: int) -> str:
        return (start + timedelta(milliseconds=step)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    def event(step: int, event_type: str, data: dict[str, Any]) -> dict[str, Any]:
        base = {"production_order_id": production_order_id, "order_id": order.id, "at": at(step)}
        return cloud_event(
            event_type,
            subject,
            {**base, **data},
            event_id=f"production:{production_order_id}:{step}",
            source=PRODUCTION_SOURCE,
        )

    events = [
        event(
            0,
            "production.order.started.v1",
            {"order_public_id": order.public_id, "stage": "queued", "lines": lines},
        )
    ]
    for step, (previous, stage) in enumerate(zip(STAGES, STAGES[1:], strict=False), start=1):
        events.append(
            event(step, "production.order.stage_changed.v1", {"stage": stage, "previous_stage": previous})
        )
    events.append(event(len(STAGES), "production.order.completed.v1", {}))
    for each in events:
        event_validate(each)
    return events


def stale_stage_event(order: PlacedOrder, *, production_order_id: int, stage: str) -> dict[str, Any]:
    """A contract-valid stage_changed to an earlier stage under a new id: what a late or replayed
    event from before a restore looks like. It must change nothing."""
    previous = STAGES[STAGES.index(stage) - 1]
    event = cloud_event(
        "production.order.stage_changed.v1",
        f"order:{order.id}",
        {
            "production_order_id": production_order_id,
            "order_id": order.id,
            "stage": stage,
            "previous_stage": previous,
            "at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        },
        source=PRODUCTION_SOURCE,
    )
    event_validate(event)
    return event
