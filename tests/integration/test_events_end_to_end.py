"""The polling loop retired, end to end: the monolith's web and worker in ORCHESTRATION_MODE=events
(no scheduler), the real CDC engine (`manage.py cdc run` on the test legacy database) and the
`legacy-orchestration` consumer. Orders placed through the shop API and confirmed through the CRM
API reach `done` with the history they get under polling, also when the CDC process and the
consumer process are each killed with SIGKILL while orders flow."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
from django.db import connection
from django.db.models import Count

from harness.waiting import wait_http_ok, wait_until
from legacy.crm.models import CrmInboxEntry
from legacy.mes.models import ProductionOrder
from legacy.processes import legacy_process_commands
from legacy.shop.models import Customer, Order, OrderStatus, OrderStatusChange, Product
from ops.process_group import ManagedProcess, ProcessGroup, free_port
from tests.cdc_fixtures import EventCollector, RunningEngine
from tests.conftest import start_legacy_polling
from tests.consumer_fixtures import LOG_DIR, EngineOrderEvents, StartConsumer
from tests.event_transport import legacy_order_events
from tests.factories import CustomerFactory, PricingRuleFactory, ProductFactory, staff_token

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

ORDERS = 40
CONFIRMED = "shop.order.confirmed.v1"


@dataclass
class Actors:
    product: Product
    customer: Customer
    staff_token: str


@dataclass
class LegacyApi:
    """The customer and staff sides of one running monolith, over HTTP."""

    base_url: str
    actors: Actors
    shop: requests.Session = field(default_factory=requests.Session)
    crm: requests.Session = field(default_factory=requests.Session)

    def __post_init__(self) -> None:
        self.shop.headers["Authorization"] = f"Bearer {self.actors.customer.api_token}"
        self.crm.headers["Authorization"] = f"Token {self.actors.staff_token}"

    def place_and_confirm(self, quantity: int) -> int:
        line = {"sku": self.actors.product.sku, "quantity": quantity, "options": ["lacquer"]}
        placed = self.shop.post(f"{self.base_url}/shop/api/orders/", json={"lines": [line]}, timeout=10)
        assert placed.status_code == 201, placed.text
        order_id = Order.objects.values_list("id", flat=True).get(public_id=placed.json()["id"])
        confirmed = self.crm.post(f"{self.base_url}/crm/api/orders/{order_id}/confirm/", timeout=10)
        assert confirmed.status_code == 200, confirmed.text
        return order_id

    def shop_view(self, order_id: int) -> dict[str, Any]:
        public_id = Order.objects.values_list("public_id", flat=True).get(id=order_id)
        response = self.shop.get(f"{self.base_url}/shop/api/orders/{public_id}/", timeout=10)
        assert response.status_code == 200, response.text
        return response.json()


def history_of(order_id: int) -> list[tuple[str, str, str]]:
    """The order's status history without times: status, who, note (the shop API shows no actor)."""
    rows = OrderStatusChange.objects.filter(order_id=order_id).order_by("at", "id")
    return list(rows.values_list("status", "actor", "note"))


def all_done(order_ids: list[int]) -> bool:
    return Order.objects.filter(id__in=order_ids, status=OrderStatus.DONE).count() == len(order_ids)


@pytest.fixture
def actors() -> Actors:
    PricingRuleFactory()
    return Actors(product=ProductFactory(), customer=CustomerFactory(), staff_token=staff_token())


@pytest.fixture
def polling_history(
    legacy_stack: Any, live_env: dict[str, str], actors: Actors
) -> list[tuple[str, str, str]]:
    """The history one order gets from the session's monolith under polling; the scheduler runs
    only until that order is done, so it cannot race the events-mode part of the test."""
    beat = start_legacy_polling(live_env)
    try:
        api = LegacyApi(legacy_stack.base_url, actors)
        order_id = api.place_and_confirm(quantity=2)
        wait_until(lambda: all_done([order_id]), seconds=60, what="the polled reference order done")
    finally:
        beat.stop()
    return history_of(order_id)


@pytest.fixture
def events_monolith(consumer_env: dict[str, str], actors: Actors) -> Iterator[LegacyApi]:
    """The monolith's web and Celery worker in events mode, with no scheduler at all."""
    env = {**consumer_env, "ORCHESTRATION_MODE": "events", "LOG_LEVEL": "WARNING"}
    port = free_port()
    commands = legacy_process_commands(port=port)
    with ProcessGroup() as group:
        processes = {
            name: group.start(ManagedProcess(name, commands[name], env, LOG_DIR / f"e2e-{name}-{port}.log"))
            for name in ("web", "worker")
        }
        wait_http_ok(f"http://127.0.0.1:{port}/healthz", seconds=30, process=processes["web"].popen)
        yield LegacyApi(f"http://127.0.0.1:{port}", actors)


class OrderTraffic(threading.Thread):
    """Places and confirms one order after another through the APIs, as customers and staff do."""

    def __init__(self, api: LegacyApi, count: int, pause: float) -> None:
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
        self.join(120)
        assert not self.is_alive(), "the order traffic did not finish"
        assert self.error is None, self.error
        return self.order_ids


def sent_to_mes(order_ids: list[int]) -> int:
    return Order.objects.filter(id__in=order_ids, sent_to_mes_at__isnull=False).count()


