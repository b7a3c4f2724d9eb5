"""The projection's writes: idempotent (an event applied twice changes nothing) and order-tolerant
(any arrival order of one order's events ends in the same rows)."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from mes_pricing.production_orders.models import ProjectedProductionOrder, ProjectedProductionStage
from mes_pricing.production_orders.selectors import production_order_get
from mes_pricing.production_orders.services import (
    production_order_stage_apply,
    production_order_started_apply,
)

pytestmark = pytest.mark.django_db(databases=["default", "pricing"])

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
PUBLIC_ID = uuid.UUID("6f1c1c64-1c1d-4c55-9d1b-2b8d3c1f4e01")
LINES = [{"sku": "CHAIR-1", "quantity": 2, "options": ["oak"]}]


def started() -> None:
    production_order_started_apply(
        production_order_id=7, order_id=70, order_public_id=PUBLIC_ID, lines=LINES, at=T0
    )


def stage(name: str, minutes: int) -> None:
    production_order_stage_apply(production_order_id=7, stage=name, at=T0 + timedelta(minutes=minutes))


EVENTS = [
    started,
    lambda: stage("cutting", 1),
    lambda: stage("assembly", 2),
    lambda: stage("quality_check", 3),
    lambda: stage("done", 4),
]


def snapshot() -> tuple:
    order = production_order_get(production_order_id=7)
    assert order is not None
    return (
        order.order_id,
        order.order_public_id,
        order.status,
        order.lines,
        order.created_at,
        order.updated_at,
        [(s.status, s.at) for s in order.stage_list],  # type: ignore[attr-defined]
    )


STAGES = ["queued", "cutting", "assembly", "quality_check", "done"]
EXPECTED = (
    70,
    PUBLIC_ID,
    "done",
    LINES,
    T0,
    T0 + timedelta(minutes=4),
    [(name, T0 + timedelta(minutes=i)) for i, name in enumerate(STAGES)],
)


def test_events_build_the_order_with_its_stages_as_legacy_lists_them() -> None:
    for apply in EVENTS:
        apply()
    assert snapshot() == EXPECTED


def test_duplicate_event_has_no_second_effect() -> None:
    started()
    stage("cutting", 1)
    before = snapshot()
    started()
    stage("cutting", 1)
    # A late copy of an earlier stage with another time keeps the first report.
    stage("cutting", 9)
    assert snapshot() == before
    assert ProjectedProductionStage.objects.count() == 2
    assert ProjectedProductionOrder.objects.count() == 1


@pytest.mark.parametrize("order", [p for i, p in enumerate(itertools.permutations(range(5))) if i % 7 == 0])
def test_any_arrival_order_ends_in_the_same_rows(order: tuple[int, ...]) -> None:
    for index in order:
        EVENTS[index]()
    assert snapshot() == EXPECTED


def test_stages_before_the_started_event_are_kept_and_not_listed_until_it_arrives() -> None:
    stage("cutting", 1)
    assert production_order_get(production_order_id=7) is None
    started()
    assert snapshot()[2] == "cutting"
    assert snapshot()[5] == T0 + timedelta(minutes=1)
