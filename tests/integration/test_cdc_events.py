"""The CDC engine on the legacy database: every captured change becomes its domain event on
RabbitMQ, in order per aggregate, with the contract's message properties; schema changes of a
captured table do not stop the stream; `cdc status` and `cdc teardown` tell the truth."""

from __future__ import annotations

from collections import Counter

import pytest
import requests
from django.db import connection
from django.utils import timezone

from harness.waiting import wait_until
from legacy.crm.services import order_cancel, order_confirm, production_status_apply
from legacy.shop.models import Customer
from legacy.shop.services import OrderLineRequest, order_place
from tests.cdc_fixtures import EventCollector, RunningEngine, cdc_child_env, run_manage
from tests.factories import CustomerFactory, PricingRuleFactory, ProductFactory

pytestmark = [
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True, databases=["default", "control"]),
]


def place(customer: Customer, *skus: str) -> int:
    lines = [OrderLineRequest(sku=sku, quantity=2, options=["lacquer"]) for sku in skus]
    return order_place(customer=customer, lines=lines, at=timezone.now()).id


def test_every_captured_change_becomes_its_event_in_order_per_aggregate(
    cdc_engine: RunningEngine, event_collector: EventCollector
) -> None:
    PricingRuleFactory()
    first, second = ProductFactory(), ProductFactory()
    customer = CustomerFactory(name="Ada")
    confirmed = place(customer, first.sku, second.sku)
    cancelled = place(customer, first.sku)
    produced = place(customer, second.sku)
    order_confirm(order_id=confirmed, actor="staff@example.com", at=timezone.now())
    order_cancel(order_id=cancelled, actor="staff@example.com", reason="customer asked", at=timezone.now())
    order_confirm(order_id=produced, actor="staff@example.com", at=timezone.now())
    for stage in ("queued", "cutting", "done"):
        production_status_apply(order_id=produced, stage=stage, at=timezone.now())
    Customer.objects.filter(id=customer.id).update(name="Ada Lovelace")
    Customer.objects.filter(id=customer.id).update(api_token="rotated-token-is-not-an-event")

    created, line, placed = "shop.order.created.v1", "shop.order_line.added.v1", "shop.order.placed.v1"
    stage_changed = "shop.order.production_stage_changed.v1"
    expected = {
        f"order:{confirmed}": [created, line, line, placed, "shop.order.confirmed.v1"],
        f"order:{cancelled}": [created, line, placed, "shop.order.cancelled.v1"],
        f"order:{produced}": [
            created,
            line,
            placed,
            "shop.order.confirmed.v1",
            stage_changed,  # queued
            "shop.order.production_started.v1",
            stage_changed,  # cutting
            stage_changed,  # done
            "shop.order.production_completed.v1",
        ],
        f"customer:{customer.id}": ["shop.customer.registered.v1", "shop.customer.updated.v1"],
    }
    for subject, types in expected.items():
        assert event_collector.wait_for_types(subject, len(types)) == types, subject

    lines = [e["data"] for e in event_collector.of_subject(f"order:{confirmed}") if e["type"] == line]
    assert [(d["sku"], d["quantity"], d["options"]) for d in lines] == [
        (first.sku, 2, ["lacquer"]),
        (second.sku, 2, ["lacquer"]),
    ]
    updated = event_collector.of_subject(f"customer:{customer.id}")[-1]["data"]
    assert updated["changed"] == ["name"] and updated["name"] == "Ada Lovelace"
    cancel = event_collector.of_subject(f"order:{cancelled}")[-1]["data"]
    assert cancel["note"] == "customer asked" and cancel["actor"] == "staff@example.com"
    stages = [
        e["data"]["stage"]
        for e in event_collector.of_subject(f"order:{produced}")
        if e["type"] == stage_changed
    ]
    assert stages == ["queued", "cutting", "done"]

    received = [r for r in event_collector.received if r.event["subject"] == f"order:{confirmed}"]
    for item in received:
        assert item.message_id == item.event["id"]
        assert item.routing_key == item.event["type"]
        assert item.content_type == "application/cloudevents+json"
        assert item.delivery_mode == 2
        assert item.headers["aggregate_id"] == f"order:{confirmed}"
        assert item.event["specversion"] == "1.0" and item.event["traceparent"].startswith("00-")
    ids = [r.event["id"] for r in event_collector.received]
    assert not [i for i, n in Counter(ids).items() if n > 1], "a change was published twice without a failure"


