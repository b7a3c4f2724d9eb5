"""Callers of the pricing service over HTTP: the legacy shop with PRICING_API_URL set and the shop
service (shop_app/mes_quotes.py, unchanged, MES_API_URL at mes_pricing) place orders priced by it, to
the cent of the monolith's in-process price; when it is silent or not there, both answer a clear 503
pricing_unavailable within the timeout and store nothing."""

from __future__ import annotations

import secrets
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest
import requests

from config.routers import database_alias
from harness.waiting import wait_http_ok
from ops.process_group import ManagedProcess, ProcessGroup, free_port, service_process_commands
from tests.conftest import LOG_DIR
from tests.contract.conftest import shop_service_start, shop_tables_copy
from tests.integration.pricing_stack import (
    pricing_databases_flush,
    pricing_web_start,
    pricing_world_seed,
    raw_connection,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(databases=["default", "shop", "pricing"])]

TIMEOUT = 0.5  # MES_API_TIMEOUT of the callers when pricing is down


@dataclass
class CallersWorld:
    pricing_url: str
    legacy_shop_key: str  # issued by mes_pricing for the legacy shop
    shop_service_key: str  # the shop service's, moved from legacy with the data
    customer_token: str
    sku: str
    option: str


def legacy_web_start(group: ProcessGroup, env: dict[str, str], *, tag: str) -> str:
    """The monolith's web process, as SERVICE_PROCESSES says it runs."""
    port = free_port()
    command = service_process_commands("legacy", port=port)["web"]
    web = group.start(ManagedProcess(f"legacy-web-{tag}", command, env, Path(LOG_DIR / f"{tag}-{port}.log")))
    base_url = f"http://127.0.0.1:{port}"
    wait_http_ok(f"{base_url}/healthz", seconds=30, process=web.popen)
    return base_url


@pytest.fixture(scope="module")
def callers_world(live_env: dict[str, str], django_db_blocker: object) -> Iterator[CallersWorld]:
    from legacy.shop.models import Customer, ProductOption
    from mes_pricing.services import api_key_issue

    with django_db_blocker.unblock():  # type: ignore[attr-defined]
        shop_key = pricing_world_seed(key_name="shop-service", key_raw=f"shop-{secrets.token_urlsafe(24)}")
        shop_tables_copy(source=database_alias("legacy"), target=database_alias("shop"))
        legacy_shop_key = api_key_issue(name=f"legacy-shop-{secrets.token_hex(4)}").raw
        option = ProductOption.objects.select_related("product").filter(product__active=True).first()
        token = Customer.objects.order_by("id").first().api_token
    with ProcessGroup() as group:
        pricing = pricing_web_start(group, live_env, tag="callers")
        yield CallersWorld(
            pricing_url=pricing.base_url,
            legacy_shop_key=legacy_shop_key,
            shop_service_key=shop_key,
            customer_token=token,
            sku=option.product.sku,
            option=option.code,
        )
    with django_db_blocker.unblock():  # type: ignore[attr-defined]
        pricing_databases_flush(("legacy", "pricing", "shop"))


def post_order(base_url: str, token: str, lines: list[dict]) -> requests.Response:
    return requests.post(
        f"{base_url}/shop/api/orders/",
        json={"lines": lines},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )


def order_count(logical: str) -> int:
    with raw_connection(logical) as db:
        return db.execute("SELECT count(*) FROM shop_order").fetchone()[0]


def quotes_served(pricing_url: str) -> int:
    text = requests.get(f"{pricing_url}/metrics", timeout=5).text
    return sum(
        int(float(line.rsplit(" ", 1)[1]))
        for line in text.splitlines()
        if line.startswith("http_requests_total{") and "quote" in line
    )


