"""Issue 9 end to end in events mode with MES_PRODUCTION=service, every part a real process: a
customer orders through the monolith's shop API and staff confirm through its CRM API (legacy web
and worker in service mode); the legacy CDC engine publishes shop.order.confirmed; mes_production's
consumer creates the production order, its stage runner advances it and its outbox relay publishes
production.*; `legacy-production-status` applies them; the customer sees "done" on the API. The
status consumer is killed with SIGKILL while orders flow: every order still ends done exactly once.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.db.models import Count

import legacy.crm.consumers  # noqa: F401 (registers the group whose queues this test declares)
import mes_production.consumers  # noqa: F401 (the same for the production service's group)
from harness.waiting import wait_http_ok, wait_until
from legacy.mes.models import ProductionOrder as LegacyProductionOrder
from legacy.shop.models import Order, OrderStatus
from mes_production.models import ProductionOrder
from mes_production.processes import CONSUMER_GROUP
from ops.process_group import ProcessGroup
from tests.cdc_fixtures import (
    CdcProcess,
    EventCollector,
    mes_production_outbox_relay,
)
from tests.conftest import start_legacy_stack
from tests.consumer_fixtures import EngineOrderEvents, StartConsumer
from tests.factories import CustomerFactory, PricingRuleFactory, ProductFactory, staff_token
from tests.integration.test_events_end_to_end import Actors, LegacyApi
from tests.integration.test_production_service import PRODUCTION_ENV, STAGE_SECONDS, ProductionService

pytestmark = [
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True, databases=["default", "production"]),
]

ORDERS = 20
STATUS_GROUP = "legacy-production-status"
SERVICE_MODE = {"MES_PRODUCTION": "service", "ORCHESTRATION_MODE": "events"}
FULL_HISTORY = ["placed", "confirmed", "in_production", "done"]


@pytest.fixture(scope="module")
def status_outbox_relay(
    django_db_setup: None,
    django_db_blocker: Any,
    live_env: dict[str, str],
    amqp_url: str,
    event_collector: EventCollector,
    worker_id: str,
) -> Iterator[CdcProcess]:
    """mes_production's outbox relay on a slot of this module's own, publishing to the session's vhost."""
    with (
        django_db_blocker.unblock(),
        mes_production_outbox_relay(live_env, amqp_url=amqp_url, worker_id=worker_id, tag="statobx") as relay,
    ):
        yield relay


def histories(order_ids: list[int]) -> dict[int, list[str]]:
    return {
        order_id: list(Order.objects.get(id=order_id).history.values_list("status", flat=True))
        for order_id in order_ids
    }


def done(order_ids: list[int]) -> int:
    return Order.objects.filter(id__in=order_ids, status=OrderStatus.DONE).count()


def test_customer_sees_done_once_with_production_in_the_service(  # type: ignore[no-untyped-def]
    consumer_env,
    amqp_url,
    cdc_engine,
    engine_order_events: EngineOrderEvents,
    start_consumer: StartConsumer,
    status_outbox_relay: CdcProcess,
) -> None:
    PricingRuleFactory()
    actors = Actors(product=ProductFactory(), customer=CustomerFactory(), staff_token=staff_token())
    engine_order_events.topology_declare(CONSUMER_GROUP)
    engine_order_events.topology_declare(STATUS_GROUP)
    with ProcessGroup() as group:
        legacy = start_legacy_stack(group, {**consumer_env, **SERVICE_MODE}, "production-e2e-legacy")
        production = ProductionService(
            group,
            {
                **consumer_env,
                **PRODUCTION_ENV,
                "CDC_AMQP_URL": amqp_url,
                "MES_STAGE_SECONDS": str(STAGE_SECONDS),
            },
        )
        web = production.start("web")
        wait_http_ok(f"http://127.0.0.1:{production.port}/healthz", seconds=30, process=web.popen)
        start_consumer(CONSUMER_GROUP, env={**PRODUCTION_ENV, **engine_order_events.consumer_env})
        production.start("stages")
        status_env = {**SERVICE_MODE, **engine_order_events.consumer_env}
        status = start_consumer(STATUS_GROUP, tag="first", env=status_env)

        api = LegacyApi(legacy.base_url, actors)
        order_ids = [api.place_and_confirm(quantity=1 + n % 3) for n in range(ORDERS // 2)]
        wait_until(lambda: done(order_ids) >= 1, seconds=60, what="a first order done")
        status.process.signal(signal.SIGKILL)
        assert status.process.popen is not None and status.process.popen.wait(timeout=10) == -signal.SIGKILL
        done_at_kill = done(order_ids)
        order_ids += [api.place_and_confirm(quantity=1 + n % 3) for n in range(ORDERS // 2)]
        time.sleep(2 * STAGE_SECONDS)
        start_consumer(STATUS_GROUP, tag="second", env=status_env)
        wait_until(
            lambda: done(order_ids) == ORDERS, seconds=120, interval=0.2, what=f"all {ORDERS} orders done"
        )

        assert done_at_kill < ORDERS
        assert all(history == FULL_HISTORY for history in histories(order_ids).values()), histories(order_ids)
        for order_id in order_ids:
            view = api.shop_view(order_id)
            assert view["status"] == "done" and view["production_stage"] == "done", view
            assert [h["status"] for h in view["history"]] == FULL_HISTORY
        per_order = dict(
            ProductionOrder.objects.filter(order_id__in=order_ids)
            .values("order_id")
            .annotate(n=Count("id"))
            .values_list("order_id", "n")
        )
        assert per_order == {order_id: 1 for order_id in order_ids}, "one production order per order"
        # Nothing took the legacy way: no legacy production order, no order marked sent to the MES.
        assert LegacyProductionOrder.objects.count() == 0
        assert not Order.objects.filter(id__in=order_ids, sent_to_mes_at__isnull=False).exists()
        print(
            f"production status e2e: {ORDERS} orders done once; status consumer killed at {done_at_kill} done"
        )
