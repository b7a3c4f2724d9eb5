"""Plain psycopg connections to a database of settings.DATABASES, for the work Django's ORM is not
made for (binary COPY between two databases, checksums over whole tables).

Every session formats values the same way (UTC, ISO dates, shortest exact floats), so a row turned
into text reads the same on both sides whatever the server's or the user's defaults say.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import psycopg
from django.conf import settings
from psycopg import sql
from psycopg.abc import Buffer

if TYPE_CHECKING:
    from migrations.slices import Slice

# Server settings that decide how a value is written as text.
CANONICAL_TEXT_OPTIONS = (
    "-c TimeZone=UTC -c DateStyle=ISO,MDY -c IntervalStyle=postgres -c extra_float_digits=1 "
    "-c bytea_output=hex"
)


def raw_connect(alias: str, *, application_name: str, autocommit: bool = False) -> psycopg.Connection[Any]:
    """A new connection to the database behind the Django alias `alias`; the caller closes it.

    Unlike the alias's Django connection it carries no `migration.writer` tag: a step that writes
    sets the tag itself, per transaction (`writer_tag_set`)."""
    config = settings.DATABASES[alias]
    return psycopg.connect(
        host=config.get("HOST") or None,
        port=config.get("PORT") or None,
        user=config.get("USER") or None,
        password=config.get("PASSWORD") or None,
        dbname=config["NAME"],
        application_name=application_name,
        options=CANONICAL_TEXT_OPTIONS,
        autocommit=autocommit,
        connect_timeout=10,
    )


@contextmanager
def slice_connections(
    slice_: Slice, *, application_name: str
) -> Iterator[tuple[psycopg.Connection[Any], psycopg.Connection[Any]]]:
    """(source, target) connections of the slice, in autocommit (transactions are explicit)."""
    with (
        raw_connect(slice_.source_alias, application_name=application_name, autocommit=True) as source,
        raw_connect(slice_.target_alias, application_name=application_name, autocommit=True) as target,
    ):
        yield source, target


def writer_tag_set(cursor: psycopg.Cursor[Any], writer: str) -> None:
    """Tags the rest of the current transaction's writes as `writer` (migration.writer)."""
    from migrations.state import WRITER_SETTING

    cursor.execute("SELECT set_config(%s, %s, true)", [WRITER_SETTING, writer])


# PostgreSQL sends COPY TO data one row per message; handing the target 128 KiB at a time (psycopg's
# largest single write) instead of one row per call keeps Python's share of the pipe small.
COPY_RELAY_BYTES = 128 * 1024


def copy_relay(rows_out: Iterable[Buffer], rows_in: psycopg.Copy) -> None:
    """Streams a `COPY ... TO STDOUT` into a `COPY ... FROM STDIN` (same format), in large writes."""
    pending = bytearray()
    for block in rows_out:
        pending += block
        if len(pending) >= COPY_RELAY_BYTES:
            rows_in.write(pending)
            pending = bytearray()
    if pending:
        rows_in.write(pending)


def table_exists(cursor: psycopg.Cursor[Any], table: str) -> bool:
    cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [f'public."{table}"'])
    row = cursor.fetchone()
    return bool(row and row[0])


def column_list(columns: tuple[str, ...] | list[str]) -> sql.Composed:
    return sql.SQL(", ").join(sql.Identifier(c) for c in columns)
