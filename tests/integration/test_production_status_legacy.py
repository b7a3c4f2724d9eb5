"""MES_PRODUCTION=service on the monolith: the legacy Celery round trip to the MES is retired, and
order status comes from mes_production's production.* events through the consumer group
`legacy-production-status` (`SERVICE=legacy manage.py consume legacy-production-status`).

The monolith runs as the README runs it (granian web, Celery worker, Celery beat) in service mode;
orders are placed and confirmed through its APIs; contract-valid production events go to the real
RabbitMQ; the consumer is a real `manage.py consume` process.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime

import pytest
import requests

import legacy.crm.consumers  # noqa: F401 (registers the groups this test process declares queues for)
from config.celery import app as celery_app
from harness.consumer_topology import group_topology_declare
from harness.waiting import wait_until
from legacy.crm.models import CrmInboxEntry
from legacy.mes.models import ProductionOrder
from legacy.mes.tasks import start_production
from legacy.shop.models import Order, OrderStatus
from legacy.shop.services import OrderLineRequest
from legacy.shop.services import order_place as legacy_order_place
from ops.process_group import PROJECT_ROOT, ProcessGroup, manage_command
from tests.conftest import start_legacy_stack
from tests.consumer_fixtures import PARTITIONS
from tests.event_transport import amqp_publish, amqp_queue_depths, legacy_order_events
from tests.factories import CustomerFactory, PricingRuleFactory, ProductFactory, staff_token
from tests.integration.production_events import (
    PlacedOrder,
    orders_place_and_confirm,
    production_events,
    stale_stage_event,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

SERVICE_MODE = {"MES_PRODUCTION": "service", "LOG_LEVEL": "INFO"}
GROUP = "legacy-production-status"
FULL_HISTORY = ["placed", "confirmed", "in_production", "done"]


def world() -> tuple[str, str, list[str]]:
    """Customer token, staff token, skus: committed, so the running monolith sees them."""
    PricingRuleFactory()
    skus = [ProductFactory().sku for _ in range(3)]
    return CustomerFactory().api_token, staff_token(), skus


def histories(orders: list[PlacedOrder]) -> dict[int, list[str]]:
    return {
        order.id: list(Order.objects.get(id=order.id).history.values_list("status", flat=True))
        for order in orders
    }


def count_in(orders: list[PlacedOrder], status: str) -> int:
    return Order.objects.filter(id__in=[o.id for o in orders], status=status).count()


def worker_log_events(stack, event: str) -> list[dict]:  # type: ignore[no-untyped-def, type-arg]
    """The worker's JSON log lines whose event is `event`."""
    text = stack.processes["worker"].log_path.read_text(errors="replace")
    records = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    return [record for record in records if record.get("event") == event]


def test_service_mode_retires_the_round_trip_and_events_move_orders_to_done_once(  # type: ignore[no-untyped-def]
    consumer_env, consumer_vhost, start_consumer
) -> None:
    env = {**consumer_env, **SERVICE_MODE, "ORCHESTRATION_MODE": "polling"}
    customer_token, token, skus = world()
    with ProcessGroup() as group:
        # web, worker and beat with the polling orchestrator configured: service mode schedules no poll.
        stack = start_legacy_stack(group, env, "production-status-legacy", polling=True)
        orders = orders_place_and_confirm(
            stack.base_url, customer_token=customer_token, staff_token=token, skus=skus, count=12
        )
        # A production request queued for the legacy MES before the switch is still delivered.
        with celery_app.connection_for_write(consumer_vhost) as connection:
            start_production.apply_async(
                kwargs={"order_id": orders[0].id, "order_public_id": orders[0].public_id, "lines": []},
                connection=connection,
            )
        wait_until(
            lambda: worker_log_events(stack, "mes.task_ignored"), seconds=20, what="the queued request logged"
        )
        # In events mode the CRM's orchestration consumer takes the confirmed events and sends nothing.
        group_topology_declare(consumer_vhost, "legacy-orchestration", partitions=PARTITIONS)
        confirmed = [
            e
            for o in orders
            for e in legacy_order_events(Order.objects.get(id=o.id))
            if e["type"] == "shop.order.confirmed.v1"
        ]
        amqp_publish(consumer_vhost, confirmed)
        orchestration = start_consumer("legacy-orchestration", env=SERVICE_MODE)
        wait_until(
            lambda: orchestration.metric("consumer_events_consumed_total", outcome="handled") == len(orders),
            seconds=30,
            what="every confirmed event handled",
        )
        time.sleep(4 * float(env["CRM_POLL_INTERVAL_SECONDS"]))  # beat is up: a poll would have sent them
        assert not Order.objects.filter(sent_to_mes_at__isnull=False).exists()
        assert ProductionOrder.objects.count() == 0
        assert len(worker_log_events(stack, "mes.task_ignored")) == 1, (
            "only the hand-queued request reached the MES"
        )
        assert count_in(orders, OrderStatus.CONFIRMED) == len(orders)

        # The production service starts every order: each goes in_production.
        group_topology_declare(consumer_vhost, GROUP, partitions=PARTITIONS)
        start = datetime.now(UTC)
        events = {
            o.id: production_events(o, production_order_id=1000 + n, start=start)
            for n, o in enumerate(orders)
        }
        amqp_publish(consumer_vhost, [evs[0] for evs in events.values()])
        consumer = start_consumer(GROUP, env=SERVICE_MODE)
        wait_until(
            lambda: count_in(orders, OrderStatus.IN_PRODUCTION) == len(orders),
            seconds=30,
            what="all in production",
        )
        assert set(map(tuple, histories(orders).values())) == {("placed", "confirmed", "in_production")}

        # The rest of each run, every started event a second time (a redelivery), then a stale stage.
        rest = [e for evs in events.values() for e in evs[1:]]
        stale = [
            stale_stage_event(o, production_order_id=1000 + n, stage="cutting") for n, o in enumerate(orders)
        ]
        amqp_publish(consumer_vhost, rest + [evs[0] for evs in events.values()] + stale)
        handled_total = len(orders) * 6 + len(stale)
        wait_until(
            lambda: consumer.metric("consumer_events_consumed_total", outcome="handled") == handled_total,
            seconds=60,
            what="every production event handled",
        )
        wait_until(
            lambda: consumer.metric("consumer_events_consumed_total", outcome="duplicate") == len(orders),
            seconds=30,
            what="every redelivered started event found handled",
        )

        assert all(history == FULL_HISTORY for history in histories(orders).values()), histories(orders)
        assert set(
            Order.objects.filter(id__in=[o.id for o in orders]).values_list("production_stage", flat=True)
        ) == {"done"}
        assert consumer.metric("consumer_events_consumed_total", outcome="dead_lettered") == 0
        assert CrmInboxEntry.objects.filter(consumer=GROUP).count() == handled_total
        # The customer sees it on the monolith's API.
        shop = requests.Session()
        shop.headers["Authorization"] = f"Bearer {customer_token}"
        for order in orders:
            body = shop.get(f"{stack.base_url}/shop/api/orders/{order.public_id}/", timeout=10).json()
            assert body["status"] == "done"
            assert [h["status"] for h in body["history"]] == FULL_HISTORY
        # Still nothing went the legacy way.
        assert ProductionOrder.objects.count() == 0
        assert not Order.objects.filter(sent_to_mes_at__isnull=False).exists()
        assert len(worker_log_events(stack, "mes.task_ignored")) == 1


