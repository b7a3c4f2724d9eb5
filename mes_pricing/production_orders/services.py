"""The projection's writes: each production event adds what it says (an order, a stage) and the
order's status is then derived from the stages it has. The result depends only on which events
arrived, not on their order or on how often: a redelivery or a republish changes nothing."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from django.db import transaction
from django.db.models import Max

from config.routers import model_database_alias
from mes_pricing.production_orders.models import (
    STAGE_SEQUENCE,
    ProductionStatus,
    ProjectedProductionOrder,
    ProjectedProductionStage,
)


def _database() -> str:
    return model_database_alias(ProjectedProductionOrder)


def production_order_started_apply(
    *,
    production_order_id: int,
    order_id: int,
    order_public_id: UUID,
    lines: list[dict[str, Any]],
    at: datetime,
) -> None:
    """production.order.started: the order with its lines, and its first stage (queued)."""
    using = _database()
    with transaction.atomic(using=using):
        ProjectedProductionOrder.objects.using(using).bulk_create(
            [
                ProjectedProductionOrder(
                    id=production_order_id,
                    order_id=order_id,
                    order_public_id=order_public_id,
                    status=ProductionStatus.QUEUED,
                    lines=lines,
                    created_at=at,
                    updated_at=at,
                )
            ],
            update_conflicts=True,
            unique_fields=["id"],
            update_fields=["order_id", "order_public_id", "lines", "created_at"],
        )
        _stage_add(
            using=using, production_order_id=production_order_id, status=ProductionStatus.QUEUED, at=at
        )
        _status_derive(using=using, production_order_id=production_order_id)


def production_order_stage_apply(*, production_order_id: int, stage: str, at: datetime) -> None:
    """production.order.stage_changed (and completed, whose stage is done): one more stage."""
    using = _database()
    with transaction.atomic(using=using):
        _stage_add(
            using=using, production_order_id=production_order_id, status=ProductionStatus(stage), at=at
        )
        _status_derive(using=using, production_order_id=production_order_id)


def _stage_add(*, using: str, production_order_id: int, status: ProductionStatus, at: datetime) -> None:
    # The first report of a stage wins: the same stage reported again keeps its time.
    ProjectedProductionStage.objects.using(using).bulk_create(
        [ProjectedProductionStage(production_order_id=production_order_id, status=status, at=at)],
        ignore_conflicts=True,
    )


def _status_derive(*, using: str, production_order_id: int) -> None:
    """The order's status is the furthest stage it reached, updated_at the latest stage's time; a
    stage that arrived before its order waits until the started event writes the order."""
    order = (
        ProjectedProductionOrder.objects.using(using)
        .select_for_update()
        .filter(id=production_order_id)
        .first()
    )
    if order is None:
        return
    stages = ProjectedProductionStage.objects.using(using).filter(production_order_id=production_order_id)
    reached = set(stages.values_list("status", flat=True))
    status = max(
        (ProductionStatus(s) for s in reached), key=STAGE_SEQUENCE.index, default=ProductionStatus.QUEUED
    )
    latest = stages.aggregate(latest=Max("at"))["latest"] or order.created_at
    updated_at = max(latest, order.created_at)
    if order.status != status or order.updated_at != updated_at:
        ProjectedProductionOrder.objects.using(using).filter(id=order.id).update(
            status=status, updated_at=updated_at
        )
