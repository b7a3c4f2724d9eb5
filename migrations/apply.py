"""Writes a sync stream's batches into the database the stream applies to: one transaction per
Debezium batch, tagged as the sync's, whose FIRST write is the stream's position row (the echo tag
the other direction recognises), then the new changes, then the re-verify keys (forward only).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
import structlog
from django.conf import settings
from psycopg import sql
from psycopg.types.json import Jsonb

from cdc.row_changes import RowChange
from migrations.batches import (
    ColumnType,
    EchoTransactions,
    Operation,
    PlannedBatch,
    Position,
    batch_plan,
    operations_for,
)
from migrations.slices import Slice, TableShape
from migrations.state import (
    POSITION_TABLE,
    REVERIFY_TABLE,
    SYNC_WRITER,
    WRITER_SETTING,
    state_tables_ensure,
    stream_name,
)
from ops.database_setup import server_dsn

logger = structlog.get_logger(__name__)


def database_conninfo(alias: str, *, application_name: str) -> str:
    """A psycopg connection string for the database behind `alias` (the sync connects on its own:
    the engine calls it on a Java thread Django's connections do not follow)."""
    return psycopg.conninfo.make_conninfo(
        server_dsn(alias), dbname=settings.DATABASES[alias]["NAME"], application_name=application_name[:63]
    )


def column_types(cursor: psycopg.Cursor[Any], table: str) -> dict[str, ColumnType]:
    cursor.execute(
        "SELECT column_name, data_type, datetime_precision FROM information_schema.columns "
        "WHERE table_schema = 'public' AND table_name = %s",
        [table],
    )
    return {name: ColumnType(data_type, precision) for name, data_type, precision in cursor.fetchall()}


def foreign_keys_deferrable(cursor: psycopg.Cursor[Any], tables: tuple[str, ...]) -> bool:
    """True when every foreign key between two of `tables` is DEFERRABLE (Django makes them so)."""
    cursor.execute(
        "SELECT coalesce(bool_and(condeferrable), true) FROM pg_constraint "
        "WHERE contype = 'f' AND conrelid::regclass::text = ANY(%s) AND confrelid::regclass::text = ANY(%s)",
        [list(tables), list(tables)],
    )
    row = cursor.fetchone()
    return bool(row and row[0])


@dataclass(frozen=True)
class StoredPosition:
    position: Position
    last_marker: str
    changes_applied: int
    echo_tx_id: int | None
    source_committed_at: datetime | None


@dataclass(frozen=True)
class BatchOutcome:
    applied: int
    echoes: int
    seen_before: int
    marker: str | None
    last_lsn: int
    committed_at: datetime | None  # source commit time of the batch's last change or heartbeat
    lag_seconds: float | None  # apply time - that commit time
    wrote: bool


def _at(micros: int | None) -> datetime | None:
    return None if micros is None else datetime.fromtimestamp(micros / 1_000_000, tz=UTC)


class StreamApplier:
    """Applies one stream's batches on a connection of its own (the engine calls it from a Java
    thread, a new one after each engine restart)."""

    # An idle stream still refreshes its row's source_committed_at from heartbeats this often.
    HEARTBEAT_WRITE_SECONDS = 1.0

    def __init__(self, *, slice_: Slice, direction: str, shapes: Sequence[TableShape]) -> None:
        self.slice = slice_
        self.direction = direction
        self.stream = stream_name(slice_.name, direction)
        self.alias = slice_.applies_to_alias(direction)
        self.shapes = {shape.name: shape for shape in shapes}
        self.types: dict[str, dict[str, ColumnType]] = {}
        self.echoes = EchoTransactions()
        # Statements grouped per table across a batch (see operations_for); only when every
        # foreign key between the slice's tables can be checked at commit.
        self.per_table = False
        self._conn: psycopg.Connection[Any] | None = None
        self._heartbeat_written = 0.0

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            conn = psycopg.connect(
                database_conninfo(self.alias, application_name=f"migrate_data sync {self.stream}")
            )
            with conn.transaction(), conn.cursor() as cursor:
                state_tables_ensure(cursor, POSITION_TABLE, REVERIFY_TABLE)
                self.types = {table: column_types(cursor, table) for table in self.shapes}
                self.per_table = foreign_keys_deferrable(cursor, tuple(self.shapes))
                stored = self._stored(cursor, lock=False)
            if stored is not None and stored.echo_tx_id is not None:
                self.echoes.add(stored.echo_tx_id)
            self._conn = conn
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def stored(self) -> StoredPosition | None:
        with self._connection().transaction(), self._connection().cursor() as cursor:
            return self._stored(cursor, lock=False)

    def _stored(self, cursor: psycopg.Cursor[Any], *, lock: bool) -> StoredPosition | None:
        cursor.execute(
            f"SELECT commit_lsn, change_lsn, last_marker, changes_applied, echo_tx_id, source_committed_at "
            f"FROM {POSITION_TABLE} WHERE stream = %s{' FOR UPDATE' if lock else ''}",
            [self.stream],
        )
        row = cursor.fetchone()
        if row is None:
            return None
        return StoredPosition(Position(row[0], row[1]), row[2], row[3], row[4], row[5])

    def apply(self, changes: Sequence[RowChange]) -> BatchOutcome:
        """One transaction: position row first, then the batch's new changes; nothing twice."""
        conn = self._connection()
        with conn.transaction(), conn.cursor() as cursor:
            # One round trip: the writer tag (and foreign keys checked at commit) for this transaction.
            deferred = "; SET CONSTRAINTS ALL DEFERRED" if self.per_table else ""
            cursor.execute(f"SET LOCAL {WRITER_SETTING} = '{SYNC_WRITER}'{deferred}")
            stored = self._stored(cursor, lock=True)
            plan = batch_plan(
                changes,
                stored=stored.position if stored else Position(),
                echoes=self.echoes,
                slice_name=self.slice.name,
                tables=self.shapes,
            )
            now = time.time()
            lag = None if plan.committed_at_us is None else max(0.0, now - plan.committed_at_us / 1e6)
            wrote = False
            if plan.needs_write:
                self._position_write(cursor, plan)
                operations = operations_for(
                    plan.changes, shapes=self.shapes, types=self.types, per_table=self.per_table
                )
                for operation in operations:
                    self._operation_apply(cursor, operation)
                if self.direction == "forward":
                    self._reverify_record(cursor, plan)
                wrote = True
            elif plan.heartbeat_only and plan.committed_at_us is not None and stored is not None:
                wrote = self._heartbeat_write(cursor, plan)
        return BatchOutcome(
            applied=len(plan.changes),
            echoes=plan.echoes,
            seen_before=plan.seen_before,
            marker=plan.marker,
            last_lsn=plan.last_lsn,
            committed_at=_at(plan.committed_at_us),
            lag_seconds=lag,
            wrote=wrote,
        )

    def _position_write(self, cursor: psycopg.Cursor[Any], plan: PlannedBatch) -> None:
        cursor.execute(
            f"""
            INSERT INTO {POSITION_TABLE} AS p (stream, commit_lsn, change_lsn, last_marker,
                changes_applied, source_committed_at, applied_at, echo_tx_id)
            VALUES (%s, %s, %s, %s, %s, %s, now(), %s)
            ON CONFLICT (stream) DO UPDATE SET
                commit_lsn = EXCLUDED.commit_lsn,
                change_lsn = EXCLUDED.change_lsn,
                last_marker = CASE WHEN EXCLUDED.last_marker = '' THEN p.last_marker
                                   ELSE EXCLUDED.last_marker END,
                changes_applied = p.changes_applied + EXCLUDED.changes_applied,
                source_committed_at = COALESCE(EXCLUDED.source_committed_at, p.source_committed_at),
                applied_at = now(),
                echo_tx_id = EXCLUDED.echo_tx_id
            """,
            [
                self.stream,
                plan.position.commit_lsn,
                plan.position.change_lsn,
                plan.marker or "",
                len(plan.changes),
                _at(plan.committed_at_us),
                plan.open_echo_tx,
            ],
        )

    def _heartbeat_write(self, cursor: psycopg.Cursor[Any], plan: PlannedBatch) -> bool:
        """An idle stream's row says how recent the source it has caught up with is (for status)."""
        if time.monotonic() - self._heartbeat_written < self.HEARTBEAT_WRITE_SECONDS:
            return False
        self._heartbeat_written = time.monotonic()
        cursor.execute(
            f"UPDATE {POSITION_TABLE} SET source_committed_at = %s, applied_at = now() WHERE stream = %s",
            [_at(plan.committed_at_us), self.stream],
        )
        return True

    def _operation_apply(self, cursor: psycopg.Cursor[Any], op: Operation) -> None:
        table, key = sql.Identifier(op.table), sql.Identifier(op.key)
        if op.kind == "delete":
            cursor.execute(sql.SQL("DELETE FROM {} WHERE {} = ANY(%s)").format(table, key), [op.keys])
            return
        if op.kind == "update":
            cursor.execute(
                sql.SQL(
                    "UPDATE {t} AS t SET {sets} FROM jsonb_populate_recordset(NULL::{t}, %s) AS v "
                    "WHERE t.{k} = v.{k} RETURNING t.{k}"
                ).format(
                    t=table,
                    k=key,
                    sets=sql.SQL(", ").join(
                        sql.SQL("{c} = v.{c}").format(c=sql.Identifier(c)) for c in op.columns
                    ),
                ),
                [Jsonb(op.rows)],
            )
            found = {row[0] for row in cursor.fetchall()}
            missing = [row for row, key_value in zip(op.rows, op.keys, strict=True) if key_value not in found]
            if missing:  # the row is not there (deleted on this side, or never copied): write it whole
                self._upsert(cursor, op.table, op.key, tuple(missing[0]), missing)
            return
        self._upsert(cursor, op.table, op.key, op.columns, op.rows)

    def _upsert(
        self, cursor: psycopg.Cursor[Any], table: str, key: str, columns: tuple[str, ...], rows: list[dict]
    ) -> None:
        names = sql.SQL(", ").join(sql.Identifier(c) for c in columns)
        others = [c for c in columns if c != key]
        conflict = (
            sql.SQL("DO UPDATE SET ")
            + sql.SQL(", ").join(sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c)) for c in others)
            if others
            else sql.SQL("DO NOTHING")
        )
        cursor.execute(
            sql.SQL(
                "INSERT INTO {t} ({names}) SELECT {names} FROM jsonb_populate_recordset(NULL::{t}, %s) "
                "ON CONFLICT ({k}) {conflict}"
            ).format(t=sql.Identifier(table), names=names, k=sql.Identifier(key), conflict=conflict),
            [Jsonb(rows)],
        )

    def _reverify_record(self, cursor: psycopg.Cursor[Any], plan: PlannedBatch) -> None:
        touched: set[tuple[str, str]] = set()
        for change in plan.changes:
            key = self.shapes[change.table].key
            for image in (change.before, change.after):
                if image is not None and image.get(key) is not None:
                    touched.add((change.table, str(image[key])))
        if touched:
            tables, keys = zip(*sorted(touched), strict=True)
            cursor.execute(
                f"INSERT INTO {REVERIFY_TABLE} (slice_name, table_name, key) "
                "SELECT %s, t, k FROM unnest(%s::text[], %s::text[]) AS u(t, k) "
                "ON CONFLICT (slice_name, table_name, key) DO UPDATE SET touched_at = now()",
                [self.slice.name, list(tables), list(keys)],
            )
