"""The sync's pure parts: stream positions, the echo set, which changes a batch applies, the columns
an update writes, and Debezium's values as a target table reads them."""

from __future__ import annotations

import json
from typing import Any

from cdc.replication import HEARTBEAT_TABLE
from cdc.row_changes import RowChange, row_change_from_envelope
from migrations.batches import (
    UNAVAILABLE,
    ColumnType,
    EchoTransactions,
    PlannedBatch,
    Position,
    batch_plan,
    changed_columns,
    column_value,
    operations_for,
    row_values,
)
from migrations.slices import TableShape
from migrations.state import MARKER_TABLE, POSITION_TABLE

SHAPE = TableShape(
    name="thing",
    key="id",
    columns=("id", "name", "note", "data"),
    json_columns=frozenset({"data"}),
    sequence=None,
    source_sequence=None,
)
TYPES = {"thing": {"id": ColumnType("bigint"), "name": ColumnType("text"), "data": ColumnType("jsonb")}}


def change(
    op: str = "c",
    *,
    table: str = "thing",
    commit: int | None = 100,
    lsn: int = 110,
    tx: int = 1,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    at_us: int = 1_000_000,
) -> RowChange:
    return RowChange(
        table=table,
        op=op,
        before=before,
        after=after if after is not None or op == "d" else {"id": 1, "name": "a"},
        lsn=lsn,
        tx_id=tx,
        committed_at_us=at_us,
        commit_lsn=commit,
    )


START = Position()


def plan(
    changes: list[RowChange], stored: Position = START, echoes: EchoTransactions | None = None
) -> PlannedBatch:
    return batch_plan(
        changes,
        stored=stored,
        echoes=EchoTransactions() if echoes is None else echoes,
        slice_name="s",
        tables=["thing"],
    )


def test_sequence_is_read_into_the_commit_lsn() -> None:
    envelope: dict[str, Any] = {
        "op": "c",
        "after": {"id": 1},
        "source": {"table": "thing", "lsn": 221044480, "txId": 7, "sequence": '["221043456","221044480"]'},
    }
    parsed = row_change_from_envelope(json.dumps(envelope))
    assert parsed is not None and (parsed.commit_lsn, parsed.lsn) == (221043456, 221044480)
    envelope["source"]["sequence"] = '[null,"221044480"]'
    assert row_change_from_envelope(envelope).commit_lsn is None  # type: ignore[union-attr]


def test_positions_order_by_commit_then_change_lsn() -> None:
    stored = Position(100, 150)
    assert not stored.precedes(change(commit=100, lsn=150))  # the stored one itself
    assert not stored.precedes(change(commit=100, lsn=120))
    assert stored.precedes(change(commit=100, lsn=151))
    # a later transaction whose changes started before the stored change (interleaved writers)
    assert stored.precedes(change(commit=160, lsn=140))
    assert not stored.precedes(change(commit=90, lsn=999))


def test_a_change_without_commit_lsn_compares_by_its_own_lsn() -> None:
    stored = Position(100, 150)
    assert stored.precedes(change(commit=None, lsn=151))
    assert not stored.precedes(change(commit=None, lsn=150))
    assert stored.advanced_to(change(commit=None, lsn=151)) == Position(100, 151)


def test_a_redelivered_batch_applies_only_what_is_past_the_stored_position() -> None:
    batch = [change(lsn=110, tx=1), change(lsn=120, tx=1), change(commit=130, lsn=140, tx=2)]
    first = plan(batch)
    assert len(first.changes) == 3 and first.position == Position(130, 140)
    again = plan(batch, stored=Position(100, 120))
    assert [c.lsn for c in again.changes] == [140] and again.seen_before == 2
    assert plan(batch, stored=first.position).changes == []


def test_changes_of_a_transaction_that_wrote_a_position_row_are_echoes() -> None:
    echoes = EchoTransactions()
    batch = [
        change(table=POSITION_TABLE, tx=5, lsn=110, after={"stream": "s:reverse"}),
        change(tx=5, lsn=111),
        change(commit=200, tx=6, lsn=210),
    ]
    planned = plan(batch, echoes=echoes)
    assert [c.tx_id for c in planned.changes] == [6] and planned.echoes == 1
    assert planned.open_echo_tx is None
    # the echo transaction continues in the next batch
    following = plan([change(tx=5, commit=100, lsn=300)], stored=Position(), echoes=echoes)
    assert following.changes == [] and following.open_echo_tx == 5 and following.needs_write


def test_a_batch_of_only_the_other_syncs_position_write_writes_nothing() -> None:
    """Else the two directions would answer each other's position rows forever."""
    planned = plan([change(table=POSITION_TABLE, tx=9, after={"stream": "s:forward"})])
    assert not planned.needs_write


def test_the_echo_set_is_bounded_and_keeps_the_newest() -> None:
    echoes = EchoTransactions(capacity=3, known=[1, 2])
    for tx in (3, 4):
        echoes.add(tx)
    assert 1 not in echoes and all(tx in echoes for tx in (2, 3, 4)) and len(echoes) == 3


