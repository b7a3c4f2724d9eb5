"""One Debezium batch of a sync stream as the sync applies it (docs/data-migration.md, "Positions,
batches and echoes"): which changes are new, which are echoes of the other direction's sync, which
marker arrived, and the row operations they become. Pure: migrations/apply.py writes them.
"""

from __future__ import annotations

import base64
import json
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any, Literal

from cdc.replication import HEARTBEAT_TABLE
from cdc.row_changes import Row, RowChange
from migrations.slices import TableShape
from migrations.state import MARKER_TABLE, POSITION_TABLE

# What Debezium sends for a TOASTed value an update did not change (and the old image lacks).
UNAVAILABLE = "__debezium_unavailable_value"
EPOCH_DATE = date(1970, 1, 1)
EPOCH = datetime(1970, 1, 1)


@dataclass(frozen=True, order=True)
class Position:
    """A source change's place in its stream: Debezium's `source.sequence` as integers."""

    commit_lsn: int = 0
    change_lsn: int = 0

    def precedes(self, change: RowChange) -> bool:
        """True if `change` comes after this position (it was not applied yet). The first
        transaction an engine streams without stored offsets has no commit LSN: its changes are
        compared by their own LSN."""
        lsn = change.lsn or 0
        if change.commit_lsn is None:
            return lsn > self.change_lsn
        return (change.commit_lsn, lsn) > (self.commit_lsn, self.change_lsn)

    def advanced_to(self, change: RowChange) -> Position:
        commit = self.commit_lsn if change.commit_lsn is None else change.commit_lsn
        return max(self, Position(commit, change.lsn or 0))


class EchoTransactions:
    """Source transactions in which the other direction's sync wrote its position row: their
    changes are echoes. Bounded (transactions arrive in commit order, so old ids are never needed
    again); kept across batches because a transaction may span several."""

    def __init__(self, *, capacity: int = 4096, known: Iterable[int] = ()) -> None:
        self.capacity = capacity
        self._ids: OrderedDict[int, None] = OrderedDict()
        for tx_id in known:
            self.add(tx_id)

    def add(self, tx_id: int) -> None:
        self._ids[tx_id] = None
        self._ids.move_to_end(tx_id)
        while len(self._ids) > self.capacity:
            self._ids.popitem(last=False)

    def __contains__(self, tx_id: object) -> bool:
        return tx_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)


@dataclass
class PlannedBatch:
    """What one batch does to the stream's target: the changes to apply (stream order) and what the
    position row records in the same transaction."""

    changes: list[RowChange] = field(default_factory=list)
    position: Position = field(default_factory=Position)
    marker: str | None = None
    committed_at_us: int | None = None  # source commit time of the last change (heartbeats too)
    heartbeat_only: bool = True  # nothing but heartbeats (and changes seen before)
    echoes: int = 0
    seen_before: int = 0
    # The last change is inside an echo transaction that may continue in the next batch: the
    # position row remembers it, or a restart between the two batches would apply its rest.
    open_echo_tx: int | None = None
    last_lsn: int = 0  # the highest source LSN in the batch, heartbeats included

    @property
    def needs_write(self) -> bool:
        return bool(self.changes) or self.marker is not None or self.open_echo_tx is not None


def batch_plan(
    changes: Iterable[RowChange],
    *,
    stored: Position,
    echoes: EchoTransactions,
    slice_name: str,
    tables: Iterable[str],
) -> PlannedBatch:
    """Sorts a batch's changes against the stored position: heartbeats only move the clock, changes
    at or before the position were applied by an earlier transaction, position-row writes mark
    their transaction as the other sync's (echo), a marker of this slice is recorded, and the
    slice's table changes are applied."""
    slice_tables = set(tables)
    plan = PlannedBatch(position=stored)
    for change in changes:
        plan.last_lsn = max(plan.last_lsn, change.lsn or 0)
        if change.table == HEARTBEAT_TABLE:
            plan.committed_at_us = change.committed_at_us
            continue
        if change.table == POSITION_TABLE and change.tx_id is not None:
            echoes.add(change.tx_id)  # also when seen before: the rest of its transaction may be new
        if not stored.precedes(change):
            plan.seen_before += 1
            continue
        plan.heartbeat_only = False
        plan.position = plan.position.advanced_to(change)
        plan.committed_at_us = change.committed_at_us
        plan.open_echo_tx = None
        if change.table == POSITION_TABLE:
            continue
        if change.tx_id is not None and change.tx_id in echoes:
            plan.echoes += 1
            plan.open_echo_tx = change.tx_id
        elif change.table == MARKER_TABLE:
            after = change.after or {}
            if change.op in ("c", "r") and after.get("slice_name") == slice_name:
                plan.marker = str(after.get("token", ""))
        elif change.table in slice_tables:
            plan.changes.append(change)
    return plan


# --- row values ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ColumnType:
    """A column of the table a stream writes to, as information_schema names its type."""

    data_type: str
    precision: int | None = None  # datetime_precision


def _unavailable(value: Any) -> bool:
    return value == UNAVAILABLE or (isinstance(value, list) and UNAVAILABLE in value)