def in_process_total(legacy_url: str, key: str, sku: str, quantity: int, options: list[str]) -> str:
    """The monolith's own price (its /mes/api/quotes/ prices in-process whatever PRICING_API_URL says)."""
    response = requests.post(
        f"{legacy_url}/mes/api/quotes/",
        json={"sku": sku, "quantity": quantity, "options": options},
        headers={"X-API-Key": key},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return response.json()["total"]


def test_the_legacy_shop_prices_orders_through_the_pricing_service(
    callers_world: CallersWorld, live_env: dict[str, str]
) -> None:
    world = callers_world
    env = {**live_env, "PRICING_API_URL": world.pricing_url, "PRICING_API_KEY": world.legacy_shop_key}
    with ProcessGroup() as group:
        legacy_url = legacy_web_start(group, env, tag="legacy-http-pricing")
        lines = [
            {"sku": world.sku, "quantity": 7, "options": [world.option]},
            {"sku": world.sku, "quantity": 1},
        ]
        before = quotes_served(world.pricing_url)
        placed = post_order(legacy_url, world.customer_token, lines)
        assert placed.status_code == 201, placed.text
        assert quotes_served(world.pricing_url) - before == 2  # priced over HTTP, one quote per line
        expected = sum(
            Decimal(
                in_process_total(
                    legacy_url, world.shop_service_key, world.sku, line["quantity"], line.get("options", [])
                )
            )
            for line in lines
        )
        assert Decimal(placed.json()["total"]) == expected
        refused = post_order(
            legacy_url, world.customer_token, [{"sku": world.sku, "quantity": 1, "options": ["NOPE"]}]
        )
        assert refused.status_code == 422
        assert refused.json()["error"]["code"] == "unknown_option"
        assert refused.json()["error"]["message"].startswith(
            f"Line 1: Product {world.sku} has no option NOPE."
        )


def test_the_shop_service_prices_through_mes_pricing_unchanged(
    callers_world: CallersWorld, live_env: dict[str, str]
) -> None:
    world = callers_world
    with ProcessGroup() as group:
        shop = shop_service_start(
            group,
            live_env,
            mes_api_url=world.pricing_url,
            mes_api_key=world.shop_service_key,
            tag="shop-via-pricing",
        )
        legacy_url = legacy_web_start(group, live_env, tag="legacy-in-process")
        before = quotes_served(world.pricing_url)
        placed = post_order(shop.base_url, world.customer_token, [{"sku": world.sku, "quantity": 3}])
        assert placed.status_code == 201, placed.text
        assert quotes_served(world.pricing_url) - before == 1
        assert placed.json()["total"] == in_process_total(
            legacy_url, world.shop_service_key, world.sku, 3, []
        )


@pytest.fixture(scope="module", params=["silent", "absent"])
def pricing_down(request: pytest.FixtureRequest) -> Iterator[str]:
    """A pricing URL that accepts connections and never answers, or where nothing listens."""
    if request.param == "absent":
        yield f"http://127.0.0.1:{free_port()}"
        return
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    listener.close()


def assert_quick_503(response: requests.Response, elapsed: float) -> None:
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert error["code"] == "pricing_unavailable" and "try again" in error["message"]
    assert response.headers["Retry-After"] == "1"
    assert elapsed < TIMEOUT + 1.5


def test_pricing_down_gives_a_quick_503_on_both_shops(
    callers_world: CallersWorld, live_env: dict[str, str], pricing_down: str
) -> None:
    world = callers_world
    env = {**live_env, "MES_API_TIMEOUT": str(TIMEOUT)}
    with ProcessGroup() as group:
        legacy_url = legacy_web_start(
            group,
            {**env, "PRICING_API_URL": pricing_down, "PRICING_API_KEY": world.legacy_shop_key},
            tag="legacy-pricing-down",
        )
        shop = shop_service_start(
            group, env, mes_api_url=pricing_down, mes_api_key=world.shop_service_key, tag="shop-pricing-down"
        )
        for base_url, logical in ((legacy_url, "legacy"), (shop.base_url, "shop")):
            before = order_count(logical)
            started = time.monotonic()
            response = post_order(base_url, world.customer_token, [{"sku": world.sku, "quantity": 1}])
            assert_quick_503(response, time.monotonic() - started)
            assert order_count(logical) == before
        # The legacy order form says so too, with a 503.
        session = requests.Session()
        form = session.get(f"{legacy_url}/shop/order/", timeout=10)
        csrf = form.text.split('name="csrfmiddlewaretoken" value="', 1)[1].split('"', 1)[0]
        page = session.post(
            f"{legacy_url}/shop/order/",
            data={
                "email": "down@example.com",
                "name": "D",
                "sku": world.sku,
                "quantity": "1",
                "csrfmiddlewaretoken": csrf,
            },
            allow_redirects=False,
            timeout=10,
        )
        assert page.status_code == 503 and "Prices cannot be calculated right now" in page.text
