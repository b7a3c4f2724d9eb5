"""The shop service's side of order status from production (issue 9): once the shop owns the
orders (slice shop-orders live), `SERVICE=shop manage.py consume shop-production-status` applies
mes_production's production.* events to the shop database's orders, writes the history rows the
monolith writes, and announces them through the shop's outbox with the events the legacy CDC
capture derives from the same row changes.

Orders are placed and confirmed through the monolith's APIs (MES_PRODUCTION=service), then the
shop tables are copied into the shop database, the stand-in for the forward sync at the cutover.
The monolith's own status group is not running: its orders must stay as they were.
"""

from __future__ import annotations

import signal
from datetime import UTC, datetime

import pytest
import requests

import shop_app.consumers  # noqa: F401 (registers the group this test process declares queues for)
from config.routers import database_alias
from harness.consumer_topology import group_topology_declare
from harness.waiting import wait_http_ok, wait_until
from legacy.shop.models import Order as LegacyOrder
from ops.process_group import ManagedProcess, ProcessGroup, free_port, service_process_commands
from shop_app.models import Order, OrderStatus, ShopInboxEntry, ShopOutboxEvent
from tests.conftest import LOG_DIR, start_legacy_stack
from tests.consumer_fixtures import PARTITIONS
from tests.contract.conftest import shop_tables_copy
from tests.event_transport import amqp_publish
from tests.factories import CustomerFactory, PricingRuleFactory, ProductFactory, staff_token
from tests.integration.production_events import (
    PlacedOrder,
    orders_place_and_confirm,
    production_events,
    stale_stage_event,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True, databases=["default", "shop"])]

GROUP = "shop-production-status"
SHOP_CONSUMER = {
    "SERVICE": "shop",
    "CONSUMER_MODULES": "shop_app.consumers",
    "MES_PRODUCTION": "service",
    "LOG_LEVEL": "INFO",
}
FULL_HISTORY = ["placed", "confirmed", "in_production", "done"]
# What the shop's outbox announces of one order's production run, in order: the legacy capture's
# events for the same row changes (stage column change, then the status history row).
OUTBOX_SEQUENCE = [
    ("shop.order.production_stage_changed.v1", "queued", ""),
    ("shop.order.production_started.v1", None, None),
    ("shop.order.production_stage_changed.v1", "cutting", "queued"),
    ("shop.order.production_stage_changed.v1", "assembly", "cutting"),
    ("shop.order.production_stage_changed.v1", "quality_check", "assembly"),
    ("shop.order.production_stage_changed.v1", "done", "quality_check"),
    ("shop.order.production_completed.v1", None, None),
]


def shop_histories(orders: list[PlacedOrder]) -> dict[int, list[str]]:
    return {
        order.id: list(Order.objects.get(id=order.id).history.values_list("status", flat=True))
        for order in orders
    }


def shop_count_in(orders: list[PlacedOrder], status: str) -> int:
    return Order.objects.filter(id__in=[o.id for o in orders], status=status).count()


def outbox_sequence(order_id: int) -> list[tuple[str, str | None, str | None]]:
    rows = ShopOutboxEvent.objects.filter(aggregatetype="order", aggregateid=str(order_id)).order_by(
        "created_at"
    )
    return [(row.type, row.payload.get("stage"), row.payload.get("previous_stage")) for row in rows]


def test_shop_consumer_applies_production_events_to_the_shop_orders_once_through_a_kill_9(  # type: ignore[no-untyped-def]
    consumer_env, consumer_vhost, start_consumer
) -> None:
    PricingRuleFactory()
    skus = [ProductFactory().sku for _ in range(3)]
    customer_token, token = CustomerFactory().api_token, staff_token()
    with ProcessGroup() as group:
        stack = start_legacy_stack(
            group, {**consumer_env, "MES_PRODUCTION": "service"}, "production-status-shop"
        )
        orders = orders_place_and_confirm(
            stack.base_url, customer_token=customer_token, staff_token=token, skus=skus, count=40
        )
    shop_tables_copy(source=database_alias("legacy"), target=database_alias("shop"))
    assert shop_count_in(orders, OrderStatus.CONFIRMED) == len(orders)

    group_topology_declare(consumer_vhost, GROUP, partitions=PARTITIONS)
    start = datetime.now(UTC)
    runs = [production_events(o, production_order_id=7000 + n, start=start) for n, o in enumerate(orders)]
    amqp_publish(consumer_vhost, [run[0] for run in runs])
    consumer = start_consumer(GROUP, tag="first", env=SHOP_CONSUMER)
    wait_until(
        lambda: shop_count_in(orders, OrderStatus.IN_PRODUCTION) == len(orders),
        seconds=30,
        what="all in production",
    )
    assert set(map(tuple, shop_histories(orders).values())) == {("placed", "confirmed", "in_production")}

    # The rest of every run, the started events again (redelivered), stale stages; kill -9 mid-stream.
    stale = [
        stale_stage_event(o, production_order_id=7000 + n, stage="assembly") for n, o in enumerate(orders)
    ]
    amqp_publish(consumer_vhost, [e for run in runs for e in run[1:]] + [run[0] for run in runs] + stale)
    wait_until(
        lambda: shop_count_in(orders, OrderStatus.DONE) >= 1,
        seconds=30,
        interval=0.01,
        what="the stream under way",
    )
    consumer.process.signal(signal.SIGKILL)
    consumer.process.popen.wait(timeout=10)
    assert shop_count_in(orders, OrderStatus.DONE) < len(orders), (
        "the kill came after the stream: nothing was tested"
    )

    second = start_consumer(GROUP, tag="second", env=SHOP_CONSUMER)
    wait_until(
        lambda: shop_count_in(orders, OrderStatus.DONE) == len(orders), seconds=60, what="every order done"
    )
    handled = len(orders) * 6 + len(stale)
    wait_until(
        lambda: ShopInboxEntry.objects.filter(consumer=GROUP).count() == handled,
        seconds=30,
        what="every distinct event in the shop's inbox",
    )
    assert second.metric("consumer_events_consumed_total", outcome="dead_lettered") == 0

    assert all(history == FULL_HISTORY for history in shop_histories(orders).values()), shop_histories(orders)
    assert set(
        Order.objects.filter(id__in=[o.id for o in orders]).values_list("production_stage", flat=True)
    ) == {"done"}
    assert {order.id: outbox_sequence(order.id) for order in orders} == {
        order.id: OUTBOX_SEQUENCE for order in orders
    }
    # Only the owning side applied: the monolith's copies of the orders did not move.
    assert set(
        LegacyOrder.objects.filter(id__in=[o.id for o in orders]).values_list("status", "production_stage")
    ) == {("confirmed", "")}

    # The customer sees "done" on the shop service's API.
    port = free_port()
    with ProcessGroup() as shop:
        web = shop.start(
            ManagedProcess(
                "shop-web",
                service_process_commands("shop", port=port)["web"],
                {**consumer_env, "SERVICE": "shop"},
                LOG_DIR / f"production-status-shop-web-{port}.log",
            )
        )
        wait_http_ok(f"http://127.0.0.1:{port}/healthz", seconds=30, process=web.popen)
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {customer_token}"
        for order in orders[:5]:
            body = session.get(
                f"http://127.0.0.1:{port}/shop/api/orders/{order.public_id}/", timeout=10
            ).json()
            assert body["status"] == "done", body
            assert [h["status"] for h in body["history"]] == FULL_HISTORY
