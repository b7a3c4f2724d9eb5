"""The shop service when the MES cannot price (silent, or not there): the customer gets a clear 503
in the error shape within the timeout, and nothing is stored. The monolith prices in-process, so
this case has no legacy side."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
import requests

from config.routers import database_alias
from ops.process_group import ProcessGroup, free_port
from tests.contract.conftest import ContractWorld, raw_connection, shop_service_start
from tests.contract.test_shop_contract import error_of, page_order, post_order

pytestmark = [pytest.mark.integration, pytest.mark.django_db(databases=["default", "shop"])]


@pytest.fixture(scope="module")
def silent_mes() -> Iterator[str]:
    """A listener that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    listener.close()


@pytest.fixture(scope="module", params=["silent", "absent"])
def shop_without_pricing(
    request: pytest.FixtureRequest, live_env: dict[str, str], contract_world: ContractWorld, silent_mes: str
) -> Iterator[str]:
    mes_url = silent_mes if request.param == "silent" else f"http://127.0.0.1:{free_port()}"
    with ProcessGroup() as group:
        shop = shop_service_start(
            group,
            {**live_env, "MES_API_TIMEOUT": "0.5"},
            mes_api_url=mes_url,
            mes_api_key=contract_world.shop_api_key,
            tag=f"contract-shop-{request.param}-mes",
        )
        yield shop.base_url


def order_count() -> int:
    with raw_connection(database_alias("shop")) as db:
        return db.execute("SELECT count(*) FROM shop_order").fetchone()[0]


def test_an_order_gets_a_503_within_the_timeout_and_nothing_is_stored(
    shop_without_pricing: str, contract_world: ContractWorld
) -> None:
    before = order_count()
    started = time.monotonic()
    response = post_order(
        shop_without_pricing,
        contract_world.buyer_token,
        [{"sku": contract_world.product_skus[0], "quantity": 1}],
    )
    elapsed = time.monotonic() - started
    error = error_of(response, 503)
    assert error["code"] == "pricing_unavailable" and "try again" in error["message"]
    assert response.headers["Retry-After"] == "1"
    assert elapsed < 2.0
    assert order_count() == before


def test_the_order_form_says_so_too(shop_without_pricing: str, contract_world: ContractWorld) -> None:
    before = order_count()
    response = page_order(
        shop_without_pricing,
        {"email": "outage@example.com", "name": "O", "sku": contract_world.product_skus[0], "quantity": "1"},
    )
    assert response.status_code == 503
    assert "Prices cannot be calculated right now" in response.text
    assert order_count() == before


def test_reads_do_not_need_the_mes(shop_without_pricing: str, contract_world: ContractWorld) -> None:
    assert requests.get(f"{shop_without_pricing}/shop/api/products/", timeout=5).status_code == 200
    orders = requests.get(
        f"{shop_without_pricing}/shop/api/orders/",
        headers={"Authorization": f"Bearer {contract_world.reader_token}"},
        timeout=5,
    )
    assert orders.status_code == 200
