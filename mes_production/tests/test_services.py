"""The production service on its database: the consumer group starts one production order per
confirmed order whatever is redelivered, and the stage runner's step moves due orders one stage on,
never twice, with their events in the same transaction."""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connections, transaction

from cdc.cloudevents import cloud_event
from cdc.consuming.processing import EventProcessor, RetryPolicy, Verdict
from cdc.event_schemas import event_validate
from mes_production import events
from mes_production.consumers import production as production_group
from mes_production.exceptions import ShopOrderUnknown
from mes_production.models import (
    ProductionInboxEntry,
    ProductionOrder,
    ProductionOutboxEvent,
    ProductionStage,
    ShopOrderLine,
)
from mes_production.services import (
    production_order_start,
    production_stages_advance_due,
    shop_order_line_record,
    shop_order_record,
)

pytestmark = pytest.mark.django_db(databases=["default", "production"], transaction=True)

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
STAGE = 1.0
PUBLIC_ID = "6f1c1c0e-8a0e-4f55-9b43-3c3bd1b1f0aa"


def wire(event_type: str, order_id: int, data: dict[str, Any]) -> bytes:
    return json.dumps(
        {
            "specversion": "1.0",
            "id": str(uuid.uuid4()),
            "source": "/legacy/shop",
            "type": event_type,
            "subject": f"order:{order_id}",
            "time": T0.isoformat(),
            "datacontenttype": "application/json",
            "data": data,
        }
    ).encode()


def order_events(order_id: int) -> list[bytes]:
    line = {"order_id": order_id, "product_id": 3, "unit_price": "10.00", "line_total": "20.00"}
    return [
        wire(
            "shop.order.created.v1",
            order_id,
            {
                "order_id": order_id,
                "public_id": PUBLIC_ID,
                "customer_id": 9,
                "status": "placed",
                "total": "45.00",
                "currency": "EUR",
                "created_at": T0.isoformat(),
            },
        ),
        wire(
            "shop.order_line.added.v1",
            order_id,
            {**line, "line_id": 11, "sku": "CHAIR", "quantity": 2, "options": ["lacquer"]},
        ),
        wire(
            "shop.order_line.added.v1",
            order_id,
            {**line, "line_id": 12, "sku": "TABLE", "quantity": 1, "options": []},
        ),
        wire(
            "shop.order_line.changed.v1",
            order_id,
            {**line, "line_id": 12, "sku": "TABLE", "quantity": 3, "options": ["oak"]},
        ),
        wire(
            "shop.order_line.added.v1",
            order_id,
            {**line, "line_id": 13, "sku": "LAMP", "quantity": 1, "options": []},
        ),
        wire("shop.order_line.removed.v1", order_id, {"order_id": order_id, "line_id": 13}),
        wire(
            "shop.order.confirmed.v1",
            order_id,
            {"order_id": order_id, "at": T0.isoformat(), "actor": "staff", "note": ""},
        ),
    ]


def processor() -> EventProcessor:
    return EventProcessor(production_group, RetryPolicy(max_attempts=1, base_seconds=0, max_seconds=0))


def as_cloud_event(row: ProductionOutboxEvent) -> dict[str, Any]:
    return cloud_event(
        event_id=str(row.id),
        event_type=row.type,
        source="/production/production_outbox",
        subject=f"{row.aggregatetype}:{row.aggregateid}",
        time=row.payload["at"],
        data=row.payload,
    )


def test_a_confirmed_order_starts_one_production_order_from_its_projected_lines() -> None:
    verdicts = processor().process_batch(order_events(501), wait=lambda s: True)

    assert [v.outcome for v in verdicts] == ["handled"] * 7
    production = ProductionOrder.objects.get(order_id=501)
    assert str(production.order_public_id) == PUBLIC_ID
    assert production.status == "queued"
    assert production.lines == [
        {"sku": "CHAIR", "quantity": 2, "options": ["lacquer"]},
        {"sku": "TABLE", "quantity": 3, "options": ["oak"]},
    ]
    assert list(production.stages.values_list("status", flat=True)) == ["queued"]
    (started,) = ProductionOutboxEvent.objects.all()
    assert (started.type, started.aggregatetype, started.aggregateid) == (events.STARTED, "order", "501")
    assert started.payload["lines"] == production.lines
    event_validate(as_cloud_event(started))


