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

import psycopg
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


def raw_connection(alias: str) -> psycopg.Connection:
    """A connection of its own to the database behind `alias`, outside any test transaction: what
    it commits, the processes under test see."""
    config = connections[alias].settings_dict
    return psycopg.connect(
        host=config["HOST"],
        port=config["PORT"],
        user=config["USER"],
        password=config.get("PASSWORD") or None,
        dbname=config["NAME"],
    )


def rows_copy(*, source: str, target: str, where: dict[str, str], replace: bool = False) -> dict[str, int]:
    """Copies the rows `where[table]` selects (tables parents first) from one database alias to
    another by binary COPY, in one target transaction; with `replace`, the target's rows of those
    tables are deleted first. Rows copied per table."""
    copied = {}
    with raw_connection(source) as reader_db, raw_connection(target) as writer_db:
        reader, writer = reader_db.cursor(), writer_db.cursor()
        if replace:
            writer.execute(f"TRUNCATE {', '.join(where)} CASCADE")
        for table, condition in where.items():
            with (
                reader.copy(
                    f"COPY (SELECT * FROM {table} WHERE {condition} ORDER BY id) TO STDOUT (FORMAT binary)"
                ) as out,
                writer.copy(f"COPY {table} FROM STDIN (FORMAT binary)") as into,
            ):
                for chunk in out:
                    into.write(chunk)
            copied[table] = writer.rowcount
    return copied


def sequences_past(*, source: str, target: str, gap: int = 0, tables: tuple[str, ...] = SHOP_TABLES) -> None:
    """Moves `target`'s id sequences of `tables` past the largest id in either database (plus `gap`)."""
    with raw_connection(source) as source_db, raw_connection(target) as target_db:
        for table in tables:
            highest = source_db.execute(f"SELECT COALESCE(max(id), 0) FROM {table}").fetchone()[0]
            target_db.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"GREATEST((SELECT COALESCE(max(id), 0) FROM {table}), %s, 1) + %s)",
                [highest, gap],
            )


def shop_tables_copy(*, source: str, target: str) -> dict[str, int]:
    """Replaces the target's shop tables with the source's rows and moves its id sequences past
    them (a stand-in for the data-migration toolkit's backfill)."""
    copied = rows_copy(source=source, target=target, where=dict.fromkeys(SHOP_TABLES, "true"), replace=True)
    sequences_past(source=source, target=target)
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