def column_value(value: Any, column: ColumnType) -> Any:
    """Debezium's JSON value of a column -> a JSON value PostgreSQL's jsonb_populate_recordset
    reads back as that column's type. Numerics arrive as strings (decimal.handling.mode=string)
    and timestamptz as ISO text, which PostgreSQL reads as they are; json/jsonb arrive as JSON
    text, dates as days and timestamps/times as micro- or milliseconds since the epoch, bytea
    as base64."""
    if value is None:
        return None
    kind = column.data_type
    if kind in ("json", "jsonb"):
        return json.loads(value) if isinstance(value, str) else value
    if isinstance(value, int) and not isinstance(value, bool):
        millis = column.precision is not None and column.precision <= 3
        if kind == "date":
            return (EPOCH_DATE + timedelta(days=value)).isoformat()
        if kind == "timestamp without time zone":
            delta = timedelta(milliseconds=value) if millis else timedelta(microseconds=value)
            return (EPOCH + delta).isoformat()
        if kind == "time without time zone":
            delta = timedelta(milliseconds=value) if millis else timedelta(microseconds=value)
            return (datetime.combine(EPOCH_DATE, time()) + delta).time().isoformat()
        if kind == "interval":
            return f"{value} microseconds"
    if kind == "bytea" and isinstance(value, str):
        return "\\x" + base64.b64decode(value).hex()
    return value


def row_values(row: Row, columns: Iterable[str], types: Mapping[str, ColumnType]) -> dict[str, Any]:
    """The row's values for the given columns, leaving out what the source did not send (a column
    the target has and the source lacks) and unchanged TOASTed values (never written)."""
    values = {}
    for column in columns:
        if column in row and not _unavailable(row[column]):
            values[column] = column_value(row[column], types.get(column, ColumnType("text")))
    return values


def changed_columns(before: Row | None, after: Row, columns: Iterable[str], *, key: str) -> tuple[str, ...]:
    """The columns an update changed (before vs after image), so that a column written on the other
    side is not overwritten. Without a before image (no REPLICA IDENTITY FULL), every column."""
    return tuple(
        column
        for column in columns
        if column != key
        and column in after
        and not _unavailable(after[column])
        and (before is None or column not in before or before[column] != after[column])
    )


# --- row operations -----------------------------------------------------------------------------

OperationKind = Literal["upsert", "update", "delete"]


@dataclass
class Operation:
    """Consecutive changes of one table applied by one statement. For an update, `columns` are the
    changed ones and `rows` carry the whole after image too, upserted if the row is missing."""

    table: str
    kind: OperationKind
    key: str
    columns: tuple[str, ...]  # written columns (the key is in every row)
    rows: list[dict[str, Any]] = field(default_factory=list)
    keys: list[Any] = field(default_factory=list)

    def image_columns(self) -> tuple[str, ...]:
        """The columns of the rows' full images (an update's fallback upsert)."""
        return tuple(self.rows[0]) if self.rows else ()


def _change_operations(
    change: RowChange, shape: TableShape, types: Mapping[str, ColumnType]
) -> list[tuple[OperationKind, tuple[str, ...], dict[str, Any], Any]]:
    key = shape.key
    if change.op == "d":
        before = change.before or {}
        return [("delete", (), {}, before.get(key))]
    after = change.after or {}
    image = row_values(after, shape.columns, types)
    if change.op in ("c", "r"):
        return [("upsert", tuple(image), image, image.get(key))]
    old = change.before
    if old is not None and key in old and old[key] != after.get(key):
        # the key itself changed: the old row goes, the new one is written whole
        return [("delete", (), {}, old[key]), ("upsert", tuple(image), image, image.get(key))]
    changed = changed_columns(old, after, shape.columns, key=key)
    if not changed:
        return []
    return [("update", changed, image, image.get(key))]


def operations_for(
    changes: Iterable[RowChange],
    *,
    shapes: Mapping[str, TableShape],
    types: Mapping[str, Mapping[str, ColumnType]],
    per_table: bool = False,
) -> list[Operation]:
    """The changes as statements. Consecutive changes of the same table, kind and columns share one
    statement, and a key seen twice starts a new one (one statement never touches a row twice, two
    changes of one key keep their order).

    With `per_table`, "consecutive" is counted within each table: a change joins its table's last
    statement across changes of other tables. Every table's changes keep their order; only the
    order between tables changes, which foreign keys checked at commit allow (the caller says so).
    An order's row and its lines, interleaved in the stream, then take two statements per batch
    instead of two per order."""
    operations: list[Operation] = []
    open_by_table: dict[str, tuple[Operation, set[Any]]] = {}
    current_table: str | None = None
    for change in changes:
        shape = shapes[change.table]
        if not per_table and change.table != current_table:
            open_by_table.clear()
        current_table = change.table
        for kind, columns, image, key_value in _change_operations(change, shape, types[change.table]):
            open_ = open_by_table.get(change.table)
            if (
                open_ is None
                or open_[0].kind != kind
                or open_[0].columns != columns
                or open_[0].image_columns() != tuple(image)
                or key_value in open_[1]
            ):
                open_ = (Operation(table=change.table, kind=kind, key=shape.key, columns=columns), set())
                open_by_table[change.table] = open_
                operations.append(open_[0])
            operation, seen = open_
            seen.add(key_value)
            operation.keys.append(key_value)
            if kind != "delete":
                operation.rows.append(image)
    return operations
