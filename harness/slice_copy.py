"""A slice copied the way the backfill hands over to the sync, for the sync's tests and benchmark:
the state tables on both sides, the forward slot created BEFORE the copy, each table copied whole
by binary COPY, and every table's checkpoint marked done in the target. (The backfill step itself
copies in resumable chunks; this is the contract the sync relies on, in one go.)"""

from __future__ import annotations

import psycopg
from psycopg import sql

from cdc.replication import capture_setup, capture_teardown
from migrations.apply import database_conninfo
from migrations.slices import Slice, slice_tables
from migrations.state import CHECKPOINT_TABLE, state_tables_ensure


def _connect(alias: str) -> psycopg.Connection:
    return psycopg.connect(database_conninfo(alias, application_name="slice_copy"), autocommit=True)


def slice_state_tables(slice_: Slice) -> None:
    """Every state table on both sides (the streams' publications list the marker and position
    tables, which must exist when the publication is created)."""
    for alias in (slice_.source_alias, slice_.target_alias):
        with _connect(alias) as conn, conn.cursor() as cursor:
            state_tables_ensure(cursor)


def slice_copy(slice_: Slice) -> dict[str, int]:
    """Creates the forward slot, copies the slice's tables into the (empty) target tables, marks them
    done; returns rows copied per table."""
    slice_state_tables(slice_)
    capture_setup(slice_.stream_target("forward"))
    copied = {}
    with _connect(slice_.source_alias) as source, _connect(slice_.target_alias) as target:
        shapes = slice_tables(slice_)
        with target.transaction():
            for shape in shapes:
                columns = sql.SQL(", ").join(sql.Identifier(c) for c in shape.columns)
                table = sql.Identifier(shape.name)
                copy_out = sql.SQL("COPY (SELECT {} FROM {} ORDER BY {}) TO STDOUT (FORMAT binary)").format(
                    columns, table, sql.Identifier(shape.key)
                )
                copy_in = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT binary)").format(table, columns)
                with source.cursor().copy(copy_out) as reader, target.cursor().copy(copy_in) as writer:
                    for data in reader:
                        writer.write(data)
                rows = target.execute(sql.SQL("SELECT count(*) FROM {}").format(table)).fetchone()[0]
                target.execute(
                    f"INSERT INTO {CHECKPOINT_TABLE} (slice_name, table_name, rows_copied, done) "
                    "VALUES (%s, %s, %s, true) ON CONFLICT (slice_name, table_name) "
                    "DO UPDATE SET rows_copied = EXCLUDED.rows_copied, done = true, updated_at = now()",
                    [slice_.name, shape.name, rows],
                )
                copied[shape.name] = rows
    return copied


def slice_streams_drop(slice_: Slice) -> None:
    """Drops both streams' slots and publications (a slot left behind retains WAL)."""
    for direction in ("reverse", "forward"):
        capture_teardown(slice_.stream_target(direction), dry_run=False)
