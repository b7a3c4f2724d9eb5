"""Backfill: copies a slice's tables from the source database to the target by keyset-paged binary
COPY, one chunk per target transaction, each committing its checkpoint row with its rows.

Order of work (docs/data-migration.md, "Backfill and the stream it hands over to"):
1. the state tables in both databases, then the forward stream's slot and publication, BEFORE any
   row is read, so the slot holds every change made while the copy runs (the sync replays them);
2. per table, parents before children: the chunk's upper key (`OFFSET n-1` on the key index, or the
   maximum when fewer rows remain), then `COPY (SELECT ... WHERE key > last AND key <= upper) TO
   STDOUT (FORMAT binary)` on the source streamed straight into `COPY ... FROM STDIN` on the target,
   and the checkpoint (last key, rows copied) in the same target transaction, tagged as the sync's
   so the stray-write trigger lets it pass. A run killed at any point resumes after the last
   committed chunk: no row is copied twice, none is skipped;
3. the stray-write triggers on the target tables.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import errors, sql

from cdc.replication import slot_status
from migrations.raw_connections import (
    column_list,
    copy_relay,
    slice_connections,
    table_exists,
    writer_tag_set,
)
from migrations.slices import Slice, TableShape, slice_tables
from migrations.state import (
    CHECKPOINT_TABLE,
    MARKER_TABLE,
    POSITION_TABLE,
    SYNC_WRITER,
    state_tables_ensure,
)
from migrations.steps import StepRefused
from migrations.stray_writes import stray_triggers_install, stray_writes_forget
from migrations.streams import stream_slot_setup
from migrations.table_stats import rows_any, rows_estimate

# (table, rows copied so far, rows expected in all) after each chunk.
ProgressCallback = Callable[[str, int, int], None]


@dataclass(frozen=True)
class Checkpoint:
    table: str
    last_key: str | None
    rows_copied: int
    done: bool


@dataclass
class TableCopy:
    """What one run did to one table."""

    table: str
    rows: int = 0  # copied by this run
    rows_copied: int = 0  # copied in all runs (the checkpoint)
    chunks: int = 0
    seconds: float = 0.0
    already_done: bool = False

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


@dataclass
class BackfillReport:
    slice_name: str
    dry_run: bool
    actions: list[str] = field(default_factory=list)  # done, or to be done in a dry run
    tables: list[TableCopy] = field(default_factory=list)
    seconds: float = 0.0
    # State tables and slot (creating a slot waits for the server's running transactions to end).
    setup_seconds: float = 0.0

    @property
    def rows(self) -> int:
        return sum(t.rows for t in self.tables)

    @property
    def rows_per_second(self) -> float:
        copying = sum(t.seconds for t in self.tables)
        return self.rows / copying if copying > 0 else 0.0


@dataclass(frozen=True)
class BackfillOptions:
    chunk_rows: int = 50_000
    max_rows_per_second: float | None = None  # throttle; None copies as fast as it can
    restart: bool = False
    dry_run: bool = False


def checkpoints_read(cursor: psycopg.Cursor[Any], slice_name: str) -> dict[str, Checkpoint]:
    """The slice's checkpoint rows in the target the cursor is on (none before the first backfill)."""
    if not table_exists(cursor, CHECKPOINT_TABLE):
        return {}
    cursor.execute(
        f"SELECT table_name, last_key, rows_copied, done FROM {CHECKPOINT_TABLE} WHERE slice_name = %s",
        [slice_name],
    )
    return {row[0]: Checkpoint(*row) for row in cursor.fetchall()}


