"""The shop service's event consumers: `shop-production-status` applies mes_production's
production.* events to the shop's orders (shop_app/production_status.py).

Run with `SERVICE=shop manage.py consume shop-production-status`, only while the shop owns the
orders (slice shop-orders live; before that the monolith's `legacy-production-status` applies them:
docs/data-migration.md). The inbox (shop_inbox) and the orders share the shop database, so a
redelivered event has no second effect, and a late one changes nothing (the apply is monotonic).
"""

from dataclasses import dataclass
from datetime import datetime

from cdc.consuming.envelope import CloudEvent
from cdc.consuming.groups import ConsumerGroup
from shop_app.models import ShopInboxEntry
from shop_app.production_status import order_production_status_apply

production_status = ConsumerGroup("shop-production-status", service="shop", inbox=ShopInboxEntry)


@dataclass(frozen=True)
class ProductionStarted:
    """production.order.started.v1: the production order exists, at its first stage (queued)."""

    order_id: int
    stage: str
    at: str


@dataclass(frozen=True)
class ProductionStageChanged:
    """production.order.stage_changed.v1: one stage on (the last one is done)."""

    order_id: int
    stage: str
    at: str


@dataclass(frozen=True)
class ProductionCompleted:
    """production.order.completed.v1: follows the stage_changed event to done."""

    order_id: int
    at: str


@production_status.handles("production.order.started.v1", ProductionStarted)
def production_started(event: ProductionStarted, meta: CloudEvent) -> None:
    order_production_status_apply(
        order_id=event.order_id, stage=event.stage, at=datetime.fromisoformat(event.at)
    )


@production_status.handles("production.order.stage_changed.v1", ProductionStageChanged)
def production_stage_changed(event: ProductionStageChanged, meta: CloudEvent) -> None:
    order_production_status_apply(
        order_id=event.order_id, stage=event.stage, at=datetime.fromisoformat(event.at)
    )


@production_status.handles("production.order.completed.v1", ProductionCompleted)
def production_completed(event: ProductionCompleted, meta: CloudEvent) -> None:
    order_production_status_apply(order_id=event.order_id, stage="done", at=datetime.fromisoformat(event.at))
