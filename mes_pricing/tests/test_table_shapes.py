"""The pricing database's copies of the legacy MES pricing tables have the legacy shape, column for
column, with the same keys, uniques and indexes: the data-migration toolkit copies their rows by
binary COPY and keeps them in step with CDC, which needs equal shapes."""

import pytest
from django.db import connections

from config.routers import database_alias

pytestmark = pytest.mark.django_db(databases=["default", "pricing"])

MIRRORED_TABLES = ("mes_pricing_rule", "mes_quantity_discount", "mes_api_key")

COLUMNS = """
    SELECT table_name, ordinal_position, column_name, data_type, is_nullable,
           character_maximum_length, numeric_precision, numeric_scale, column_default
    FROM information_schema.columns
    WHERE table_schema = 'public' AND table_name = ANY(%s)
    ORDER BY table_name, ordinal_position
"""
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


def test_every_mirrored_table_exists_in_both_databases() -> None:
    for database in ("legacy", "pricing"):
        assert {row[0] for row in rows(database, COLUMNS)} == set(MIRRORED_TABLES), database


def test_columns_have_the_same_names_types_nullability_and_order() -> None:
    assert rows("legacy", COLUMNS) == rows("pricing", COLUMNS)


def test_keys_uniques_and_indexes_are_the_same() -> None:
    assert rows("legacy", CONSTRAINTS) == rows("pricing", CONSTRAINTS)
    assert rows("legacy", INDEXES) == rows("pricing", INDEXES)