def test_a_marker_of_this_slice_is_recorded_and_heartbeats_only_move_the_clock() -> None:
    batch = [
        change(table=MARKER_TABLE, after={"slice_name": "other", "token": "x"}, lsn=111),
        change(table=MARKER_TABLE, after={"slice_name": "s", "token": "tok"}, lsn=112),
        change(table=HEARTBEAT_TABLE, lsn=500, at_us=9_000_000),
    ]
    planned = plan(batch)
    assert planned.marker == "tok" and planned.changes == [] and planned.needs_write
    assert planned.committed_at_us == 9_000_000 and planned.last_lsn == 500
    assert plan([change(table=HEARTBEAT_TABLE)]).heartbeat_only


def test_an_update_writes_only_the_columns_it_changed() -> None:
    before = {"id": 1, "name": "a", "note": "n", "data": "[]"}
    after = {"id": 1, "name": "b", "note": "n", "data": UNAVAILABLE}
    assert changed_columns(before, after, SHAPE.columns, key="id") == ("name",)
    assert changed_columns(None, after, SHAPE.columns, key="id") == ("name", "note")


def test_values_become_what_the_target_column_reads() -> None:
    assert column_value('[{"a": 1}]', ColumnType("jsonb")) == [{"a": 1}]
    assert column_value("12.30", ColumnType("numeric")) == "12.30"
    assert column_value(19722, ColumnType("date")) == "2023-12-31"
    assert column_value(1_000_000, ColumnType("timestamp without time zone", 6)) == "1970-01-01T00:00:01"
    assert column_value(1_500, ColumnType("timestamp without time zone", 3)) == "1970-01-01T00:00:01.500000"
    assert column_value("AQI=", ColumnType("bytea")) == "\\x0102"
    assert (
        column_value("2024-01-01T00:00:00Z", ColumnType("timestamp with time zone")) == "2024-01-01T00:00:00Z"
    )
    row = {"id": 1, "name": UNAVAILABLE, "data": '{"k": true}', "legacy_only": "x"}
    assert row_values(row, SHAPE.columns, TYPES["thing"]) == {"id": 1, "data": {"k": True}}


def test_operations_keep_stream_order_and_never_touch_a_key_twice_in_one_statement() -> None:
    changes = [
        change(after={"id": 1, "name": "a"}, lsn=1),
        change(after={"id": 2, "name": "b"}, lsn=2),
        change("u", before={"id": 1, "name": "a"}, after={"id": 1, "name": "c"}, lsn=3),
        change("u", before={"id": 2, "name": "b"}, after={"id": 2, "name": "d"}, lsn=4),
        change("u", before={"id": 1, "name": "c"}, after={"id": 1, "name": "e"}, lsn=5),
        change("d", before={"id": 2, "name": "d"}, after=None, lsn=6),
        change("u", before={"id": 3, "name": "x"}, after={"id": 4, "name": "x"}, lsn=7),  # key changed
    ]
    operations = operations_for(changes, shapes={"thing": SHAPE}, types=TYPES)
    assert [(o.kind, o.keys) for o in operations] == [
        ("upsert", [1, 2]),
        ("update", [1, 2]),
        ("update", [1]),
        ("delete", [2, 3]),
        ("upsert", [4]),
    ]
    assert operations[1].columns == ("name",) and operations[1].rows[0] == {"id": 1, "name": "c"}


def test_per_table_grouping_joins_a_tables_changes_across_other_tables_and_keeps_their_order() -> None:
    line = TableShape(
        name="line",
        key="id",
        columns=("id", "thing_id"),
        json_columns=frozenset(),
        sequence=None,
        source_sequence=None,
    )
    shapes = {"thing": SHAPE, "line": line}
    types = {**TYPES, "line": {"id": ColumnType("bigint"), "thing_id": ColumnType("bigint")}}
    changes = []
    for n in (1, 2, 3):  # an order and its line, three times, as a stream interleaves them
        changes.append(change(after={"id": n, "name": "o"}, lsn=10 * n))
        changes.append(change(table="line", after={"id": n, "thing_id": n}, lsn=10 * n + 1))
    changes.append(change("d", before={"id": 2, "name": "o"}, after=None, lsn=99))
    changes.append(change(after={"id": 2, "name": "again"}, lsn=100))
    strict = operations_for(changes, shapes=shapes, types=types)
    assert len(strict) == 8
    grouped = operations_for(changes, shapes=shapes, types=types, per_table=True)
    assert [(o.table, o.kind, o.keys) for o in grouped] == [
        ("thing", "upsert", [1, 2, 3]),
        ("line", "upsert", [1, 2, 3]),
        ("thing", "delete", [2]),
        ("thing", "upsert", [2]),
    ]


def test_a_stream_that_stops_hearing_from_its_source_reports_a_growing_lag() -> None:
    from datetime import UTC, datetime

    from migrations.apply import BatchOutcome
    from migrations.streams import StreamProgress

    progress = StreamProgress()
    assert progress.current_lag(1000.0) is None
    at = datetime.fromtimestamp(1000.0, tz=UTC)
    progress.record(BatchOutcome(1, 0, 0, None, 10, at, 0.02, True))
    assert progress.current_lag(1000.3) == 0.02  # within a heartbeat interval: the batch's lag
    assert progress.current_lag(1010.5) == 10.0  # ten seconds without a heartbeat
