"""Retiring the polling loop: the same orders reach the same business result whether the CRM polls
the shared database (ORCHESTRATION_MODE=polling) or consumes the shop.order.confirmed events that
the real CDC engine publishes from the database's WAL (ORCHESTRATION_MODE=events), and in events
mode the polling task does nothing."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.utils import timezone

from harness.waiting import wait_until
from legacy.crm.services import order_confirm
from legacy.crm.tasks import poll_confirmed_orders
from legacy.mes.models import ProductionOrder
from legacy.processes import legacy_process_commands
from legacy.shop.models import Order, OrderStatus
from legacy.shop.services import OrderLineRequest, order_place
from ops.process_group import PROJECT_ROOT, ManagedProcess, ProcessGroup, free_port
from tests.consumer_fixtures import LOG_DIR
from tests.factories import CustomerFactory, PricingRuleFactory, ProductFactory

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

# (product index, quantity, options) per order line; one list per order.
ORDER_SPECS = [
    [(0, 1, [])],
    [(1, 3, ["lacquer"])],
    [(0, 2, ["lacquer"]), (1, 1, [])],
    [(2, 12, [])],
    [(2, 1, ["lacquer"]), (0, 5, []), (1, 2, ["lacquer"])],
]


def confirmed_orders(products: list, customer) -> list[Order]:  # type: ignore[no-untyped-def, type-arg]
    orders = []
    for spec in ORDER_SPECS:
        lines = [OrderLineRequest(sku=products[i].sku, quantity=q, options=o) for i, q, o in spec]
        order = order_place(customer=customer, lines=lines, at=timezone.now())
        orders.append(order_confirm(order_id=order.id, actor="staff", at=timezone.now()))
    return orders


def business_result(orders: list[Order]) -> list[dict]:  # type: ignore[type-arg]
    """What the business sees of each order, without ids and times."""
    result = []
    for order in orders:
        order = Order.objects.get(id=order.id)
        production = ProductionOrder.objects.get(order_id=order.id)
        result.append(
            {
                "status": order.status,
                "history": [h.status for h in order.history.all()],
                "production_stage": order.production_stage,
                "sent_to_mes": order.sent_to_mes_at is not None,
                "production_lines": production.lines,
                "production_public_id_matches": production.order_public_id == order.public_id,
                "production_stages": [s.status for s in production.stages.all()],
            }
        )
    return result


def all_done(orders: list[Order]) -> bool:
    return Order.objects.filter(id__in=[o.id for o in orders], status=OrderStatus.DONE).count() == len(orders)


def start_legacy_workers(group: ProcessGroup, env: dict[str, str], mode: str) -> None:
    """The monolith's Celery worker (CRM and MES tasks) and beat (the polling schedule)."""
    commands = legacy_process_commands(port=free_port())
    for name in ("worker", "beat"):
        log_path = Path(LOG_DIR / f"orchestration-{mode}-{name}-{time.monotonic_ns()}.log")
        group.start(ManagedProcess(name, commands[name], {**env, "ORCHESTRATION_MODE": mode}, log_path))


def test_polling_and_events_modes_reach_the_same_business_result(  # type: ignore[no-untyped-def]
    consumer_env, start_consumer, engine_order_events
) -> None:
    PricingRuleFactory()
    products = [ProductFactory() for _ in range(3)]
    customer = CustomerFactory()
    poll_interval = float(consumer_env["CRM_POLL_INTERVAL_SECONDS"])

    with ProcessGroup() as polling:
        start_legacy_workers(polling, consumer_env, "polling")
        polled = confirmed_orders(products, customer)
        wait_until(lambda: all_done(polled), seconds=60, what="every polled order done")
    # The real CDC engine publishes the polled orders' events too: only once they are out do the
    # events-mode queues exist, so that the events consumer sees the evented orders alone.
    engine_order_events.wait_published(polled, event_type="shop.order.confirmed.v1")

    engine_order_events.topology_declare("legacy-orchestration")
    with ProcessGroup() as events:
        start_legacy_workers(events, consumer_env, "events")
        evented = confirmed_orders(products, customer)
        engine_order_events.wait_published(evented, event_type="shop.order.confirmed.v1")
        time.sleep(4 * poll_interval + 2)  # beat and worker are up: a poll would have sent them by now
        assert not Order.objects.filter(id__in=[o.id for o in evented], sent_to_mes_at__isnull=False).exists()

        consumer = start_consumer("legacy-orchestration", env=engine_order_events.consumer_env)
        wait_until(lambda: all_done(evented), seconds=60, what="every order done in events mode")
        assert consumer.metric("consumer_events_consumed_total", outcome="handled") == len(ORDER_SPECS)

    assert business_result(evented) == business_result(polled)
    assert business_result(evented)[0]["history"] == ["placed", "confirmed", "in_production", "done"]
    assert ProductionOrder.objects.count() == 2 * len(ORDER_SPECS)


def test_polling_task_does_nothing_in_events_mode(settings) -> None:  # type: ignore[no-untyped-def]
    settings.ORCHESTRATION_MODE = "events"
    PricingRuleFactory()
    (order,) = confirmed_orders([ProductFactory() for _ in range(3)], CustomerFactory())[:1]

    assert poll_confirmed_orders() == 0
    assert Order.objects.get(id=order.id).sent_to_mes_at is None
    schedule = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from django.conf import settings; "
            "import json; print(json.dumps(settings.CELERY_BEAT_SCHEDULE))",
        ],
        env={"DJANGO_SETTINGS_MODULE": "config.settings", "ORCHESTRATION_MODE": "events", "PATH": ""},
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(schedule.stdout) == {}, "beat schedules nothing in events mode"