def test_the_same_confirmation_twice_has_no_second_effect() -> None:
    bodies = order_events(502)
    first = processor().process_batch(bodies, wait=lambda s: True)
    # Redelivered: the whole stream again (after a consumer crash), then the confirmation in one
    # batch twice (a copy already in hand).
    again = processor().process_batch(bodies, wait=lambda s: True)
    twice = processor().process_batch([bodies[-1], bodies[-1]], wait=lambda s: True)

    assert all(v.action == Verdict.ACK for v in [*first, *again, *twice])
    assert [v.outcome for v in again] == ["duplicate"] * 7
    assert [v.outcome for v in twice] == ["duplicate", "duplicate"]
    assert ProductionOrder.objects.filter(order_id=502).count() == 1
    assert ProductionStage.objects.filter(production_order__order_id=502).count() == 1
    assert ProductionOutboxEvent.objects.filter(type=events.STARTED, aggregateid="502").count() == 1
    assert ProductionInboxEntry.objects.filter(consumer="production").count() == 7


def test_a_second_confirmation_event_of_the_same_order_starts_nothing_more() -> None:
    processor().process_batch(order_events(503), wait=lambda s: True)
    other_copy = wire(
        "shop.order.confirmed.v1", 503, {"order_id": 503, "at": T0.isoformat(), "actor": "x", "note": ""}
    )

    (verdict,) = processor().process_batch([other_copy], wait=lambda s: True)

    assert verdict.outcome == "handled"
    assert ProductionOrder.objects.filter(order_id=503).count() == 1
    assert ProductionOutboxEvent.objects.filter(type=events.STARTED).count() == 1


def test_a_confirmation_without_the_orders_creation_is_refused_not_dropped() -> None:
    with pytest.raises(ShopOrderUnknown, match="order 504 was confirmed"):
        production_order_start(order_id=504, at=T0)
    (verdict,) = processor().process_batch([order_events(504)[-1]], wait=lambda s: True)
    assert verdict.action == Verdict.DEAD_LETTER
    assert not ProductionOrder.objects.exists() and not ProductionOutboxEvent.objects.exists()


def started(order_id: int, at: datetime) -> ProductionOrder:
    shop_order_record(order_id=order_id, public_id=str(uuid.uuid4()))
    shop_order_line_record(order_id=order_id, line_id=order_id * 10, sku="CHAIR", quantity=1, options=[])
    production, _ = production_order_start(order_id=order_id, at=at)
    return production


def test_due_orders_move_one_stage_per_stage_time_to_done_with_their_events() -> None:
    production = started(601, T0)
    not_yet = started(602, T0 + timedelta(seconds=0.5))

    assert production_stages_advance_due(now=T0 + timedelta(seconds=0.9), stage_seconds=STAGE) == []
    moves = []
    for step in range(1, 8):
        moves += production_stages_advance_due(now=T0 + timedelta(seconds=step), stage_seconds=STAGE)

    assert [(m.order_id, m.previous_stage, m.stage) for m in moves if m.order_id == 601] == [
        (601, "queued", "cutting"),
        (601, "cutting", "assembly"),
        (601, "assembly", "quality_check"),
        (601, "quality_check", "done"),
    ]
    production.refresh_from_db()
    assert production.status == "done" and production.updated_at == T0 + timedelta(seconds=4)
    assert list(production.stages.values_list("status", "at")) == [
        (status, T0 + timedelta(seconds=n))
        for n, status in enumerate(["queued", "cutting", "assembly", "quality_check", "done"])
    ]
    # The second order started half a stage later: each of its steps comes one round later.
    assert ProductionOrder.objects.get(id=not_yet.id).status == "done"
    assert ProductionStage.objects.filter(production_order=not_yet).count() == 5
    rows = list(ProductionOutboxEvent.objects.filter(aggregateid="601").order_by("created_at", "type"))
    assert [(r.type, r.payload.get("stage")) for r in rows] == [
        (events.STARTED, "queued"),
        (events.STAGE_CHANGED, "cutting"),
        (events.STAGE_CHANGED, "assembly"),
        (events.STAGE_CHANGED, "quality_check"),
        (events.COMPLETED, None),
        (events.STAGE_CHANGED, "done"),
    ]
    for row in rows:
        event_validate(as_cloud_event(row))


