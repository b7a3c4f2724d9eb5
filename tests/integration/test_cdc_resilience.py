"""At-least-once under failure: the CDC process killed with SIGKILL five times under a steady write
load, and the broker unreachable mid-stream, lose no event; a change read twice carries the same
event id both times (consumers deduplicate on it)."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter, defaultdict
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from harness.waiting import wait_until
from legacy.shop.models import Customer, Product
from legacy.shop.services import OrderLineRequest, order_place
from tests.cdc_fixtures import EventCollector, RunningEngine
from tests.factories import CustomerFactory, PricingRuleFactory, ProductFactory

pytestmark = [
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True, databases=["default", "control"]),
]
ORDER_EVENTS = ("shop.order.created.v1", "shop.order_line.added.v1", "shop.order.placed.v1")


class OrderWriter(threading.Thread):
    """Places one order every `interval` seconds until stopped, like customers would."""

    def __init__(self, customer: Customer, product: Product, interval: float = 0.05) -> None:
        super().__init__(name="order-writer", daemon=True)
        self.customer, self.product, self.interval = customer, product, interval
        self.order_ids: list[int] = []
        self.error: BaseException | None = None
        self._stop_event = threading.Event()

    def run(self) -> None:
        try:
            while not self._stop_event.wait(self.interval):
                order = order_place(
                    customer=self.customer,
                    lines=[OrderLineRequest(sku=self.product.sku, quantity=1)],
                    at=timezone.now(),
                )
                self.order_ids.append(order.id)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc
        finally:
            connection.close()

    def stop(self) -> list[int]:
        self._stop_event.set()
        self.join(30)
        assert self.error is None, self.error
        return self.order_ids


@pytest.fixture
def writer() -> OrderWriter:
    """The write load the engine streams under: one customer's orders, not started yet."""
    PricingRuleFactory()
    return OrderWriter(CustomerFactory(), ProductFactory())


def assert_every_order_published_once_per_id(
    collector: EventCollector, order_ids: list[int], *, since: int
) -> dict[str, Any]:
    """`since`: how many events the session's collector held before these orders were written;
    only later ones count (an order id may repeat one an earlier test had, after a flush)."""
    subjects = {f"order:{order_id}" for order_id in order_ids}

    def of_these_orders() -> list[dict[str, Any]]:
        return [e for e in collector.events()[since:] if e["subject"] in subjects]

    def all_arrived() -> bool:
        seen = {(e["subject"], e["type"]) for e in of_these_orders()}
        return all((s, t) in seen for s in subjects for t in ORDER_EVENTS)

    wait_until(all_arrived, seconds=120, interval=0.5, what=f"events of all {len(order_ids)} orders")
    events = of_these_orders()
    bodies_by_id: dict[str, list[dict[str, Any]]] = defaultdict(list)
    ids_by_change: dict[tuple[str, str], set[str]] = defaultdict(set)
    for event in events:
        bodies_by_id[event["id"]].append(event)
        ids_by_change[(event["subject"], event["type"])].add(event["id"])
    # A redelivered change is the same event: same id, same body.
    for copies in bodies_by_id.values():
        assert all(copy == copies[0] for copy in copies)
    # One change, one id: no change was published under two ids.
    assert all(len(ids) == 1 for ids in ids_by_change.values())
    assert len(bodies_by_id) == len(order_ids) * len(ORDER_EVENTS), Counter(e["type"] for e in events)
    # Per aggregate, the first delivery of each event keeps the change order.
    for subject in subjects:
        first_seen: list[str] = []
        for event in (e for e in events if e["subject"] == subject):
            if event["type"] not in first_seen:
                first_seen.append(event["type"])
        assert first_seen == list(ORDER_EVENTS), subject
    return {"orders": len(order_ids), "events": len(events), "distinct": len(bodies_by_id)}


def test_kill9_five_times_under_write_load_loses_no_event(
    cdc_engine: RunningEngine, event_collector: EventCollector, writer: OrderWriter
) -> None:
    mark = len(event_collector.received)
    writer.start()
    rng = random.Random(4)
    for _ in range(5):
        # Kill while the engine streams: after it published something since its last start.
        event_collector.wait_more(5)
        time.sleep(rng.uniform(0.2, 1.5))
        cdc_engine.cdc.kill9()
        cdc_engine.cdc.start()
    time.sleep(2)
    order_ids = writer.stop()
    figures = assert_every_order_published_once_per_id(event_collector, order_ids, since=mark)
    print("kill -9 x5:", figures)


def test_broker_unreachable_mid_stream_then_back_loses_nothing_and_engine_resumes(
    cdc_engine: RunningEngine, event_collector: EventCollector, writer: OrderWriter
) -> None:
    mark = len(event_collector.received)
    writer.start()
    event_collector.wait_more(10)
    cdc_engine.forwarder.kill9()
    outage_started = len(event_collector.received)
    time.sleep(6)
    # Nothing got through while the broker was unreachable (beyond what was in flight).
    assert len(event_collector.received) - outage_started < 10
    cdc_engine.forwarder.start()
    time.sleep(2)
    order_ids = writer.stop()
    figures = assert_every_order_published_once_per_id(event_collector, order_ids, since=mark)
    assert cdc_engine.cdc.alive(), "the engine process died instead of restarting the engine"
    assert '"event": "cdc.engine_failed"' in cdc_engine.cdc.log_tail()
    print("broker outage:", figures)


def test_sigterm_closes_the_engine_cleanly_so_a_restart_publishes_nothing_twice(
    cdc_engine: RunningEngine, event_collector: EventCollector
) -> None:
    PricingRuleFactory()
    customer, product = CustomerFactory(), ProductFactory()

    def place_orders(count: int) -> list[int]:
        lines = [OrderLineRequest(sku=product.sku, quantity=1)]
        return [order_place(customer=customer, lines=lines, at=timezone.now()).id for _ in range(count)]

    mark = len(event_collector.received)
    before = place_orders(20)
    assert_every_order_published_once_per_id(event_collector, before, since=mark)
    returncode = cdc_engine.cdc.stop()  # SIGTERM: -Xrs leaves it to Python, which closes the engine
    assert returncode == 0, cdc_engine.cdc.log_tail()
    assert '"event": "cdc.engine_stopped"' in cdc_engine.cdc.log_tail()
    during = place_orders(10)  # written while no engine runs: the slot keeps them
    cdc_engine.cdc.start()
    after = place_orders(10)
    assert_every_order_published_once_per_id(event_collector, before + during + after, since=mark)
    subjects = {f"order:{order_id}" for order_id in before + during + after}
    ids = [e["id"] for e in event_collector.events()[mark:] if e["subject"] in subjects]
    assert len(ids) == len(set(ids)), "a clean stop and restart published a change twice"
