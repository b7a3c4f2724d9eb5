"""The pure parts of the toolkit's verification and backfill: row comparison, chunk bounds,
throttling and lag arithmetic (no database)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from migrations.backfill import throttle_delay
from migrations.slices import TableShape
from migrations.stream_positions import StreamPosition
from migrations.verify import DIFFERS, EXTRA, MISSING, RowDifference, bucket_bounds, compare_rows

TABLE = TableShape(
    name="item",
    key="id",
    columns=("id", "name", "price", "tags"),
    json_columns=frozenset({"tags"}),
    sequence=None,
    source_sequence=None,
)


def test_compare_rows_names_missing_extra_and_the_columns_that_differ() -> None:
    source = {1: ("1", "a", "9.50", "[]"), 2: ("2", "b", "1.00", "[]"), 3: ("3", "c", "2.00", '["x"]')}
    target = {1: ("1", "a", "9.50", "[]"), 3: ("3", "C", "2.00", '["y"]'), 4: ("4", "d", "0.00", "[]")}

    found = compare_rows(TABLE, [1, 2, 3, 4], source, target)

    assert found == [
        RowDifference("item", 2, MISSING),
        RowDifference("item", 3, DIFFERS, ("name", "tags")),
        RowDifference("item", 4, EXTRA),
    ]


def test_a_key_gone_from_both_sides_is_no_difference() -> None:
    assert compare_rows(TABLE, [7], {}, {}) == []


def test_differences_describe_themselves_for_an_operator() -> None:
    assert RowDifference("item", 3, DIFFERS, ("name",)).describe() == "item key 3: differs in name"
    assert RowDifference("item", 2, MISSING).describe() == "item key 2: missing in the target"
    assert RowDifference("item", 4, EXTRA).describe() == "item key 4: in the target only"


def test_chunk_bounds_hold_every_key_of_the_chunk_as_postgresql_divides() -> None:
    chunk = 10
    for key in range(-35, 36):
        bucket = math.trunc(key / chunk)  # PostgreSQL's integer division truncates towards zero
        low, high = bucket_bounds(bucket, chunk)
        assert low < key < high, (key, bucket, low, high)


def test_throttle_waits_only_when_ahead_of_the_bound() -> None:
    assert throttle_delay(elapsed=1.0, rows=1000, max_rows_per_second=None) == 0.0
    assert throttle_delay(elapsed=1.0, rows=500, max_rows_per_second=1000) == 0.0
    assert throttle_delay(elapsed=1.0, rows=3000, max_rows_per_second=1000) == 2.0


def _position(committed: datetime | None, applied: datetime) -> StreamPosition:
    return StreamPosition("s:forward", 1, 1, "", 5, committed, applied)


def test_lag_is_source_commit_to_target_apply_and_zero_before_any_change() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert _position(now - timedelta(seconds=1.5), now).lag_seconds == 1.5
    assert _position(None, now).lag_seconds == 0.0
    # Clocks of two servers may disagree by a little: never a negative lag.
    assert _position(now + timedelta(seconds=1), now).lag_seconds == 0.0