def test_an_advance_that_fails_leaves_neither_stage_nor_event() -> None:
    started(701, T0)
    with pytest.raises(RuntimeError), transaction.atomic(using="production"):
        production_stages_advance_due(now=T0 + timedelta(seconds=2), stage_seconds=STAGE)
        raise RuntimeError("the runner dies before its commit")
    assert ProductionOrder.objects.get(order_id=701).status == "queued"
    assert ProductionOutboxEvent.objects.filter(type=events.STAGE_CHANGED).count() == 0


def test_concurrent_runners_never_advance_one_order_twice() -> None:
    for order_id in range(801, 841):
        started(order_id, T0)
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def runner() -> None:
        try:
            barrier.wait()
            # A runner stops when it finds nothing due it can lock: what others hold, they finish.
            while production_stages_advance_due(
                now=T0 + timedelta(seconds=1.5), stage_seconds=STAGE, limit=7
            ):
                pass
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=runner) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert errors == []
    # One stage time passed: every order moved exactly one stage, whichever runner took it.
    assert set(ProductionOrder.objects.values_list("status", flat=True)) == {"cutting"}
    assert ProductionStage.objects.count() == 80
    assert ProductionOutboxEvent.objects.filter(type=events.STAGE_CHANGED).count() == 40
    assert ShopOrderLine.objects.count() == 40


def test_the_stage_runner_loop_moves_orders_to_done_and_stops_when_asked() -> None:
    from mes_production.stage_runner import stage_runner_run

    for order_id in (901, 902):
        started(order_id, T0)
    stop = threading.Event()
    now = [T0]
    result: list[int] = []

    def run() -> None:
        try:
            result.append(
                stage_runner_run(
                    stage_seconds=STAGE, poll_seconds=0.01, batch_size=1, stop=stop, clock=lambda: now[0]
                )
            )
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    try:
        for step in range(1, 5):  # the clock moves one stage time at a time
            now[0] = T0 + timedelta(seconds=step * STAGE)
            deadline = time.monotonic() + 10
            while ProductionStage.objects.count() < 2 * (step + 1) and time.monotonic() < deadline:
                time.sleep(0.01)
    finally:
        stop.set()
        thread.join(10)

    assert not thread.is_alive()
    assert result == [8]
    assert set(ProductionOrder.objects.values_list("status", flat=True)) == {"done"}
    assert ProductionOutboxEvent.objects.filter(type=events.COMPLETED).count() == 2


def test_a_confirmation_of_another_order_under_a_started_orders_id_is_logged_as_an_error() -> None:
    from structlog.testing import capture_logs

    first = started(505, T0)
    shop_order_record(order_id=505, public_id=PUBLIC_ID)  # the same id handed out again

    with capture_logs() as logs:
        production, created = production_order_start(order_id=505, at=T0 + timedelta(seconds=1))

    assert (production.id, created) == (first.id, False)
    (entry,) = [e for e in logs if e["event"] == "production.order_id_reused"]
    assert entry["log_level"] == "error"
    assert entry["confirmed"] == PUBLIC_ID and entry["started_for"] == str(first.order_public_id)
