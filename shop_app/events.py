"""The shop's domain events, built from its rows exactly as the legacy CDC capture builds them from
the same rows (legacy/shop/change_events.py), and written to the shop's outbox.

Same types, same subjects, same payloads, values encoded as Debezium encodes the columns (ints,
decimals as plain strings at the column's scale, UUIDs as text, timestamps in UTC ISO-8601 with a
trailing Z), so a consumer cannot tell whether the monolith's CDC or the shop service produced an
event. Schemas: contracts/events/shop/<type>.json.

Every writer of the shop's tables calls `event_publish(...)` with one of the builders below inside
the transaction of its change (services here, order confirm/cancel in shop_app/internal/).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from cdc.outbox_events import outbox_write
from shop_app.models import Customer, Order, OrderLine, OrderStatusChange, ShopOutboxEvent

CUSTOMER_REGISTERED = "shop.customer.registered.v1"
CUSTOMER_UPDATED = "shop.customer.updated.v1"
CUSTOMER_DELETED = "shop.customer.deleted.v1"
ORDER_CREATED = "shop.order.created.v1"
ORDER_PLACED = "shop.order.placed.v1"
ORDER_CONFIRMED = "shop.order.confirmed.v1"
ORDER_CANCELLED = "shop.order.cancelled.v1"
ORDER_PRODUCTION_STARTED = "shop.order.production_started.v1"
ORDER_PRODUCTION_STAGE_CHANGED = "shop.order.production_stage_changed.v1"
ORDER_PRODUCTION_COMPLETED = "shop.order.production_completed.v1"
ORDER_DELETED = "shop.order.deleted.v1"
ORDER_LINE_ADDED = "shop.order_line.added.v1"
ORDER_LINE_CHANGED = "shop.order_line.changed.v1"
ORDER_LINE_REMOVED = "shop.order_line.removed.v1"

# The status a history row records and the event that announces it.
STATUS_EVENTS = {
    "placed": ORDER_PLACED,
    "confirmed": ORDER_CONFIRMED,
    "cancelled": ORDER_CANCELLED,
    "in_production": ORDER_PRODUCTION_STARTED,
    "done": ORDER_PRODUCTION_COMPLETED,
}
CUSTOMER_FIELDS = ("email", "name", "company")


class UnknownStatus(ValueError):
    """A status change whose status no event announces."""


@dataclass(frozen=True)
class ShopEvent:
    """One event to publish: its type, the aggregate it is about (the subject) and its payload."""

    type: str
    aggregate_type: str  # "order" or "customer"
    aggregate_id: int
    payload: dict[str, Any]

    @property
    def subject(self) -> str:
        return f"{self.aggregate_type}:{self.aggregate_id}"


def event_time(moment: datetime) -> str:
    """A timestamptz column as Debezium 3.6 writes it: UTC, ISO-8601, always six fraction digits
    (the column's precision, trailing zeros kept), Z. Checked against the real engine in
    tests/contract/test_shop_events.py."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event_decimal(value: Decimal | int | str, *, places: int) -> str:
    """A numeric column as Debezium writes it (decimal.handling.mode=string): plain, at the column's scale."""
    return f"{Decimal(value).quantize(Decimal(1).scaleb(-places)):f}"


def customer_registered_event(customer: Customer) -> ShopEvent:
    payload = {
        "customer_id": customer.id,
        **{name: getattr(customer, name) or "" for name in CUSTOMER_FIELDS},
        "created_at": event_time(customer.created_at),
    }
    return ShopEvent(CUSTOMER_REGISTERED, "customer", customer.id, payload)


def customer_updated_event(customer: Customer, *, changed: Sequence[str]) -> ShopEvent | None:
    """The update of a customer's email, name or company (`changed`, in the legacy field order);
    None when none of them changed (a rotated API token announces nothing)."""
    fields = [name for name in CUSTOMER_FIELDS if name in changed]
    if not fields:
        return None
    payload = {
        "customer_id": customer.id,
        **{name: getattr(customer, name) or "" for name in CUSTOMER_FIELDS},
        "changed": fields,
    }
    return ShopEvent(CUSTOMER_UPDATED, "customer", customer.id, payload)


def customer_deleted_event(customer_id: int) -> ShopEvent:
    return ShopEvent(CUSTOMER_DELETED, "customer", customer_id, {"customer_id": customer_id})


def order_created_event(order: Order) -> ShopEvent:
    payload = {
        "order_id": order.id,
        "public_id": str(order.public_id),
        "customer_id": order.customer_id,
        "status": order.status,
        "total": event_decimal(order.total, places=2),
        "currency": order.currency,
        "created_at": event_time(order.created_at),
    }
    return ShopEvent(ORDER_CREATED, "order", order.id, payload)


def order_line_event(line: OrderLine, *, sku: str, changed: bool = False) -> ShopEvent:
    """shop.order_line.added.v1 (or .changed.v1 when `changed`); `sku` is the line's product's."""
    payload = {
        "order_id": line.order_id,
        "line_id": line.id,
        "product_id": line.product_id,
        "sku": sku,
        "quantity": line.quantity,
        "options": [str(option) for option in line.options or []],
        "unit_price": event_decimal(line.unit_price, places=2),
        "line_total": event_decimal(line.line_total, places=2),
    }
    return ShopEvent(ORDER_LINE_CHANGED if changed else ORDER_LINE_ADDED, "order", line.order_id, payload)


def order_line_removed_event(*, order_id: int, line_id: int) -> ShopEvent:
    return ShopEvent(ORDER_LINE_REMOVED, "order", order_id, {"order_id": order_id, "line_id": line_id})


def order_status_event(order: Order, status_change: OrderStatusChange) -> ShopEvent:
    """The event a status history row announces: placed, confirmed, cancelled, in_production
    (production_started) or done (production_completed). Raises UnknownStatus for any other."""
    event_type = STATUS_EVENTS.get(status_change.status)
    if event_type is None:
        raise UnknownStatus(f"no event announces the order status {status_change.status!r}")
    payload = {
        "order_id": order.id,
        "at": event_time(status_change.at),
        "actor": status_change.actor or "",
        "note": status_change.note or "",
    }
    return ShopEvent(event_type, "order", order.id, payload)


def order_production_stage_event(order: Order, *, previous_stage: str) -> ShopEvent | None:
    """The change of an order's production stage; None when it did not change."""
    stage = order.production_stage or ""
    if stage == (previous_stage or ""):
        return None
    payload = {"order_id": order.id, "stage": stage, "previous_stage": previous_stage or ""}
    return ShopEvent(ORDER_PRODUCTION_STAGE_CHANGED, "order", order.id, payload)


def order_deleted_event(order_id: int) -> ShopEvent:
    return ShopEvent(ORDER_DELETED, "order", order_id, {"order_id": order_id})


def event_publish(event: ShopEvent | None, *, at: datetime | None = None) -> None:
    """Writes the event to the shop's outbox, in the caller's open transaction on the shop's
    database (refused outside one); None publishes nothing."""
    if event is None:
        return
    outbox_write(
        aggregate_type=event.aggregate_type,
        aggregate_id=event.aggregate_id,
        event_type=event.type,
        payload=event.payload,
        outbox=ShopOutboxEvent,
        at=at,
    )