def test_orders_reach_done_through_cdc_and_consumer_despite_kill9_of_both(
    polling_history: list[tuple[str, str, str]],
    events_monolith: LegacyApi,
    cdc_engine: RunningEngine,
    engine_order_events: EngineOrderEvents,
    start_consumer: StartConsumer,
) -> None:
    assert polling_history == [
        ("placed", events_monolith.actors.customer.email, ""),
        ("confirmed", "staff", ""),
        ("in_production", "mes", ""),
        ("done", "mes", ""),
    ]
    engine_order_events.topology_declare("legacy-orchestration")
    consumer = start_consumer("legacy-orchestration", tag="first", env=engine_order_events.consumer_env)
    traffic = OrderTraffic(events_monolith, ORDERS, pause=0.3)
    started = time.monotonic()
    traffic.start()

    def confirmations_published() -> int:
        ours = set(traffic.order_ids)
        return len(
            engine_order_events.collector.events(
                lambda e: e["type"] == CONFIRMED and e["data"]["order_id"] in ours
            )
        )

    # The consumer dies while orders flow: after it sent a few of them to the MES.
    wait_until(lambda: sent_to_mes(traffic.order_ids) >= 4, seconds=90, what="the consumer handling")
    consumer.process.signal(signal.SIGKILL)
    assert consumer.process.popen is not None
    assert consumer.process.popen.wait(timeout=10) == -signal.SIGKILL
    sent_at_kill = sent_to_mes(traffic.order_ids)

    # The engine dies while it streams: after it published more confirmations, still under traffic.
    wait_until(lambda: confirmations_published() >= sent_at_kill + 4, seconds=60, what="the engine streaming")
    published_at_kill = confirmations_published()
    cdc_engine.cdc.kill9()
    assert traffic.is_alive() and len(traffic.order_ids) < ORDERS, "both kills land while orders flow"
    cdc_engine.cdc.start()
    restarted = start_consumer("legacy-orchestration", tag="second", env=engine_order_events.consumer_env)

    order_ids = traffic.finish()
    wait_until(lambda: all_done(order_ids), seconds=120, interval=0.5, what=f"all {ORDERS} orders done")
    elapsed = time.monotonic() - started

    for order_id in order_ids:
        view = events_monolith.shop_view(order_id)
        assert view["status"] == "done" and view["production_stage"] == "done", view
        assert [h["status"] for h in view["history"]] == [status for status, _, _ in polling_history]
        assert history_of(order_id) == polling_history, order_id
    per_order = dict(
        ProductionOrder.objects.filter(order_id__in=order_ids)
        .values_list("order_id")
        .annotate(n=Count("id"))
        .values_list("order_id", "n")
    )
    assert per_order == {order_id: 1 for order_id in order_ids}, "exactly one production order per order"
    # The consumer sent every order (no poller ran), once per confirmation event.
    handled = set(
        CrmInboxEntry.objects.filter(consumer="legacy-orchestration", event_type=CONFIRMED).values_list(
            "subject", flat=True
        )
    )
    assert {f"order:{order_id}" for order_id in order_ids} <= handled
    assert cdc_engine.cdc.alive()
    duplicates = restarted.metric("consumer_events_consumed_total", outcome="duplicate")
    print(
        f"e2e: {ORDERS} orders done in {elapsed:.1f} s; CDC killed after {published_at_kill} "
        f"confirmations published, consumer killed after {sent_at_kill} orders sent; the restarted "
        f"consumer skipped {duplicates:g} duplicates"
    )


def test_the_consumer_tests_stand_in_publisher_matches_the_engine(
    cdc_engine: RunningEngine, event_collector: EventCollector, actors: Actors
) -> None:
    """tests.event_transport.legacy_order_events (used by consumer tests that need exact control of
    deliveries) emits what the engine emits for the same order: types, subjects, data fields."""
    from django.utils import timezone

    from legacy.crm.services import order_confirm
    from legacy.shop.services import OrderLineRequest, order_place

    lines = [OrderLineRequest(sku=actors.product.sku, quantity=2, options=["lacquer"])] * 2
    order = order_place(customer=actors.customer, lines=lines, at=timezone.now())
    order_confirm(order_id=order.id, actor="staff", at=timezone.now())
    stand_in = legacy_order_events(Order.objects.get(id=order.id))

    def engine_events() -> list[dict[str, Any]]:
        # The session's collector also holds other producers' events (an outbox relay test's
        # subjects are "order:7xx" too): the legacy engine's carry its source.
        return event_collector.events(
            lambda e: e["subject"] == f"order:{order.id}" and e["source"] == stand_in[0]["source"]
        )

    wait_until(lambda: len(engine_events()) >= len(stand_in), seconds=60, what="the engine's events")
    published = engine_events()

    def shape(events: list[dict[str, Any]]) -> list[tuple[str, str, list[str]]]:
        return [(e["type"], e["subject"], sorted(e["data"])) for e in events]

    assert shape(published) == shape(stand_in)
    for engine_event, stand_in_event in zip(published, stand_in, strict=True):
        for key in ("order_id", "line_id", "sku", "quantity", "options", "actor", "note", "status"):
            if key in stand_in_event["data"]:
                assert engine_event["data"][key] == stand_in_event["data"][key], (engine_event["type"], key)
