"""Writes of the production service: the projection of shop orders fed by the shop's events,
starting a production order once per confirmed order, and moving due orders one stage on.

Every change and the events announcing it (production.order.*) share one transaction. The time is
always given by the caller.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from django.db import connections, transaction

from cdc.event_tracing import span_continuing
from config.routers import model_database_alias
from mes_production import events
from mes_production.exceptions import ShopOrderUnknown
from mes_production.models import (
    STAGE_SEQUENCE,
    ProductionOrder,
    ProductionStage,
    ProductionStatus,
    ShopOrder,
    ShopOrderLine,
)
from mes_production.selectors import shop_order_lines

logger = structlog.get_logger(__name__)


def _atomic() -> transaction.Atomic:
    # Joins a consumer's batch transaction without a savepoint per event (a failure rolls the whole
    # batch back and the consumer redoes it); opens a transaction of its own otherwise.
    return transaction.atomic(using=model_database_alias(ProductionOrder), savepoint=False)


def shop_order_record(*, order_id: int, public_id: str) -> None:
    """Remembers a shop order (shop.order.created); a repeated announcement changes nothing."""
    with _atomic():
        ShopOrder.objects.update_or_create(order_id=order_id, defaults={"public_id": public_id})


def shop_order_line_record(
    *, order_id: int, line_id: int, sku: str, quantity: int, options: list[str]
) -> None:
    """Stores a line as last announced (shop.order_line.added / changed)."""
    with _atomic():
        ShopOrderLine.objects.update_or_create(
            line_id=line_id,
            defaults={"order_id": order_id, "sku": sku, "quantity": quantity, "options": list(options)},
        )


def shop_order_line_forget(*, line_id: int) -> None:
    """Drops a removed line (shop.order_line.removed)."""
    with _atomic():
        ShopOrderLine.objects.filter(line_id=line_id).delete()


def production_order_start(*, order_id: int, at: datetime) -> tuple[ProductionOrder, bool]:
    """Creates the production order of a confirmed shop order from the projected lines, with its
    queued stage and production.order.started; a second call returns the first order and writes
    nothing. Raises ShopOrderUnknown when the order's creation was never announced."""
    with _atomic():
        existing = ProductionOrder.objects.filter(order_id=order_id).first()
        shop_order = ShopOrder.objects.filter(order_id=order_id).first()
        if existing is not None:
            if shop_order is not None and shop_order.public_id != existing.order_public_id:
                # Another order under the same id (one side's ids reset): its production does not start.
                logger.error(
                    "production.order_id_reused",
                    order_id=order_id,
                    production_order_id=existing.id,
                    started_for=str(existing.order_public_id),
                    confirmed=str(shop_order.public_id),
                )
            else:
                logger.info("production.already_started", order_id=order_id, production_order_id=existing.id)
            return existing, False
        if shop_order is None:
            raise ShopOrderUnknown(order_id=order_id)
        production = ProductionOrder.objects.create(
            order_id=order_id,
            order_public_id=shop_order.public_id,
            status=ProductionStatus.QUEUED,
            lines=shop_order_lines(order_id=order_id),
            created_at=at,
            updated_at=at,
        )
        ProductionStage.objects.create(production_order=production, status=ProductionStatus.QUEUED, at=at)
        events.started_write(production=production, at=at)
    logger.info("production.started", order_id=order_id, production_order_id=production.id)
    return production, True


@dataclass(frozen=True)
class Advance:
    production_order_id: int
    order_id: int
    previous_stage: str
    stage: str


# Unfinished orders whose last stage began at or before %s, oldest first, locked; rows another
# runner holds are skipped, so two runners never work on one order at once.
_DUE_SQL = (
    "SELECT o.id FROM {orders} o WHERE o.status <> %s AND "
    "(SELECT max(s.at) FROM {stages} s WHERE s.production_order_id = o.id) <= %s "
    "ORDER BY o.id LIMIT %s FOR UPDATE OF o SKIP LOCKED"
)


def production_stages_advance_due(*, now: datetime, stage_seconds: float, limit: int = 200) -> list[Advance]:
    """Moves every order whose current stage began `stage_seconds` or more before `now` one stage on,
    up to `limit` of them, in one transaction: the stage row, the order's status and its
    production.order.stage_changed (and .completed on reaching done) commit together."""
    alias = model_database_alias(ProductionOrder)
    cutoff = now - timedelta(seconds=stage_seconds)
    advances: list[Advance] = []
    with transaction.atomic(using=alias):
        with connections[alias].cursor() as cursor:
            sql = _DUE_SQL.format(
                orders=ProductionOrder._meta.db_table, stages=ProductionStage._meta.db_table
            )
            cursor.execute(sql, [ProductionStatus.DONE.value, cutoff, limit])
            ids = [row[0] for row in cursor.fetchall()]
        for production in ProductionOrder.objects.filter(id__in=ids).order_by("id"):
            # Read again under the lock, in a statement of its own: a runner that advanced this
            # order and committed while the locking query ran is seen here, not advanced twice.
            last_at = (
                ProductionStage.objects.filter(production_order_id=production.id)
                .order_by("-at", "-id")
                .values_list("at", flat=True)
                .first()
            )
            if production.status == ProductionStatus.DONE or last_at is None or last_at > cutoff:
                continue
            previous = production.status
            production.status = STAGE_SEQUENCE[STAGE_SEQUENCE.index(ProductionStatus(previous)) + 1]
            # A trace per step (the runner's rounds start no request's trace); its events continue it.
            with span_continuing(
                "production stage advance",
                traceparent=None,
                attributes={
                    "order.id": str(production.order_id),
                    "production_order.id": str(production.id),
                    "production.stage": str(production.status),
                },
            ):
                production.updated_at = now
                production.save(update_fields=["status", "updated_at"])
                ProductionStage.objects.create(production_order=production, status=production.status, at=now)
                events.stage_changed_write(production=production, previous_stage=previous, at=now)
                if production.status == ProductionStatus.DONE:
                    events.completed_write(production=production, at=now)
            advances.append(Advance(production.id, production.order_id, previous, production.status))
    for advance in advances:
        logger.info(
            "production.advanced",
            production_order_id=advance.production_order_id,
            order_id=advance.order_id,
            stage=advance.stage,
        )
    return advances
