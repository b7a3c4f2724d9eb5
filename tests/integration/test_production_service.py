"""The production service end to end through real processes: the monolith's web (orders placed
through the shop API and confirmed through the CRM API), the legacy CDC engine publishing
shop.order.* from the shared database, and mes_production's consumer group, stage runners, outbox
relay and web process, each started as SERVICE=mes_production commands (mes_production/processes.py).

Every confirmed order gets one production order in the production database, which runs through
its stages to done; its production.* events reach the broker in order and match their schemas,
also when the consumer and the stage runner are each killed with SIGKILL while orders flow."""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from django.db import connection
from django.db.models import Count

import mes_production.consumers  # noqa: F401 (registers the group whose queues this test declares)
from cdc.event_schemas import event_validate
from harness.waiting import wait_http_ok, wait_until
from legacy.shop.models import Order
from mes_production.models import ProductionOrder, ProductionStage
from mes_production.processes import (
    CONSUMER_GROUP,
    mes_production_process_commands,
)
from ops.process_group import ManagedProcess, ProcessGroup, free_port
from tests.cdc_fixtures import (
    CdcProcess,
    EventCollector,
    mes_production_outbox_relay,
)
from tests.consumer_fixtures import LOG_DIR, EngineOrderEvents, StartConsumer
from tests.factories import CustomerFactory, PricingRuleFactory, ProductFactory, staff_token
from tests.integration.test_events_end_to_end import Actors, LegacyApi


class ProductionApi(LegacyApi):
    """The monolith's APIs; orders of one or two lines, with and without options (an empty list
    must reach production.order.started as an empty list)."""

    def place_and_confirm(self, quantity: int) -> int:
        sku = self.actors.product.sku
        lines = [{"sku": sku, "quantity": quantity, "options": []}]
        if quantity % 2:
            lines.append({"sku": sku, "quantity": 1, "options": ["lacquer"]})
        placed = self.shop.post(f"{self.base_url}/shop/api/orders/", json={"lines": lines}, timeout=10)
        assert placed.status_code == 201, placed.text
        order_id = Order.objects.values_list("id", flat=True).get(public_id=placed.json()["id"])
        confirmed = self.crm.post(f"{self.base_url}/crm/api/orders/{order_id}/confirm/", timeout=10)
        assert confirmed.status_code == 200, confirmed.text
        return order_id


pytestmark = [
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True, databases=["default", "production"]),
]

ORDERS = 30
STAGE_SECONDS = 0.3
STAGES = ["queued", "cutting", "assembly", "quality_check", "done"]
PRODUCTION_ENV = {"SERVICE": "mes_production", "CONSUMER_MODULES": "mes_production.consumers"}


@pytest.fixture
def actors() -> Actors:
    PricingRuleFactory()
    return Actors(product=ProductFactory(), customer=CustomerFactory(), staff_token=staff_token())


@pytest.fixture(scope="module")
def production_outbox_relay(
    django_db_setup: None,
    django_db_blocker: Any,
    live_env: dict[str, str],
    amqp_url: str,
    event_collector: EventCollector,
    worker_id: str,
) -> Iterator[CdcProcess]:
    """`manage.py cdc run --outbox --database production --table production_outbox` on a slot of
    this session's own, publishing to the session's vhost (where the event collector listens)."""
    with (
        django_db_blocker.unblock(),
        mes_production_outbox_relay(live_env, amqp_url=amqp_url, worker_id=worker_id, tag="prodobx") as relay,
    ):
        yield relay


class ProductionService:
    """mes_production's web process and stage runner (the consumer is started by start_consumer)."""

    def __init__(self, group: ProcessGroup, env: dict[str, str]) -> None:
        self.group, self.env = group, env
        self.port = free_port()
        self.commands = mes_production_process_commands(port=self.port)
        self.starts: Counter[str] = Counter()

    def start(self, name: str) -> ManagedProcess:
        self.starts[name] += 1
        log = LOG_DIR / f"production-{name}-{self.port}-{self.starts[name]}.log"
        return self.group.start(ManagedProcess(f"production-{name}", self.commands[name], self.env, log))


@pytest.fixture
def production_service(consumer_env: dict[str, str], amqp_url: str) -> Iterator[ProductionService]:
    env = {
        **consumer_env,
        **PRODUCTION_ENV,
        "CDC_AMQP_URL": amqp_url,
        "MES_STAGE_SECONDS": str(STAGE_SECONDS),
    }
    with ProcessGroup() as group:
        yield ProductionService(group, env)


class OrderTraffic(threading.Thread):
    """Places and confirms one order after another through the monolith's APIs."""

    def __init__(self, api: ProductionApi, count: int, pause: float) -> None:
        super().__init__(name="order-traffic", daemon=True)
        self.api, self.count, self.pause = api, count, pause
        self.order_ids: list[int] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for n in range(self.count):
                self.order_ids.append(self.api.place_and_confirm(quantity=1 + n % 3))
                time.sleep(self.pause)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc
        finally:
            connection.close()

    def finish(self) -> list[int]:
        self.join(180)
        assert not self.is_alive(), "the order traffic did not finish"
        assert self.error is None, self.error
        return self.order_ids


def production_orders(order_ids: list[int]) -> int:
    return ProductionOrder.objects.filter(order_id__in=order_ids).count()


