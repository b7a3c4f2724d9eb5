"""Issue 9, the MES split end to end in events mode through the strangler proxy, every part a real
process started as the README starts it: the monolith's web and worker (MES_PRODUCTION=service,
PRICING_API_URL at the PROXY, so its quotes follow the pricing slice), the legacy CDC capture of
orders and the catalogue capture, mes_pricing (web and catalogue consumer), mes_production
(consumer, stage runner, outbox relay), the `legacy-production-status` consumer, and the proxy
with the repository's plan loaded and the pricing slice live.

Two customers order at once and staff confirm each order through the proxy, at a steady rate.
Along the way the production consumer and the pricing service are each killed with SIGKILL and
started again: while pricing is down customers get a quick 503 pricing_unavailable (never a hang,
never a price other than the monolith's) and retry; every order accepted with a 201 reaches done
exactly once (one production order, one stage row per stage, one shop history row per status,
"done" on the customer API). No quote takes the legacy way through the proxy, and
mes_production's routes are refused to outside callers through the proxy.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from io import StringIO

import pytest
import requests
from django.core.management import call_command
from django.db import connection
from django.db.models import Count

import legacy.crm.consumers  # noqa: F401 (registers the groups whose queues this test declares)
import mes_pricing.catalogue.consumers  # noqa: F401
import mes_production.consumers  # noqa: F401
from config.routers import database_alias
from harness.percentiles import percentile
from harness.table_copy import tables_copy
from harness.waiting import wait_http_ok, wait_until
from legacy.mes.models import ProductionOrder as LegacyProductionOrder
from legacy.shop import catalogue_events
from legacy.shop.models import Order, OrderStatus, OrderStatusChange
from mes_pricing.catalogue.models import CostProduct, CostProductOption
from mes_pricing.catalogue.processes import CONSUMER_GROUP as CATALOGUE_GROUP
from mes_production.models import ProductionOrder, ProductionStage
from mes_production.processes import CONSUMER_GROUP as PRODUCTION_GROUP
from ops.process_group import ManagedProcess, ProcessGroup, free_port, manage_command
from tests.cdc_fixtures import CdcProcess, cdc_child_env, engine_process, unique_name
from tests.conftest import start_legacy_stack
from tests.consumer_fixtures import EngineOrderEvents, StartConsumer
from tests.factories import CustomerFactory, PricingRuleFactory, ProductFactory, api_key, staff_token
from tests.integration.pricing_stack import RULE_TABLES, pricing_web_start
from tests.integration.proxy_stack import INTERNAL_TOKEN, as_the_readme_says, proxy_caught_up, proxy_start
from tests.integration.test_production_service import (
    PRODUCTION_ENV,
    ProductionService,
    production_outbox_relay,  # noqa: F401 (fixture: mes_production's outbox relay on a slot of its own)
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True, databases=["default", "production", "pricing", "control"]),
]

ORDERS = 40
CUSTOMERS = 2  # each orders ORDERS / CUSTOMERS, at the same time as the other
PAUSE = 0.3  # between one customer's orders: a steady rate of a few orders a second
STAGE_SECONDS = 0.3
PRICING_TIMEOUT = 1.0  # MES_API_TIMEOUT of the monolith's pricing client
ATTEMPTS = 30  # a customer's tries at one order before the test gives up on pricing coming back
STATUS_GROUP = "legacy-production-status"
SERVICE_MODE = {"MES_PRODUCTION": "service", "ORCHESTRATION_MODE": "events"}
PRICING_CONSUMER = {"SERVICE": "mes_pricing", "CONSUMER_MODULES": "mes_pricing.catalogue.consumers"}
FULL_HISTORY = ["placed", "confirmed", "in_production", "done"]
STAGES = ["queued", "cutting", "assembly", "quality_check", "done"]
OPTIONS = ["lacquer"]


@dataclass
class Refusal:
    status: int
    code: str
    retry_after: str | None
    seconds: float


@dataclass(eq=False)  # a thread must stay hashable
class Customers(threading.Thread):
    """A customer ordering and staff confirming each order, through the proxy, one after another.
    A 503 is retried after its Retry-After; anything else but 201 (or 200 on confirm) is an error."""

    proxy_url: str
    customer_token: str
    staff_token: str
    sku: str
    count: int
    placed: list[tuple[int, str, int, Decimal]] = field(default_factory=list)  # id, public id, qty, total
    refusals: list[Refusal] = field(default_factory=list)
    error: BaseException | None = None

    def __post_init__(self) -> None:
        super().__init__(name=f"customer-{self.customer_token[:6]}", daemon=True)
        self.shop, self.crm = requests.Session(), requests.Session()
        self.shop.headers["Authorization"] = f"Bearer {self.customer_token}"
        self.crm.headers["Authorization"] = f"Token {self.staff_token}"

    def place(self, quantity: int) -> tuple[str, Decimal]:
        line = {"sku": self.sku, "quantity": quantity, "options": OPTIONS}
        for _ in range(ATTEMPTS):
            started = time.monotonic()
            placed = self.shop.post(f"{self.proxy_url}/shop/api/orders/", json={"lines": [line]}, timeout=15)
            seconds = time.monotonic() - started
            if placed.status_code == 201:
                return placed.json()["id"], Decimal(placed.json()["total"])
            assert placed.status_code == 503, placed.text
            retry_after = placed.headers.get("Retry-After")
            self.refusals.append(Refusal(503, placed.json()["error"]["code"], retry_after, seconds))
            time.sleep(float(retry_after or 1))
        raise AssertionError(f"no order placed in {ATTEMPTS} attempts: {self.refusals[-3:]}")

    def run(self) -> None:
        try:
            for n in range(self.count):
                quantity = 1 + n % 3
                public_id, total = self.place(quantity)
                order_id = Order.objects.values_list("id", flat=True).get(public_id=public_id)
                confirmed = self.crm.post(f"{self.proxy_url}/crm/api/orders/{order_id}/confirm/", timeout=15)
                assert confirmed.status_code == 200, confirmed.text
                self.placed.append((order_id, public_id, quantity, total))
                time.sleep(PAUSE)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc
        finally:
            connection.close()

    def finish(self) -> None:
        self.join(150)
        assert not self.is_alive(), f"{self.name} did not finish"
        assert self.error is None, repr(self.error)


@dataclass
class Crowd:
    """Several customers ordering at once."""

    members: list[Customers]

    def start(self) -> None:
        for member in self.members:
            member.start()

    def finish(self) -> None:
        for member in self.members:
            member.finish()

    @property
    def placed(self) -> list[tuple[int, str, int, Decimal]]:
        return [order for member in self.members for order in list(member.placed)]

    @property
    def order_ids(self) -> list[int]:
        return [order_id for order_id, *_ in self.placed]

    @property
    def refusals(self) -> list[Refusal]:
        return [refusal for member in self.members for refusal in list(member.refusals)]


def plan_load(env: dict[str, str], backends: dict[str, str]) -> None:
    """`manage.py strangler load-plan` with no path: the repository's plan, backends from the env."""
    loaded = subprocess.run(
        manage_command("strangler", "load-plan", "--why", "the MES split end to end"),
        env={**os.environ, **as_the_readme_says(env), **backends},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert loaded.returncode == 0, loaded.stderr


def slice_live(name: str) -> None:
    """The operator's promotions to live. --force: nothing is synced here (the pricing tables were
    copied beforehand and take no writes; production's tables are the new service's own)."""
    for _ in ("syncing", "shadow", "canary", "live"):
        call_command(
            "strangler",
            "promote",
            name,
            "--force",
            "--who",
            "e2e",
            "--why",
            "MES split e2e",
            stdout=StringIO(),
        )


def in_process_total(legacy_url: str, key: str, sku: str, quantity: int) -> Decimal:
    """The monolith's own price, asked of it directly (its /mes/api/quotes/ prices in-process)."""
    response = requests.post(
        f"{legacy_url}/mes/api/quotes/",
        json={"sku": sku, "quantity": quantity, "options": OPTIONS},
        headers={"X-API-Key": key},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return Decimal(response.json()["total"])


def quotes_served(pricing_url: str) -> int:
    text = requests.get(f"{pricing_url}/metrics", timeout=5).text
    return sum(
        int(float(line.rsplit(" ", 1)[1]))
        for line in text.splitlines()
        if line.startswith("http_requests_total{") and "quote" in line
    )


def done(order_ids: list[int]) -> int:
    return Order.objects.filter(id__in=order_ids, status=OrderStatus.DONE).count()


def production_orders(order_ids: list[int]) -> int:
    return ProductionOrder.objects.filter(order_id__in=order_ids).count()


def kill9(process: ManagedProcess) -> None:
    process.signal(signal.SIGKILL)
    assert process.popen is not None and process.popen.wait(timeout=10) == -signal.SIGKILL


@pytest.fixture
def catalogue_capture(
    live_env: dict[str, str], worker_id: str, engine_order_events: EngineOrderEvents
) -> Iterator[CdcProcess]:
    """`SERVICE=cdc manage.py cdc run --capture catalogue` on a slot of this test's own, its
    consumer group's queues declared first (they keep its events until the consumer starts)."""
    from cdc.captures import capture_engine_config, capture_load
    from harness.engine_slot import engine_on_slot

    engine_order_events.topology_declare(CATALOGUE_GROUP)
    base = capture_engine_config(capture_load(catalogue_events.CAPTURE_NAME))
    config = engine_on_slot(base, slot=unique_name(worker_id, "e2ecat"))
    env = cdc_child_env(live_env, config)
    with engine_process(config, env, tag="e2e-catalogue", args=("--capture", "catalogue")) as engine:
        yield engine


def test_every_order_is_done_once_through_the_proxy_despite_kill9_of_production_and_pricing(  # type: ignore[no-untyped-def]
    live_env,
    consumer_env,
    amqp_url,
    cdc_engine,
    engine_order_events: EngineOrderEvents,
    start_consumer: StartConsumer,
    production_outbox_relay: CdcProcess,  # noqa: F811
    catalogue_capture: CdcProcess,
) -> None:
    began = time.monotonic()
    # The monolith's world: a product with options, an active rule, customers, staff, and the key
    # the legacy shop presents to the pricing service. Rules and keys are the pricing slice's tables:
    # copied to the pricing database as the toolkit's backfill would; the cost data comes from the
    # catalogue capture through the pricing service's consumer.
    PricingRuleFactory()
    product = ProductFactory()
    people = [CustomerFactory() for _ in range(CUSTOMERS)]
    shop_key = api_key(name="legacy-shop", raw=f"legacy-shop-{secrets.token_urlsafe(24)}")
    tables_copy(source=database_alias("legacy"), target=database_alias("pricing"), tables=RULE_TABLES)
    for group_name in (PRODUCTION_GROUP, STATUS_GROUP):
        engine_order_events.topology_declare(group_name)

    with ProcessGroup() as group:
        catalogue_consumer = start_consumer(
            CATALOGUE_GROUP, tag="pricing", env={**PRICING_CONSUMER, "CDC_AMQP_URL": amqp_url}
        )
        proxy, proxy_url = proxy_start(group, live_env, "mes-split", {"STRANGLER_READ_TIMEOUT": "15"})
        pricing_port = free_port()
        pricing = pricing_web_start(group, live_env, tag="e2e-1", port=pricing_port)
        production = ProductionService(
            group,
            {
                **consumer_env,
                **PRODUCTION_ENV,
                "CDC_AMQP_URL": amqp_url,
                "MES_STAGE_SECONDS": str(STAGE_SECONDS),
            },
        )
        production_web = production.start("web")
        wait_http_ok(f"http://127.0.0.1:{production.port}/healthz", seconds=30, process=production_web.popen)
        legacy_env = {
            **consumer_env,
            **SERVICE_MODE,
            "PRICING_API_URL": proxy_url,
            "PRICING_API_KEY": shop_key,
            "MES_API_TIMEOUT": str(PRICING_TIMEOUT),
        }
        legacy = start_legacy_stack(group, legacy_env, "mes-split-legacy")
        plan_load(
            live_env,
            {
                "LEGACY_URL": legacy.base_url,
                "MES_PRICING_URL": pricing.base_url,
                "MES_PRODUCTION_URL": f"http://127.0.0.1:{production.port}",
            },
        )
        proxy_caught_up(proxy_url)
        expected = {q: in_process_total(legacy.base_url, shop_key, product.sku, q) for q in (1, 2, 3)}
        # Before the pricing slice is live the proxy sends the shop's quote back to the monolith.
        early = requests.post(
            f"{proxy_url}/shop/api/orders/",
            json={"lines": [{"sku": product.sku, "quantity": 2, "options": OPTIONS}]},
            headers={"Authorization": f"Bearer {CustomerFactory().api_token}"},
            timeout=15,
        )
        assert early.status_code == 201, early.text
        assert Decimal(early.json()["total"]) == expected[2]
        assert quotes_served(legacy.base_url) == len(expected) + 1
        assert quotes_served(pricing.base_url) == 0
        slice_live("pricing")
        slice_live("production")
        proxy_caught_up(proxy_url)
        # Through the proxy the pricing service answers quotes; mes_production is closed to outsiders.
        for method in ("GET", "POST"):
            outside = requests.request(method, f"{proxy_url}/production/orders/", json={}, timeout=5)
            assert outside.status_code == 403, outside.text
            assert outside.json()["error"]["code"] == "internal_route"
        inside = requests.get(
            f"{proxy_url}/production/orders/",
            headers={"X-Strangler-Internal-Token": INTERNAL_TOKEN},
            timeout=5,
        )
        assert inside.status_code == 404 and inside.json()["error"]["code"] == "not_found", inside.text

        consumer = start_consumer(
            PRODUCTION_GROUP, tag="first", env={**PRODUCTION_ENV, "CDC_AMQP_URL": amqp_url}
        )
        production.start("stages")
        status_consumer = start_consumer(STATUS_GROUP, env={**SERVICE_MODE, "CDC_AMQP_URL": amqp_url})
        # The catalogue capture (a JVM, started with the test) has announced the product by now.
        wait_until(
            lambda: (
                CostProductOption.objects.filter(product_id=product.id).exists()
                and CostProduct.objects.filter(id=product.id).exists()
            ),
            seconds=90,
            what="the product's costs in the pricing projection",
            process=catalogue_capture.process,
        )
        served_before = quotes_served(pricing.base_url)
        print(f"\nstack up in {time.monotonic() - began:.1f} s")

        staff = staff_token()
        customers = Crowd(
            [Customers(proxy_url, c.api_token, staff, product.sku, ORDERS // CUSTOMERS) for c in people]
        )
        traffic_began = time.monotonic()
        customers.start()
        # kill -9 of the pricing service while customers order. Customers refused meanwhile retry
        # after Retry-After, so orders cannot run out before it is back.
        wait_until(
            lambda: len(customers.placed) >= ORDERS // 4, seconds=60, what="a quarter of the orders placed"
        )
        served_by_first = quotes_served(pricing.base_url) - served_before
        kill9(pricing.web)
        pricing_down_at = time.monotonic()
        wait_until(  # every customer refused, and refused again on retrying
            lambda: all(len(member.refusals) >= 2 for member in customers.members),
            seconds=20,
            what="customers refused while pricing is down",
        )
        pricing = pricing_web_start(group, live_env, tag="e2e-2", port=pricing_port)
        pricing_down_seconds = time.monotonic() - pricing_down_at
        # kill -9 of the production consumer while orders still flow.
        wait_until(
            lambda: production_orders(customers.order_ids) >= ORDERS // 2,
            seconds=60,
            what="production orders",
        )
        kill9(consumer.process)
        placed_at_consumer_kill = len(customers.placed)
        done_at_consumer_kill = done(customers.order_ids)
        time.sleep(1.0)
        consumer = start_consumer(
            PRODUCTION_GROUP, tag="second", env={**PRODUCTION_ENV, "CDC_AMQP_URL": amqp_url}
        )
        customers.finish()
        order_ids = customers.order_ids
        wait_until(
            lambda: done(order_ids) == ORDERS, seconds=90, interval=0.2, what=f"all {ORDERS} orders done"
        )
        traffic_seconds = time.monotonic() - traffic_began

        # Priced by the pricing service, to the cent of the monolith's price, before and after its restart.
        assert served_by_first >= ORDERS // 4
        assert quotes_served(pricing.base_url) >= 1
        # Once the slice is live no quote takes the legacy way: the monolith answered no more of them.
        assert quotes_served(legacy.base_url) == len(expected) + 1
        assert all(total == expected[quantity] for _, _, quantity, total in customers.placed), (
            customers.placed
        )
        # While pricing was down: clear, quick refusals, and nothing stored for them.
        refusals = customers.refusals
        assert len(refusals) >= 2 * CUSTOMERS
        assert {(r.status, r.code, r.retry_after) for r in refusals} == {(503, "pricing_unavailable", "1")}
        assert max(r.seconds for r in refusals) < PRICING_TIMEOUT + 1.5, refusals
        assert Order.objects.filter(customer__in=people).count() == ORDERS
        # Exactly once, everywhere.
        per_order = dict(
            ProductionOrder.objects.filter(order_id__in=order_ids)
            .values("order_id")
            .annotate(n=Count("id"))
            .values_list("order_id", "n")
        )
        assert per_order == {order_id: 1 for order_id in order_ids}, "one production order per order"
        for production_order in ProductionOrder.objects.filter(order_id__in=order_ids):
            stages = list(
                ProductionStage.objects.filter(production_order=production_order).values_list(
                    "status", flat=True
                )
            )
            assert sorted(stages) == sorted(STAGES) and production_order.status == "done", (
                production_order,
                stages,
            )
        for member in customers.members:  # each customer sees their orders done, through the proxy
            for order_id, public_id, _, _ in member.placed:
                history = list(
                    OrderStatusChange.objects.filter(order_id=order_id)
                    .order_by("at", "id")
                    .values_list("status", flat=True)
                )
                assert history == FULL_HISTORY, (order_id, history)
                view = member.shop.get(f"{proxy_url}/shop/api/orders/{public_id}/", timeout=10)
                assert view.status_code == 200, view.text
                assert view.json()["status"] == "done", view.json()
                assert view.json()["production_stage"] == "done", view.json()
        assert placed_at_consumer_kill < ORDERS, "the consumer was killed after the last order"
        for each in (catalogue_consumer, consumer, status_consumer):
            assert each.metric("consumer_events_consumed_total", outcome="dead_lettered") == 0
        # Nothing took the legacy way.
        assert LegacyProductionOrder.objects.count() == 0
        assert not Order.objects.filter(id__in=order_ids, sent_to_mes_at__isnull=False).exists()

        # Time to done from the shop's own history (one clock: the database's).
        changes = [
            dict(OrderStatusChange.objects.filter(order_id=order_id).values_list("status", "at"))
            for order_id in order_ids
        ]
        placed_to_done = [(c["done"] - c["placed"]).total_seconds() for c in changes]
        confirmed_to_done = [(c["done"] - c["confirmed"]).total_seconds() for c in changes]
        print(
            f"MES split e2e: {ORDERS} orders done once in {traffic_seconds:.1f} s of traffic; "
            f"pricing down {pricing_down_seconds:.1f} s: {len(refusals)} x 503 pricing_unavailable "
            f"(slowest {max(r.seconds for r in refusals):.2f} s); "
            f"production consumer killed at {placed_at_consumer_kill} placed, {done_at_consumer_kill} done; "
            f"placed to done p50 {percentile(placed_to_done, 0.5):.2f} s, "
            f"p99 {percentile(placed_to_done, 0.99):.2f} s; "
            f"confirmed to done p50 {percentile(confirmed_to_done, 0.5):.2f} s, "
            f"p99 {percentile(confirmed_to_done, 0.99):.2f} s; "
            f"whole test {time.monotonic() - began:.1f} s"
        )
        assert proxy.alive()
