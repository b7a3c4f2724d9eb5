"""The shop database's copies of the legacy shop tables have the legacy shape, column for column:
the data-migration toolkit copies rows between them with binary COPY, which needs equal shapes."""

import pytest
from django.db import connections

from config.routers import database_alias

pytestmark = pytest.mark.django_db(databases=["default", "shop"])

MIRRORED_TABLES = (
    "shop_material",
    "shop_product",
    "shop_product_material",
    "shop_product_option",
    "shop_customer",
    "shop_order",
    "shop_order_line",
    "shop_order_status_history",
)

COLUMNS = """
    SELECT table_name, ordinal_position, column_name, data_type, is_nullable,
           character_maximum_length, numeric_precision, numeric_scale, column_default
    FROM information_schema.columns
    WHERE table_schema = 'public' AND table_name = ANY(%s)
    ORDER BY table_name, ordinal_position
"""
# Constraints (primary and foreign keys, uniques) and indexes by name and definition.
CONSTRAINTS = """
    SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)
    FROM pg_constraint WHERE conrelid::regclass::text = ANY(%s) ORDER BY 1, 2
"""
INDEXES = """
    SELECT tablename, indexname, indexdef FROM pg_indexes
    WHERE schemaname = 'public' AND tablename = ANY(%s) ORDER BY 1, 2
"""


def rows(logical_database: str, sql: str) -> list[tuple]:
    with connections[database_alias(logical_database)].cursor() as cursor:
        cursor.execute(sql, [list(MIRRORED_TABLES)])
        return cursor.fetchall()


def differences(legacy: list[tuple], shop: list[tuple]) -> list[str]:
    return [f"legacy only: {row}" for row in legacy if row not in shop] + [
        f"shop only: {row}" for row in shop if row not in legacy
    ]


def test_every_mirrored_table_exists_in_both_databases() -> None:
    for database in ("legacy", "shop"):
        tables = {row[0] for row in rows(database, COLUMNS)}
        assert tables == set(MIRRORED_TABLES), database


def test_columns_have_the_same_names_types_nullability_and_order() -> None:
    legacy, shop = rows("legacy", COLUMNS), rows("shop", COLUMNS)
    assert not differences(legacy, shop)
    assert legacy == shop  # same order too


def test_keys_uniques_and_indexes_are_the_same() -> None:
    assert not differences(rows("legacy", CONSTRAINTS), rows("shop", CONSTRAINTS))
    assert not differences(rows("legacy", INDEXES), rows("shop", INDEXES))