def test_kill_9_of_the_status_consumer_mid_stream_finishes_every_order_once(  # type: ignore[no-untyped-def]
    consumer_env, consumer_vhost, start_consumer
) -> None:
    env = {**consumer_env, **SERVICE_MODE}
    customer_token, token, skus = world()
    with ProcessGroup() as group:
        stack = start_legacy_stack(group, env, "production-status-legacy-kill")
        orders = orders_place_and_confirm(
            stack.base_url, customer_token=customer_token, staff_token=token, skus=skus, count=60
        )
    group_topology_declare(consumer_vhost, GROUP, partitions=PARTITIONS)
    start = datetime.now(UTC)
    events = [
        e
        for n, o in enumerate(orders)
        for e in production_events(o, production_order_id=5000 + n, start=start)
    ]
    amqp_publish(consumer_vhost, events)

    slow = {**SERVICE_MODE, "CONSUMER_BATCH_SIZE": "5", "CONSUMER_PREFETCH": "5"}
    first = start_consumer(GROUP, tag="first", env=slow)
    wait_until(
        lambda: first.metric("consumer_events_consumed_total", outcome="handled") >= 30,
        seconds=30,
        interval=0.01,
        what="the first consumer under way",
    )
    first.process.signal(signal.SIGKILL)
    first.process.popen.wait(timeout=10)
    done_at_kill = count_in(orders, OrderStatus.DONE)
    assert done_at_kill < len(orders), "the kill came after the stream: nothing was tested"

    second = start_consumer(GROUP, tag="second", env=SERVICE_MODE)
    wait_until(lambda: count_in(orders, OrderStatus.DONE) == len(orders), seconds=60, what="every order done")
    wait_until(
        lambda: CrmInboxEntry.objects.filter(consumer=GROUP).count() == len(events),
        seconds=30,
        what="every event in the inbox",
    )
    assert all(history == FULL_HISTORY for history in histories(orders).values()), histories(orders)
    assert second.metric("consumer_events_consumed_total", outcome="dead_lettered") == 0
    assert ProductionOrder.objects.count() == 0


def test_beat_schedules_no_poll_in_service_mode() -> None:
    schedule = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from django.conf import settings; "
            "import json; print(json.dumps(settings.CELERY_BEAT_SCHEDULE))",
        ],
        env={
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "ORCHESTRATION_MODE": "polling",
            "MES_PRODUCTION": "service",
            "PATH": "",
        },
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(schedule.stdout) == {}


def test_declared_queues_keep_the_events_of_a_group_not_started_yet(consumer_env, consumer_vhost) -> None:  # type: ignore[no-untyped-def]
    declared = subprocess.run(
        manage_command("consume", GROUP, "--declare-only"),
        env={**consumer_env, **SERVICE_MODE},
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert declared.returncode == 0, declared.stderr
    queues = [f"{GROUP}.p{n}" for n in range(PARTITIONS)]
    assert declared.stdout.split() == ["declared", *queues]
    PricingRuleFactory()
    placed = legacy_order_place(
        customer=CustomerFactory(),
        lines=[OrderLineRequest(sku=ProductFactory().sku, quantity=1)],
        at=datetime.now(UTC),
    )
    order = PlacedOrder(id=placed.id, public_id=str(placed.public_id))
    amqp_publish(consumer_vhost, production_events(order, production_order_id=9, start=datetime.now(UTC)))
    assert sum(amqp_queue_depths(consumer_vhost, queues).values()) == 6