def backfill_slice(
    slice_: Slice,
    options: BackfillOptions = BackfillOptions(),
    *,
    on_progress: ProgressCallback | None = None,
) -> BackfillReport:
    """Copies the slice's tables that are not done yet; see the module docstring. Raises
    SliceRefused or StepRefused (with a sentence saying what to do) before changing anything."""
    if options.chunk_rows < 1:
        raise StepRefused(f"--chunk-rows must be at least 1, not {options.chunk_rows}.")
    if options.max_rows_per_second is not None and options.max_rows_per_second <= 0:
        raise StepRefused(f"--max-rows-per-second must be positive, not {options.max_rows_per_second}.")
    started = time.monotonic()
    tables = slice_tables(slice_)
    report = BackfillReport(slice_name=slice_.name, dry_run=options.dry_run)
    forward = slice_.stream_target("forward")
    if slot_status(forward).active:
        raise StepRefused(
            f"Slice {slice_.name!r}: the forward stream's slot {forward.slot_name} is in use, so its sync "
            "is running; the backfill comes before the sync. Stop `migrate_data sync` first."
        )
    with (
        slice_connections(slice_, application_name="migrate_data backfill") as (source, target),
    ):
        _lock(target, slice_)
        with target.cursor() as cursor:
            checkpoints = checkpoints_read(cursor, slice_.name)
            if options.restart:
                checkpoints = {}
            else:
                _refuse_unexplained_rows(cursor, slice_, tables, checkpoints)
        set_up_started = time.monotonic()
        _set_up(source, target, slice_, tables, options, report)
        report.setup_seconds = time.monotonic() - set_up_started
        if options.dry_run:
            _plan_copies(source, tables, checkpoints, report)
        else:
            for table in tables:
                report.tables.append(
                    _table_copy(
                        source, target, slice_, table, checkpoints.get(table.name), options, on_progress
                    )
                )
            with target.transaction(), target.cursor() as cursor:
                covered = stray_triggers_install(cursor, slice_)
            report.actions.append(f"stray-write triggers on {', '.join(covered)} (target)")
    report.seconds = time.monotonic() - started
    return report


def _lock(target: psycopg.Connection[Any], slice_: Slice, *, wait_seconds: float = 5.0) -> None:
    """One backfill per slice at a time: a session lock in the target, gone with the process (a
    killed run's server session may take a moment to notice; the lock is tried for a few seconds)."""
    deadline = time.monotonic() + wait_seconds
    while True:
        row = target.execute(
            "SELECT pg_try_advisory_lock(hashtext(%s))", [f"migrate_data backfill {slice_.name}"]
        ).fetchone()
        if (row and row[0]) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    if not (row and row[0]):
        raise StepRefused(
            f"Another backfill of slice {slice_.name!r} is running; let it finish (or stop it)."
        )


def _refuse_unexplained_rows(
    cursor: psycopg.Cursor[Any], slice_: Slice, tables: list[TableShape], checkpoints: dict[str, Checkpoint]
) -> None:
    filled = [t.name for t in tables if t.name not in checkpoints and rows_any(cursor, t.name)]
    if filled:
        raise StepRefused(
            f"Slice {slice_.name!r}: the {slice_.target_database} database already has rows in "
            f"{', '.join(filled)} that no backfill checkpoint accounts for, so copying could clash with "
            "them. Run `migrate_data backfill --restart` to empty the slice's target tables and copy "
            "again (--dry-run shows what it would do)."
        )


def _set_up(
    source: psycopg.Connection[Any],
    target: psycopg.Connection[Any],
    slice_: Slice,
    tables: list[TableShape],
    options: BackfillOptions,
    report: BackfillReport,
) -> None:
    """State tables, the forward slot (before any row is read) and, with --restart, empty tables."""
    forward = slice_.stream_target("forward")
    if options.dry_run:
        report.actions.append(
            f"ensure the toolkit's state tables in {slice_.target_database} and {slice_.source_database}"
        )
        if not slot_status(forward).exists:
            report.actions.append(
                f"create replication slot and publication {forward.slot_name} in {slice_.source_database}"
            )
    else:
        with target.transaction(), target.cursor() as cursor:
            state_tables_ensure(cursor)
        with source.cursor() as cursor:
            state_tables_ensure(cursor, MARKER_TABLE, POSITION_TABLE)
        report.actions.extend(
            f"{change} ({slice_.source_database})" for change in stream_slot_setup(slice_, "forward")
        )
    if options.restart:
        _restart(target, slice_, tables, dry_run=options.dry_run, report=report)