def test_column_added_to_a_captured_table_while_streaming_keeps_events_flowing(
    cdc_engine: RunningEngine, event_collector: EventCollector
) -> None:
    PricingRuleFactory()
    product = ProductFactory()
    customer = CustomerFactory()
    before = place(customer, product.sku)
    event_collector.wait_for_types(f"order:{before}", 3)
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE shop_order ADD COLUMN cdc_test_channel varchar(20) NULL")
        cursor.execute("ALTER TABLE shop_order_line ADD COLUMN cdc_test_note text NOT NULL DEFAULT 'x'")
    try:
        after = [place(customer, product.sku) for _ in range(3)]
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE shop_order SET cdc_test_channel = 'web', production_stage = 'queued' WHERE id = %s",
                [after[0]],
            )
        for order_id in after:
            assert event_collector.wait_for_types(f"order:{order_id}", 3)[:3] == [
                "shop.order.created.v1",
                "shop.order_line.added.v1",
                "shop.order.placed.v1",
            ]
        assert (
            event_collector.wait_for_types(f"order:{after[0]}", 4)[3]
            == "shop.order.production_stage_changed.v1"
        )
    finally:
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE shop_order DROP COLUMN cdc_test_channel")
            cursor.execute("ALTER TABLE shop_order_line DROP COLUMN cdc_test_note")
    last = place(customer, product.sku)
    event_collector.wait_for_types(f"order:{last}", 3)
    assert cdc_engine.cdc.alive()


def test_status_shows_slot_lag_and_last_event_and_teardown_asks_for_confirmation(
    cdc_engine: RunningEngine, event_collector: EventCollector, live_env: dict[str, str]
) -> None:
    PricingRuleFactory()
    order_id = place(CustomerFactory(), ProductFactory().sku)
    placed = event_collector.wait_for_types(f"order:{order_id}", 3)
    env = cdc_child_env(live_env, cdc_engine.config)
    slot = cdc_engine.config.target.slot_name

    def status_names_the_placed_event() -> str | None:
        result = run_manage(env, "cdc", "status")
        assert result.returncode == 0, result.stderr
        return result.stdout if f"last event: {placed[-1]} order:{order_id}" in result.stdout else None

    status = wait_until(
        status_names_the_placed_event, seconds=20, interval=0.5, what="status shows the last event"
    )
    assert f"slot: {slot} (exists)" in status
    assert "active: yes" in status
    assert "lag: " in status and "retained WAL: " in status and "ALERT" not in status

    refused = run_manage(env, "cdc", "teardown")
    assert refused.returncode != 0 and "--yes" in refused.stderr
    planned = run_manage(env, "cdc", "teardown", "--dry-run")
    assert planned.returncode == 0, planned.stderr
    assert f"would drop replication slot {slot}" in planned.stdout
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s", [slot])
        assert cursor.fetchone()[0] == 1


def test_retained_wal_above_the_bound_raises_the_alert(
    cdc_engine: RunningEngine, live_env: dict[str, str]
) -> None:
    env = cdc_child_env(live_env, cdc_engine.config, CDC_MAX_RETAINED_WAL_BYTES="0")
    CustomerFactory()  # some WAL after the slot's restart position
    result = run_manage(env, "cdc", "status")
    assert result.returncode == 0, result.stderr
    assert "ALERT: above CDC_MAX_RETAINED_WAL_BYTES" in result.stdout
    assert '"event": "cdc.slot_retains_too_much_wal"' in result.stderr


def test_engine_metrics_count_published_events_and_watch_the_slot(
    cdc_engine: RunningEngine, event_collector: EventCollector
) -> None:
    PricingRuleFactory()
    order_id = place(CustomerFactory(), ProductFactory().sku)
    event_collector.wait_for_types(f"order:{order_id}", 3)
    slot = cdc_engine.config.target.slot_name

    def scrape() -> str | None:
        body = requests.get(f"http://127.0.0.1:{cdc_engine.metrics_port}/metrics", timeout=5).text
        ready = 'cdc_events_published_total{engine="legacy",type="shop.order.placed.v1"}' in body
        return body if ready and f'cdc_slot_lag_bytes{{slot="{slot}"}}' in body else None

    body = wait_until(scrape, seconds=20, interval=0.5, what="engine metrics")
    assert f'cdc_slot_retained_wal_alert{{slot="{slot}"}} 0.0' in body
    assert 'cdc_engine_running{engine="legacy"} 1.0' in body
