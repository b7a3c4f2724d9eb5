"""The consumer group that keeps the production-order projection: production.order.* events of the
production service (its outbox, relayed to the broker) become rows of the pricing database.

Run with `SERVICE=mes_pricing manage.py consume pricing-production-orders`. The inbox and the
projection share the pricing database, so a redelivered event has no second effect; the writes are
idempotent and order-tolerant on their own too (services.py), so a republish of old events is safe.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from cdc.consuming.envelope import CloudEvent, MalformedEvent
from cdc.consuming.groups import ConsumerGroup
from mes_pricing.production_orders.models import ProductionOrdersInboxEntry, ProductionStatus
from mes_pricing.production_orders.services import (
    production_order_stage_apply,
    production_order_started_apply,
)

production_orders = ConsumerGroup(
    "pricing-production-orders", service="mes_pricing", inbox=ProductionOrdersInboxEntry
)


@dataclass(frozen=True)
class ProductionOrderStarted:
    production_order_id: int
    order_id: int
    order_public_id: str
    lines: list[dict[str, Any]]
    at: str


@dataclass(frozen=True)
class ProductionStageChanged:
    production_order_id: int
    stage: str
    at: str


@dataclass(frozen=True)
class ProductionOrderCompleted:
    production_order_id: int
    at: str


def _moment(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise MalformedEvent(
            MalformedEvent.SCHEMA_MISMATCH, f"data.at = {value!r} is not a date-time with an offset"
        )
    return moment


def _stage(value: str) -> str:
    if value not in ProductionStatus.values:
        raise MalformedEvent(
            MalformedEvent.SCHEMA_MISMATCH, f"data.stage = {value!r} is not a production stage"
        )
    return value


def _public_id(value: str) -> UUID:
    try:
        return UUID(value)
    except ValueError:
        raise MalformedEvent(
            MalformedEvent.SCHEMA_MISMATCH, f"data.order_public_id = {value!r} is not a UUID"
        ) from None


@production_orders.handles("production.order.started.v1", ProductionOrderStarted)
def production_order_started(event: ProductionOrderStarted, meta: CloudEvent) -> None:
    production_order_started_apply(
        production_order_id=event.production_order_id,
        order_id=event.order_id,
        order_public_id=_public_id(event.order_public_id),
        lines=event.lines,
        at=_moment(event.at),
    )


@production_orders.handles("production.order.stage_changed.v1", ProductionStageChanged)
def production_stage_changed(event: ProductionStageChanged, meta: CloudEvent) -> None:
    production_order_stage_apply(
        production_order_id=event.production_order_id, stage=_stage(event.stage), at=_moment(event.at)
    )


@production_orders.handles("production.order.completed.v1", ProductionOrderCompleted)
def production_order_completed(event: ProductionOrderCompleted, meta: CloudEvent) -> None:
    # It follows the stage_changed event to done; alone (that one lost or not yet here) it says the same.
    production_order_stage_apply(
        production_order_id=event.production_order_id, stage="done", at=_moment(event.at)
    )