def _restart(
    target: psycopg.Connection[Any],
    slice_: Slice,
    tables: list[TableShape],
    *,
    dry_run: bool,
    report: BackfillReport,
) -> None:
    names = [t.name for t in tables]
    report.actions.append(
        f"empty {', '.join(names)} in {slice_.target_database}, forget their checkpoints and stray writes"
    )
    if dry_run:
        return
    try:
        with target.transaction(), target.cursor() as cursor:
            cursor.execute(sql.SQL("TRUNCATE {}").format(column_list(names)))
            cursor.execute(f"DELETE FROM {CHECKPOINT_TABLE} WHERE slice_name = %s", [slice_.name])
            stray_writes_forget(cursor, slice_)
    except errors.FeatureNotSupported as exc:  # another slice's table references one of these
        raise StepRefused(
            f"Slice {slice_.name!r}: cannot empty its target tables because tables outside the slice "
            f"refer to them ({exc.diag.message_detail or exc}). Restart the backfill of those slices first."
        ) from exc


def _plan_copies(
    source: psycopg.Connection[Any],
    tables: list[TableShape],
    checkpoints: dict[str, Checkpoint],
    report: BackfillReport,
) -> None:
    with source.cursor() as cursor:
        for table in tables:
            checkpoint = checkpoints.get(table.name)
            if checkpoint and checkpoint.done:
                report.actions.append(f"{table.name}: done already ({checkpoint.rows_copied} rows)")
                continue
            after = (
                f"after key {checkpoint.last_key}" if checkpoint and checkpoint.last_key else "from the start"
            )
            rows = rows_estimate(cursor, table.name)
            report.actions.append(
                f"copy {table.name} {after} by {table.key} (about {rows} rows in the source)"
            )
    report.actions.append("install the stray-write triggers on the slice's target tables")


def _after(table: TableShape, last_key: Any) -> sql.Composable:
    if last_key is None:
        return sql.SQL("TRUE")
    return sql.SQL("{} > {}").format(sql.Identifier(table.key), sql.Literal(last_key))


def _chunk_upper(source: psycopg.Connection[Any], table: TableShape, last_key: Any, rows: int) -> Any:
    """The key that ends the next chunk of `rows` rows after `last_key`; None when none is left."""
    query = sql.SQL(
        "SELECT coalesce((SELECT {key} FROM {table} WHERE {after} ORDER BY {key} OFFSET {skip} LIMIT 1), "
        "(SELECT max({key}) FROM {table} WHERE {after}))"
    ).format(
        key=sql.Identifier(table.key),
        table=sql.Identifier(table.name),
        after=_after(table, last_key),
        skip=sql.Literal(rows - 1),
    )
    row = source.execute(query).fetchone()
    return row[0] if row else None


def _may_skip_row_triggers(connection: psycopg.Connection[Any]) -> bool:
    cached = connection.info.parameter_status("is_superuser")
    return cached == "on"


def _chunk_copy(
    source: psycopg.Connection[Any],
    target: psycopg.Connection[Any],
    slice_: Slice,
    table: TableShape,
    last_key: Any,
    upper: Any,
) -> int:
    """Streams one chunk and commits it with its checkpoint; returns the rows copied."""
    columns = column_list(table.columns)
    copy_out = sql.SQL(
        "COPY (SELECT {columns} FROM {table} WHERE {after} AND {key} <= {upper} ORDER BY {key}) "
        "TO STDOUT (FORMAT binary)"
    ).format(
        columns=columns,
        table=sql.Identifier(table.name),
        after=_after(table, last_key),
        key=sql.Identifier(table.key),
        upper=sql.Literal(upper),
    )
    copy_in = sql.SQL("COPY {table} ({columns}) FROM STDIN (FORMAT binary)").format(
        table=sql.Identifier(table.name), columns=columns
    )
    with target.transaction(), source.cursor() as out_cursor, target.cursor() as in_cursor:
        writer_tag_set(in_cursor, SYNC_WRITER)
        if _may_skip_row_triggers(target):
            # The rows come from a consistent source whose foreign keys hold; checking them again row
            # by row at each chunk's commit is most of the write side's cost (pgcopydb adds foreign
            # keys after its copy for the same reason). Only for this transaction, and only when the
            # role may (session_replication_role needs a superuser); else the checks run.
            in_cursor.execute("SET LOCAL session_replication_role = replica")
        with out_cursor.copy(copy_out) as rows_out, in_cursor.copy(copy_in) as rows_in:
            copy_relay(rows_out, rows_in)
        copied = in_cursor.rowcount
        in_cursor.execute(
            f"INSERT INTO {CHECKPOINT_TABLE} (slice_name, table_name, last_key, rows_copied) "
            "VALUES (%s, %s, %s, %s) ON CONFLICT (slice_name, table_name) DO UPDATE SET "
            "last_key = excluded.last_key, "
            f"rows_copied = {CHECKPOINT_TABLE}.rows_copied + excluded.rows_copied, updated_at = now()",
            [slice_.name, table.name, str(upper), copied],
        )
    return copied


