"""The pricing service's integration tests' world: its web process(es) started as SERVICE_PROCESSES
says, on the test pricing database, holding the same rules, keys and cost data as the legacy test
database (rules and keys copied by binary COPY, the cost projection filled from the legacy shop's
tables, standing in for the migrations toolkit and the catalogue events)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import psycopg
from django.core.management.color import no_style
from django.core.management.sql import sql_flush
from django.db import connections
from django.utils import timezone

from config.routers import database_alias
from harness.table_copy import tables_copy
from harness.waiting import wait_http_ok
from legacy.seeding import SeedSize, legacy_data_seed
from ops.process_group import ManagedProcess, ProcessGroup, free_port, service_process_commands
from tests.conftest import LOG_DIR
from tests.factories import api_key

RULE_TABLES = ("mes_pricing_rule", "mes_quantity_discount", "mes_api_key")
# Projection table and its columns <- the legacy columns giving them, from the legacy table.
PROJECTION = {
    ("pricing_material", "id, code, unit_cost"): "SELECT id, code, unit_cost FROM shop_material",
    ("pricing_product", "id, sku, labour_minutes, active"): (
        "SELECT id, sku, labour_minutes, active FROM shop_product"
    ),
    ("pricing_product_material", "id, product_id, material_id, quantity"): (
        "SELECT id, product_id, material_id, quantity FROM shop_product_material"
    ),
    (
        "pricing_product_option",
        "id, product_id, code, extra_material_id, extra_material_quantity, extra_labour_minutes",
    ): (
        "SELECT id, product_id, code, extra_material_id, extra_material_quantity, extra_labour_minutes "
        "FROM shop_product_option"
    ),
}


def raw_connection(logical: str) -> psycopg.Connection:
    """An autocommit connection of its own to a test database: what it writes, children see."""
    config = connections[database_alias(logical)].settings_dict
    return psycopg.connect(
        host=config["HOST"],
        port=config["PORT"],
        user=config["USER"],
        password=config.get("PASSWORD") or None,
        dbname=config["NAME"],
        autocommit=True,
    )


def pricing_data_copy() -> None:
    """The pricing database's rules, keys and cost projection, replaced by the legacy database's."""
    for logical in ("legacy", "pricing"):
        name = connections[database_alias(logical)].settings_dict["NAME"]
        assert name.startswith("test_"), f"refusing to write test data into {name}"
    tables_copy(source=database_alias("legacy"), target=database_alias("pricing"), tables=RULE_TABLES)
    with raw_connection("legacy") as legacy, raw_connection("pricing") as pricing:
        pricing.execute(f"TRUNCATE {', '.join(table for table, _ in PROJECTION)}")
        for (table, columns), query in PROJECTION.items():
            with legacy.cursor().copy(f"COPY ({query}) TO STDOUT (FORMAT binary)") as out:
                with pricing.cursor().copy(f"COPY {table} ({columns}) FROM STDIN (FORMAT binary)") as into:
                    for chunk in out:
                        into.write(chunk)


# A catalogue with options and the seed's two rules (one active, with discount tiers); no orders.
SEED = SeedSize(products=12, customers=1, orders=0, days=1, notes_percent=0)


def pricing_world_seed(*, key_name: str, key_raw: str) -> str:
    """Seeds the legacy test database's catalogue and rules, issues a key there, and copies rules,
    keys and cost data into the pricing test database: the same world on both sides. The key."""
    legacy_data_seed(size=SEED, now=timezone.now(), random_seed=11, reset=True)
    key = api_key(name=key_name, raw=key_raw)
    pricing_data_copy()
    return key


def pricing_databases_flush(logical_names: tuple[str, ...] = ("legacy", "pricing")) -> None:
    """Empties these test databases after a module, as the monolith's API tests do (later modules,
    `manage.py seed` ones, expect them empty, and a plan's live slice would outlive its test)."""
    for logical in logical_names:
        connection = connections[database_alias(logical)]
        assert connection.settings_dict["NAME"].startswith("test_"), connection.settings_dict["NAME"]
        connection.ops.execute_sql_flush(sql_flush(no_style(), connection, reset_sequences=False))


@dataclass
class PricingService:
    base_url: str
    web: ManagedProcess


def pricing_web_start(
    group: ProcessGroup, env: dict[str, str], *, tag: str, port: int | None = None
) -> PricingService:
    """The pricing service's web process, as SERVICE_PROCESSES says it runs, with SERVICE=mes_pricing."""
    port = port or free_port()
    command = service_process_commands("mes_pricing", port=port)["web"]
    web = group.start(
        ManagedProcess(
            f"pricing-web-{tag}",
            command,
            {**env, "SERVICE": "mes_pricing"},
            Path(LOG_DIR / f"pricing-{tag}-{port}.log"),
        )
    )
    base_url = f"http://127.0.0.1:{port}"
    wait_http_ok(f"{base_url}/healthz", seconds=30, process=web.popen)
    return PricingService(base_url=base_url, web=web)
