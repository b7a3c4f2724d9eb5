"""The contract suite's world: the legacy monolith and the shop service, each a real web process
on its own test database, holding the same catalogue and customers.

Legacy is seeded (legacy/seeding.py, as `manage.py seed` does), then the shop tables are copied
into the shop's test database by plain-SQL binary COPY (a stand-in for the data-migration
toolkit's backfill). The shop service prices orders through the monolith's MES quotes API with a
key issued for it. Every test gets `backend`, the base URL of one side, and runs once per side.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.db import connections
from django.utils import timezone

from config.routers import database_alias
from harness.waiting import wait_http_ok
from legacy.seeding import SeedSize, legacy_data_seed
from legacy.shop.models import Customer, Order, Product
from ops.process_group import ManagedProcess, ProcessGroup, free_port, service_process_commands
from tests.conftest import LOG_DIR, LegacyStack
from tests.factories import api_key

# Child tables after their parents: the order COPY and foreign keys need.
SHOP_TABLES = (
    "shop_material",
    "shop_product",
    "shop_product_material",
    "shop_product_option",
    "shop_customer",
    "shop_order",
    "shop_order_line",
    "shop_order_status_history",
)
SEED = SeedSize(products=12, customers=8, orders=60, days=20, notes_percent=0)
SHOP_SERVICE_KEY_NAME = "shop-service"


def shop_tables_copy(*, source: str, target: str, tables: tuple[str, ...] = SHOP_TABLES) -> dict[str, int]:
    """Copies every row of `tables` from one database alias to another by binary COPY (the target's
    rows are replaced), and moves the target's id sequences past the copied ids. Rows per table."""
    copied = {}
    source_connection, target_connection = connections[source], connections[target]
    source_connection.ensure_connection()
    target_connection.ensure_connection()
    with source_connection.cursor() as reader, target_connection.cursor() as writer:
        writer.execute(f"TRUNCATE {', '.join(tables)} CASCADE")
        for table in tables:
            rows = 0
            with (
                reader.cursor.copy(
                    f"COPY (SELECT * FROM {table} ORDER BY id) TO STDOUT (FORMAT binary)"
                ) as out,
                writer.cursor.copy(f"COPY {table} FROM STDIN (FORMAT binary)") as into,
            ):
                for chunk in out:
                    into.write(chunk)
            writer.execute(f"SELECT count(*) FROM {table}")
            rows = writer.fetchone()[0]
            writer.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), COALESCE(max(id), 1), "
                f"max(id) IS NOT NULL) FROM {table}"
            )
            copied[table] = rows
    return copied


@dataclass
class ContractWorld:
    """What the cases talk about; the same rows on both sides."""

    reader_token: str  # a customer with seeded orders who places none in the suite
    reader_id: int
    buyer_token: str  # a customer who places the suite's orders
    buyer_email: str
    product_skus: list[str]  # the active catalogue, in the API's order
    option_product_sku: str  # an active product with at least one option
    option_codes: list[str]
    shop_api_key: str


@pytest.fixture(scope="session")
def contract_world(live_env: dict[str, str], django_db_blocker: Any) -> ContractWorld:
    legacy, shop = database_alias("legacy"), database_alias("shop")
    for alias in (legacy, shop):
        name = connections[alias].settings_dict["NAME"]
        assert name.startswith("test_"), f"refusing to write contract data into {name}"
    with django_db_blocker.unblock():
        legacy_data_seed(size=SEED, now=timezone.now(), random_seed=7, reset=True)
        shop_tables_copy(source=legacy, target=shop)
        key = api_key(name=SHOP_SERVICE_KEY_NAME, raw=f"shop-{secrets.token_urlsafe(24)}")
        customers = list(Customer.objects.order_by("id"))
        with_orders = [c for c in customers if Order.objects.filter(customer=c).exists()]
        reader = with_orders[0]
        buyer = next(c for c in customers if c.id != reader.id)
        products = list(Product.objects.filter(active=True).order_by("sku"))
        optioned = next(p for p in products if p.options.exists())
        world = ContractWorld(
            reader_token=reader.api_token,
            reader_id=reader.id,
            buyer_token=buyer.api_token,
            buyer_email=buyer.email,
            product_skus=[p.sku for p in products],
            option_product_sku=optioned.sku,
            option_codes=sorted(optioned.options.values_list("code", flat=True)),
            shop_api_key=key,
        )
    return world


@dataclass
class ShopService:
    base_url: str
    web: ManagedProcess


def shop_service_start(
    group: ProcessGroup, env: dict[str, str], *, mes_api_url: str, mes_api_key: str, tag: str
) -> ShopService:
    """The shop's web process, as SERVICE_PROCESSES says it runs, with SERVICE=shop."""
    port = free_port()
    command = service_process_commands("shop", port=port)["web"]
    shop_env = {**env, "SERVICE": "shop", "MES_API_URL": mes_api_url, "MES_API_KEY": mes_api_key}
    web = group.start(ManagedProcess("shop-web", command, shop_env, Path(LOG_DIR / f"{tag}-web-{port}.log")))
    base_url = f"http://127.0.0.1:{port}"
    wait_http_ok(f"{base_url}/healthz", seconds=30, process=web.popen)
    return ShopService(base_url=base_url, web=web)


@pytest.fixture(scope="session")
def shop_service(
    legacy_stack: LegacyStack, live_env: dict[str, str], contract_world: ContractWorld, worker_id: str
) -> Iterator[ShopService]:
    with ProcessGroup() as group:
        yield shop_service_start(
            group,
            live_env,
            mes_api_url=legacy_stack.base_url,
            mes_api_key=contract_world.shop_api_key,
            tag=f"contract-shop-{worker_id}",
        )


@pytest.fixture(params=["legacy", "shop"])
def backend(request: pytest.FixtureRequest, contract_world: ContractWorld) -> str:
    """The base URL of one side; every case runs against the monolith and against the shop service."""
    if request.param == "legacy":
        return request.getfixturevalue("legacy_stack").base_url
    return request.getfixturevalue("shop_service").base_url


@pytest.fixture
def both(legacy_stack: LegacyStack, shop_service: ShopService) -> dict[str, str]:
    """Both sides' base URLs, for cases that compare their answers directly."""
    return {"legacy": legacy_stack.base_url, "shop": shop_service.base_url}
