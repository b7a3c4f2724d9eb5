"""The CRM's event consumers on the shared database.

- `legacy-orchestration` (events mode): a confirmed order goes to the legacy MES when its
  shop.order.confirmed event arrives instead of when the polling loop finds it; with
  MES_PRODUCTION=service it sends nothing (mes_production takes the event itself).
- `legacy-production-status` (MES_PRODUCTION=service): the production.* events of mes_production
  move the order to in_production and done, as the legacy MES's Celery replies did. Run it only
  while the monolith owns the orders (before the shop-orders cutover; docs/data-migration.md).

Run with `SERVICE=legacy manage.py consume <group>`. The inbox and the order rows share the legacy
database, so a redelivered event has no second effect. The production request is published inside
the transaction, as the polling loop does: a crash before commit resends it, which the MES absorbs
(one production order per shop order); publishing after commit could lose it.
"""

from dataclasses import dataclass
from datetime import datetime

import structlog
from django.conf import settings
from django.utils import timezone

from cdc.consuming.envelope import CloudEvent
from cdc.consuming.groups import ConsumerGroup
from legacy.crm.models import CrmInboxEntry
from legacy.crm.orchestrator import order_production_dispatch
from legacy.crm.services import production_status_apply

logger = structlog.get_logger(__name__)

orchestration = ConsumerGroup("legacy-orchestration", service="legacy", inbox=CrmInboxEntry)
production_status = ConsumerGroup("legacy-production-status", service="legacy", inbox=CrmInboxEntry)


@dataclass(frozen=True)
class OrderConfirmed:
    """What this consumer needs of shop.order.confirmed.v1: the order's lines are read from the
    shared database, which is this consumer's own (so no projection of order lines is kept)."""

    order_id: int


@orchestration.handles("shop.order.confirmed.v1", OrderConfirmed)
def order_confirmed(event: OrderConfirmed, meta: CloudEvent) -> None:
    if settings.MES_PRODUCTION == "service":
        logger.info("crm.order_not_sent_to_mes", order_id=event.order_id, why="MES_PRODUCTION=service")
        return
    from legacy.mes.tasks import start_production

    order_production_dispatch(
        order_id=event.order_id,
        at=timezone.now(),
        send=lambda request: start_production.apply_async(kwargs=request),
    )


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


def event_moment(value: str) -> datetime:
    """An RFC 3339 `at` of a production event (Python 3.11 reads a trailing Z itself)."""
    return datetime.fromisoformat(value)


@production_status.handles("production.order.started.v1", ProductionStarted)
def production_started(event: ProductionStarted, meta: CloudEvent) -> None:
    production_status_apply(order_id=event.order_id, stage=event.stage, at=event_moment(event.at))


@production_status.handles("production.order.stage_changed.v1", ProductionStageChanged)
def production_stage_changed(event: ProductionStageChanged, meta: CloudEvent) -> None:
    production_status_apply(order_id=event.order_id, stage=event.stage, at=event_moment(event.at))


@production_status.handles("production.order.completed.v1", ProductionCompleted)
def production_completed(event: ProductionCompleted, meta: CloudEvent) -> None:
    production_status_apply(order_id=event.order_id, stage="done", at=event_moment(event.at))
