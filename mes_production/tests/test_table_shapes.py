"""mes_production_order and mes_production_stage in the production database have legacy's shape,
column for column and constraint for constraint (the data-migration toolkit copies and syncs them)."""

import pytest
from django.db import connections

from config.routers import database_alias

pytestmark = pytest.mark.django_db(databases=["default", "production"])

COLUMNS = """
    SELECT table_name, ordinal_position, column_name, data_type, is_nullable, character_maximum_length,
           is_identity
    FROM information_schema.columns
    WHERE table_schema = 'public' AND table_name IN ('mes_production_order', 'mes_production_stage')
    ORDER BY table_name, ordinal_position
"""
CONSTRAINTS = """
    SELECT conrelid::regclass::text, contype, pg_get_constraintdef(oid)
    FROM pg_constraint
    WHERE conrelid IN ('mes_production_order'::regclass, 'mes_production_stage'::regclass)
    ORDER BY 1, 2, 3
"""


def rows(logical_database: str, sql: str) -> list[tuple]:
    with connections[database_alias(logical_database)].cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchall()


def test_production_tables_have_legacy_columns_types_nullability_and_order() -> None:
    legacy, production = rows("legacy", COLUMNS), rows("production", COLUMNS)
    assert len(legacy) == 11
    assert production == legacy


def test_production_tables_have_legacy_constraints() -> None:
    legacy, production = rows("legacy", CONSTRAINTS), rows("production", CONSTRAINTS)
    assert ("mes_production_stage", "u", "UNIQUE (production_order_id, status)") in legacy
    assert production == legacy
