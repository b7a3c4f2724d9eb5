"""The events the production service publishes (contracts/events/production/*.v1.json), built from
its rows; written to its outbox by the services, in the transaction of the change."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from cdc.cloudevents import iso_time
from cdc.outbox_events import outbox_write
from mes_production.models import ProductionOrder, ProductionOutboxEvent

STARTED = "production.order.started.v1"
STAGE_CHANGED = "production.order.stage_changed.v1"
COMPLETED = "production.order.completed.v1"
# Subjects read "order:<shop order id>": consumers keep one shop order's events in order.
AGGREGATE_TYPE = "order"


def _write(production: ProductionOrder, event_type: str, payload: dict[str, Any], at: datetime) -> None:
    outbox_write(
        aggregate_type=AGGREGATE_TYPE,
        aggregate_id=production.order_id,
        event_type=event_type,
        payload=payload,
        outbox=ProductionOutboxEvent,
        at=at,
    )


def started_write(*, production: ProductionOrder, at: datetime) -> None:
    _write(
        production,
        STARTED,
        {
            "production_order_id": production.id,
            "order_id": production.order_id,
            "order_public_id": str(production.order_public_id),
            "stage": production.status,
            "lines": production.lines,
            "at": iso_time(at),
        },
        at,
    )


def stage_changed_write(*, production: ProductionOrder, previous_stage: str, at: datetime) -> None:
    _write(
        production,
        STAGE_CHANGED,
        {
            "production_order_id": production.id,
            "order_id": production.order_id,
            "stage": production.status,
            "previous_stage": previous_stage,
            "at": iso_time(at),
        },
        at,
    )


def completed_write(*, production: ProductionOrder, at: datetime) -> None:
    _write(
        production,
        COMPLETED,
        {"production_order_id": production.id, "order_id": production.order_id, "at": iso_time(at)},
        at,
    )