def stages_written(order_ids: list[int]) -> int:
    return ProductionStage.objects.filter(production_order__order_id__in=order_ids).count()


def all_done(order_ids: list[int]) -> bool:
    return ProductionOrder.objects.filter(order_id__in=order_ids, status="done").count() == len(order_ids)


def test_confirmed_orders_are_produced_once_despite_kill9_of_consumer_and_stage_runner(
    legacy_stack: Any,
    actors: Actors,
    cdc_engine: Any,
    engine_order_events: EngineOrderEvents,
    start_consumer: StartConsumer,
    production_outbox_relay: CdcProcess,
    production_service: ProductionService,
    event_collector: EventCollector,
) -> None:
    engine_order_events.topology_declare(CONSUMER_GROUP)
    web = production_service.start("web")
    assert web.popen is not None
    base = f"http://127.0.0.1:{production_service.port}"
    wait_http_ok(f"{base}/healthz", seconds=30, process=web.popen)
    assert requests.get(f"{base}/metrics", timeout=5).status_code == 200
    # Internal and event-driven: it serves no API, not even the legacy MES one.
    assert requests.get(f"{base}/mes/api/production-orders/", timeout=5).status_code == 404

    consumer_env = {**PRODUCTION_ENV, **engine_order_events.consumer_env}
    consumer = start_consumer(CONSUMER_GROUP, tag="first", env=consumer_env)
    stages = production_service.start("stages")
    traffic = OrderTraffic(ProductionApi(legacy_stack.base_url, actors), ORDERS, pause=0.15)
    traffic.start()

    # The consumer dies while orders flow, after it started a few production orders.
    wait_until(lambda: production_orders(traffic.order_ids) >= 5, seconds=90, what="production orders")
    consumer.process.signal(signal.SIGKILL)
    assert consumer.process.popen is not None and consumer.process.popen.wait(timeout=10) == -signal.SIGKILL
    started_at_kill = production_orders(traffic.order_ids)
    restarted = start_consumer(CONSUMER_GROUP, tag="second", env=consumer_env)

    # The stage runner dies while it works, after it advanced several stages; still under traffic.
    wait_until(lambda: stages_written(traffic.order_ids) >= started_at_kill + 8, seconds=60, what="stages")
    stages.signal(signal.SIGKILL)
    assert stages.popen is not None and stages.popen.wait(timeout=10) == -signal.SIGKILL
    stages_at_kill = stages_written(traffic.order_ids)
    assert traffic.is_alive() and len(traffic.order_ids) < ORDERS, "both kills land while orders flow"
    time.sleep(2 * STAGE_SECONDS)  # orders fall due while no runner is up
    # Two runners from here on: they share the orders and never move one twice.
    production_service.start("stages")
    production_service.start("stages")

    order_ids = traffic.finish()
    wait_until(lambda: all_done(order_ids), seconds=120, interval=0.2, what=f"all {ORDERS} orders done")

    per_order = dict(
        ProductionOrder.objects.filter(order_id__in=order_ids)
        .values_list("order_id")
        .annotate(n=Count("id"))
        .values_list("order_id", "n")
    )
    assert per_order == {order_id: 1 for order_id in order_ids}, "exactly one production order per order"
    for production in ProductionOrder.objects.filter(order_id__in=order_ids):
        order = Order.objects.prefetch_related("lines__product").get(id=production.order_id)
        assert str(production.order_public_id) == str(order.public_id)
        assert production.lines == [
            {"sku": line.product.sku, "quantity": line.quantity, "options": line.options}
            for line in order.lines.all()
        ]
        assert list(production.stages.order_by("at", "id").values_list("status", flat=True)) == STAGES

    lines_of = dict(ProductionOrder.objects.filter(order_id__in=order_ids).values_list("order_id", "lines"))
    subjects = {f"order:{order_id}" for order_id in order_ids}

    def production_events() -> list[dict[str, Any]]:
        return event_collector.events(
            lambda e: e["type"].startswith("production.order.") and e["subject"] in subjects
        )

    wait_until(
        lambda: len(production_events()) >= 6 * ORDERS,
        seconds=60,
        what="every order's production events relayed",
        process=production_outbox_relay,
    )
    by_order: dict[str, list[dict[str, Any]]] = {}
    for event in production_events():
        event_validate(event)
        by_order.setdefault(event["subject"], []).append(event)
    for subject, published in by_order.items():
        assert [(e["type"], e["data"].get("stage")) for e in published] == [
            ("production.order.started.v1", "queued"),
            ("production.order.stage_changed.v1", "cutting"),
            ("production.order.stage_changed.v1", "assembly"),
            ("production.order.stage_changed.v1", "quality_check"),
            ("production.order.stage_changed.v1", "done"),
            ("production.order.completed.v1", None),
        ], subject
        order_id = int(subject.split(":")[1])
        assert published[0]["data"]["lines"] == lines_of[order_id], subject
    assert set(by_order) == subjects
    assert production_outbox_relay.alive()
    duplicates = restarted.metric("consumer_events_consumed_total", outcome="duplicate")
    print(
        f"production e2e: {ORDERS} orders done; consumer killed after {started_at_kill} production "
        f"orders, stage runner after {stages_at_kill} stages; the restarted consumer skipped "
        f"{duplicates:g} duplicates"
    )
