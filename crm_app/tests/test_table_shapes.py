"""crm_note in the crm database has legacy's shape column for column (the data-migration toolkit
copies its rows by binary COPY), without the foreign keys to the shop's tables in another database."""

import pytest
from django.db import connections

from config.routers import database_alias

pytestmark = pytest.mark.django_db(databases=["default", "crm"])

COLUMNS = """
    SELECT ordinal_position, column_name, data_type, is_nullable, character_maximum_length,
           numeric_precision, numeric_scale, is_identity
    FROM information_schema.columns
    WHERE table_schema = 'public' AND table_name = 'crm_note'
    ORDER BY ordinal_position
"""
FOREIGN_KEYS = "SELECT conname FROM pg_constraint WHERE conrelid = 'crm_note'::regclass AND contype = 'f'"


def rows(logical_database: str, sql: str) -> list[tuple]:
    with connections[database_alias(logical_database)].cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchall()


def test_crm_note_has_legacy_columns_types_nullability_and_order() -> None:
    legacy, crm = rows("legacy", COLUMNS), rows("crm", COLUMNS)
    assert [row[1] for row in legacy] == ["id", "author", "text", "created_at", "customer_id", "order_id"]
    assert crm == legacy


def test_crm_note_keeps_no_foreign_key_to_the_shops_tables() -> None:
    assert len(rows("legacy", FOREIGN_KEYS)) == 2
    assert rows("crm", FOREIGN_KEYS) == []
