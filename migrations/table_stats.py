"""Row counts of a table, cheap when the catalogue knows them (pg_class.reltuples), exact otherwise."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

# Below this estimate a count(*) is cheaper than being wrong about a freshly loaded table.
EXACT_COUNT_BELOW = 200_000


def rows_estimate(cursor: psycopg.Cursor[Any], table: str) -> int:
    """pg_class.reltuples when the table was analysed and is large; count(*) otherwise."""
    cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass", [f'public."{table}"'])
    row = cursor.fetchone()
    estimate = int(row[0]) if row and row[0] is not None else -1
    if estimate >= EXACT_COUNT_BELOW:
        return estimate
    return rows_count(cursor, table)


def rows_count(cursor: psycopg.Cursor[Any], table: str) -> int:
    cursor.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
    row = cursor.fetchone()
    return int(row[0]) if row else 0


def rows_any(cursor: psycopg.Cursor[Any], table: str) -> bool:
    cursor.execute(sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(sql.Identifier(table)))
    row = cursor.fetchone()
    return bool(row and row[0])
