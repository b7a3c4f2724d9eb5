"""Copies whole tables between two databases by binary COPY: how a test puts the same rows on
both sides of a migration before the data-migration toolkit's backfill exists for them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import connections


def _columns(alias: str, table: str) -> list[str]:
    with connections[alias].cursor() as cursor:
        cursor.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'public' "
            "AND table_name = %s ORDER BY ordinal_position",
            [table],
        )
        return [row[0] for row in cursor.fetchall()]


def _one(alias: str, sql: str, params: Sequence[Any]) -> tuple[Any, ...]:
    with connections[alias].cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    assert row is not None
    return tuple(row)


def _sequence_copy(*, source: str, target: str, table: str) -> None:
    """The target's id sequence where the source's is: ids the source reserved (as the legacy seed
    does) are skipped on both sides, so the next row gets the same id on each."""
    (sequence,) = _one(source, "SELECT pg_get_serial_sequence(%s, 'id')", [table])
    last_value, is_called = _one(source, f"SELECT last_value, is_called FROM {sequence}", [])
    _one(target, "SELECT setval(pg_get_serial_sequence(%s, 'id'), %s, %s)", [table, last_value, is_called])


def tables_copy(*, source: str, target: str, tables: tuple[str, ...]) -> dict[str, int]:
    """Replaces the rows of `tables` (parents first) in the `target` connection with the `source`
    connection's, streamed by binary COPY of the target's columns by name, and sets each id
    sequence where the source's is. Rows copied per table."""
    copied = {}
    with connections[target].cursor() as cursor:
        cursor.execute(f"TRUNCATE {', '.join(tables)} CASCADE")
    for table in tables:
        names = _columns(target, table)
        columns = ", ".join(f'"{c}"' for c in names)
        with connections[source].cursor() as reader, connections[target].cursor() as writer:
            with (
                reader.copy(
                    f"COPY (SELECT {columns} FROM {table} ORDER BY 1) TO STDOUT (FORMAT binary)"
                ) as out,
                writer.copy(f"COPY {table} ({columns}) FROM STDIN (FORMAT binary)") as into,
            ):
                for chunk in out:
                    into.write(chunk)
        (copied[table],) = _one(target, f"SELECT count(*) FROM {table}", [])
        if "id" in names:  # authtoken_token is keyed by its key
            _sequence_copy(source=source, target=target, table=table)
    return copied
