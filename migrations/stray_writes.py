"""Stray writes: rows of a slice's new tables written by anyone but the owning service and the sync
(a psql session, a script, another process), found by a trigger on each table of the target.

Every Django connection tags its session with its SERVICE (`migration.writer`), the sync and the
backfill tag their transactions `sync`; the trigger's WHEN clause compares that tag before any
function runs, so tagged writes cost one comparison per row. An untagged or foreign write is logged
in `migration_stray_write` with its key, operation, tag, application name and database user: the
verification is not clean while the slice has one (ghostferry's TargetVerifier rule).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from migrations.raw_connections import raw_connect, table_exists
from migrations.slices import Slice, slice_tables
from migrations.state import STRAY_TABLE, SYNC_WRITER, WRITER_SETTING, state_tables_ensure

TRIGGER_NAME = "migration_stray_write"
FUNCTION_NAME = "migration_stray_write_record"

# One function for every table: the key column's name is the trigger's argument.
_FUNCTION = sql.SQL(
    """
    CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO {stray} (table_name, key, operation, writer, application_name, db_user)
        VALUES (
            TG_TABLE_NAME,
            CASE WHEN TG_OP = 'DELETE' THEN to_jsonb(OLD) ->> TG_ARGV[0]
                 ELSE to_jsonb(NEW) ->> TG_ARGV[0] END,
            TG_OP,
            coalesce(current_setting({setting}, true), ''),
            coalesce(current_setting('application_name', true), ''),
            current_user
        );
        RETURN NULL;
    END
    $$"""
)

_TRIGGER = sql.SQL(
    """
    CREATE OR REPLACE TRIGGER {trigger} AFTER INSERT OR UPDATE OR DELETE ON {table}
    FOR EACH ROW
    WHEN (coalesce(current_setting({setting}, true), '') NOT IN ({sync}, {service}))
    EXECUTE FUNCTION {function}({key})"""
)


@dataclass(frozen=True)
class StrayWrite:
    id: int
    table: str
    key: str | None  # the key's text (to_jsonb(row) ->> key)
    operation: str  # INSERT, UPDATE, DELETE
    writer: str  # the session's migration.writer ('' when untagged)
    application_name: str
    db_user: str
    at: datetime


def stray_triggers_install(cursor: psycopg.Cursor[Any], slice_: Slice) -> list[str]:
    """Creates (or replaces) the logging function and one trigger per table of the slice, in the
    target database the cursor is on; returns the tables it covered."""
    state_tables_ensure(cursor, STRAY_TABLE)
    cursor.execute(
        _FUNCTION.format(
            function=sql.Identifier(FUNCTION_NAME),
            stray=sql.Identifier(STRAY_TABLE),
            setting=sql.Literal(WRITER_SETTING),
        )
    )
    covered = []
    for table in slice_tables(slice_):
        cursor.execute(
            _TRIGGER.format(
                trigger=sql.Identifier(TRIGGER_NAME),
                table=sql.Identifier(table.name),
                setting=sql.Literal(WRITER_SETTING),
                sync=sql.Literal(SYNC_WRITER),
                service=sql.Literal(slice_.service),
                function=sql.Identifier(FUNCTION_NAME),
                key=sql.Literal(table.key),
            )
        )
        covered.append(table.name)
    return covered


def stray_triggers_installed(cursor: psycopg.Cursor[Any], slice_: Slice) -> list[str]:
    """The slice's tables that have the trigger in the cursor's database."""
    cursor.execute(
        "SELECT c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
        "WHERE t.tgname = %s AND c.relname = ANY(%s) ORDER BY 1",
        [TRIGGER_NAME, list(slice_.table_names)],
    )
    return [row[0] for row in cursor.fetchall()]


def stray_writes_forget(cursor: psycopg.Cursor[Any], slice_: Slice) -> int:
    """Deletes the log of the slice's stray writes (its tables were emptied: nothing left to judge)."""
    if not table_exists(cursor, STRAY_TABLE):
        return 0
    cursor.execute(f"DELETE FROM {STRAY_TABLE} WHERE table_name = ANY(%s)", [list(slice_.table_names)])
    return cursor.rowcount


def stray_writes_count(cursor: psycopg.Cursor[Any], slice_: Slice) -> int:
    if not table_exists(cursor, STRAY_TABLE):
        return 0
    cursor.execute(
        f"SELECT count(*) FROM {STRAY_TABLE} WHERE table_name = ANY(%s)", [list(slice_.table_names)]
    )
    row = cursor.fetchone()
    return int(row[0]) if row else 0


def stray_writes_list(slice_: Slice, *, limit: int = 1000) -> list[StrayWrite]:
    """The slice's stray writes in the target, oldest first (at most `limit`)."""
    with raw_connect(
        slice_.target_alias, application_name="migrate_data stray-writes", autocommit=True
    ) as conn:
        with conn.cursor() as cursor:
            if not table_exists(cursor, STRAY_TABLE):
                return []
            cursor.execute(
                f"SELECT id, table_name, key, operation, writer, application_name, db_user, at "
                f"FROM {STRAY_TABLE} WHERE table_name = ANY(%s) ORDER BY id LIMIT %s",
                [list(slice_.table_names), limit],
            )
            return [StrayWrite(*row) for row in cursor.fetchall()]