def _checkpoint_done(target: psycopg.Connection[Any], slice_: Slice, table: TableShape) -> int:
    with target.transaction(), target.cursor() as cursor:
        writer_tag_set(cursor, SYNC_WRITER)
        cursor.execute(
            f"INSERT INTO {CHECKPOINT_TABLE} (slice_name, table_name, done) VALUES (%s, %s, true) "
            "ON CONFLICT (slice_name, table_name) DO UPDATE SET done = true, updated_at = now() "
            "RETURNING rows_copied",
            [slice_.name, table.name],
        )
        row = cursor.fetchone()
    return int(row[0]) if row else 0


def _table_copy(
    source: psycopg.Connection[Any],
    target: psycopg.Connection[Any],
    slice_: Slice,
    table: TableShape,
    checkpoint: Checkpoint | None,
    options: BackfillOptions,
    on_progress: ProgressCallback | None,
) -> TableCopy:
    result = TableCopy(table=table.name, rows_copied=checkpoint.rows_copied if checkpoint else 0)
    if checkpoint and checkpoint.done:
        result.already_done = True
        return result
    with source.cursor() as cursor:
        expected = max(rows_estimate(cursor, table.name), result.rows_copied)
    last_key: Any = checkpoint.last_key if checkpoint else None
    started = time.monotonic()
    if on_progress:
        on_progress(table.name, result.rows_copied, expected)
    while (upper := _chunk_upper(source, table, last_key, options.chunk_rows)) is not None:
        try:
            copied = _chunk_copy(source, target, slice_, table, last_key, upper)
        except errors.ForeignKeyViolation as exc:
            raise StepRefused(
                f"Table {table.name}: a copied row refers to a row the {slice_.target_database} database "
                f"lacks ({exc.diag.message_detail or exc}). Backfill the slice that owns the referenced "
                "table first."
            ) from exc
        except errors.UniqueViolation as exc:
            raise StepRefused(
                f"Table {table.name}: the {slice_.target_database} database already holds a key this chunk "
                f"brings ({exc.diag.message_detail or exc}): something else wrote to it. See "
                "`migrate_data status` for stray writes, then run `migrate_data backfill --restart`."
            ) from exc
        last_key = upper
        result.rows += copied
        result.rows_copied += copied
        result.chunks += 1
        if on_progress:
            on_progress(table.name, result.rows_copied, max(expected, result.rows_copied))
        _throttle(started, result.rows, options.max_rows_per_second)
    result.rows_copied = _checkpoint_done(target, slice_, table)
    result.seconds = time.monotonic() - started
    if on_progress:
        on_progress(table.name, result.rows_copied, result.rows_copied)
    return result


def throttle_delay(*, elapsed: float, rows: int, max_rows_per_second: float | None) -> float:
    """Seconds to wait so that `rows` copied since the start average at most the bound."""
    if not max_rows_per_second:
        return 0.0
    return max(0.0, rows / max_rows_per_second - elapsed)


def _throttle(started: float, rows: int, max_rows_per_second: float | None) -> None:
    delay = throttle_delay(
        elapsed=time.monotonic() - started, rows=rows, max_rows_per_second=max_rows_per_second
    )
    if delay:
        time.sleep(delay)
