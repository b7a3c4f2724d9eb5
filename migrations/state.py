"""The toolkit's own tables, created on demand in the database whose rows they describe, so that
each is written in the same transaction as those rows (docs/data-migration.md, "Where state lives").

All take a DB-API cursor (a Django cursor or a psycopg one) on the right database.
"""

from __future__ import annotations

from typing import Any

# Written in the target with each backfilled chunk.
CHECKPOINT_TABLE = "migration_backfill_checkpoint"
# Written FIRST in every sync transaction, in the database the stream applies to: the position of
# the last applied source change, and the echo tag the stream in the other direction recognises.
POSITION_TABLE = "migration_sync_position"
# Keys a stream touched since the last clean verification of them.
REVERIFY_TABLE = "migration_reverify_key"
# Writes to a slice's new tables by anyone but the owning service and the sync (a trigger's log).
STRAY_TABLE = "migration_stray_write"
# Written at the source during a cutover's freeze; its arrival at the target ends the drain.
MARKER_TABLE = "migration_marker"

# The writer tag: every Django connection sets it to its SERVICE (config/settings/databases.py),
# the sync to SYNC_WRITER for its transaction.
WRITER_SETTING = "migration.writer"
SYNC_WRITER = "sync"

_DDL = {
    CHECKPOINT_TABLE: f"""
        CREATE TABLE IF NOT EXISTS {CHECKPOINT_TABLE} (
            slice_name varchar(64) NOT NULL,
            table_name varchar(128) NOT NULL,
            last_key text,  -- the key's text: any single-column key type pages by it
            rows_copied bigint NOT NULL DEFAULT 0,
            done boolean NOT NULL DEFAULT false,
            started_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (slice_name, table_name)
        )""",
    POSITION_TABLE: f"""
        CREATE TABLE IF NOT EXISTS {POSITION_TABLE} (
            stream varchar(80) PRIMARY KEY,
            commit_lsn bigint NOT NULL DEFAULT 0,
            change_lsn bigint NOT NULL DEFAULT 0,
            last_marker varchar(64) NOT NULL DEFAULT '',
            changes_applied bigint NOT NULL DEFAULT 0,
            source_committed_at timestamptz,
            applied_at timestamptz NOT NULL DEFAULT now(),
            -- the other direction's sync transaction the stream was inside of at its last write:
            -- its remaining changes are still dropped as echoes after a restart mid-transaction
            echo_tx_id bigint
        )""",
    REVERIFY_TABLE: f"""
        CREATE TABLE IF NOT EXISTS {REVERIFY_TABLE} (
            slice_name varchar(64) NOT NULL,
            table_name varchar(128) NOT NULL,
            key text NOT NULL,  -- the key's text: any single-column key type
            touched_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (slice_name, table_name, key)
        )""",
    STRAY_TABLE: f"""
        CREATE TABLE IF NOT EXISTS {STRAY_TABLE} (
            id bigserial PRIMARY KEY,
            table_name varchar(128) NOT NULL,
            key text,  -- the key's text (to_jsonb(row) ->> key): any key type
            operation varchar(8) NOT NULL,
            writer text NOT NULL DEFAULT '',
            application_name text NOT NULL DEFAULT '',
            db_user text NOT NULL DEFAULT '',
            at timestamptz NOT NULL DEFAULT now()
        )""",
    MARKER_TABLE: f"""
        CREATE TABLE IF NOT EXISTS {MARKER_TABLE} (
            id bigserial PRIMARY KEY,
            slice_name varchar(64) NOT NULL,
            token varchar(64) NOT NULL UNIQUE,
            written_at timestamptz NOT NULL DEFAULT now()
        )""",
}


def state_tables_ensure(cursor: Any, *tables: str) -> None:
    """Creates the named state tables (all of them by default) if missing."""
    for table in tables or tuple(_DDL):
        cursor.execute(_DDL[table])


def stream_name(slice_name: str, direction: str) -> str:
    """`<slice>:forward` (legacy -> new) or `<slice>:reverse` (new -> legacy)."""
    if direction not in ("forward", "reverse"):
        raise ValueError(f"direction {direction!r} is neither forward nor reverse")
    return f"{slice_name}:{direction}"
