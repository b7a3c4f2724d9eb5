"""What `migrate_data status` shows: where a slice stands in its migration, read from the control
plane (phase, last clean verification), the target (backfill checkpoints, re-verify set, stray
writes), each stream's position row and each replication slot."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from cdc.replication import slot_status
from migrations.backfill import checkpoints_read
from migrations.raw_connections import slice_connections, table_exists
from migrations.slices import Slice, slice_tables
from migrations.state import REVERIFY_TABLE, stream_name
from migrations.stray_writes import stray_triggers_installed, stray_writes_count
from migrations.stream_positions import StreamPosition, position_read
from migrations.table_stats import rows_estimate
from strangler import selectors


@dataclass(frozen=True)
class TableBackfill:
    table: str
    rows_source: int
    rows_copied: int
    done: bool
    started: bool
    last_key: str | None


@dataclass(frozen=True)
class StreamStatus:
    stream: str  # <slice>:forward or <slice>:reverse
    applies_to: str  # the database its position row is in
    position: StreamPosition | None
    slot_name: str
    slot_exists: bool
    slot_active: bool
    slot_retained_wal_bytes: int | None
    slot_lag_bytes: int | None


@dataclass
class SliceStatus:
    name: str
    service: str
    phase: str | None  # None: the control plane does not know the slice (`strangler load-plan`)
    canary_weight: float | None = None
    last_clean_verification: datetime | None = None
    reported_sync_lag_seconds: float | None = None
    backfill: list[TableBackfill] = field(default_factory=list)
    streams: list[StreamStatus] = field(default_factory=list)
    reverify_keys: int = 0
    stray_writes: int = 0
    stray_triggers: list[str] = field(default_factory=list)

    @property
    def backfill_done(self) -> bool:
        return bool(self.backfill) and all(t.done for t in self.backfill)


def slice_status(slice_: Slice) -> SliceStatus:
    control = selectors.slice_list().filter(name=slice_.name).first()
    status = SliceStatus(
        name=slice_.name,
        service=slice_.service,
        phase=control.phase if control else None,
        canary_weight=float(control.canary_weight) if control else None,
        last_clean_verification=control.sync_verified_at if control else None,
        reported_sync_lag_seconds=control.sync_lag_seconds if control else None,
    )
    tables = slice_tables(slice_)
    with (
        slice_connections(slice_, application_name="migrate_data status") as (source, target),
        source.cursor() as source_cursor,
        target.cursor() as target_cursor,
    ):
        checkpoints = checkpoints_read(target_cursor, slice_.name)
        for table in tables:
            checkpoint = checkpoints.get(table.name)
            status.backfill.append(
                TableBackfill(
                    table=table.name,
                    rows_source=rows_estimate(source_cursor, table.name),
                    rows_copied=checkpoint.rows_copied if checkpoint else 0,
                    done=bool(checkpoint and checkpoint.done),
                    started=checkpoint is not None,
                    last_key=checkpoint.last_key if checkpoint else None,
                )
            )
        for direction, cursor in (("forward", target_cursor), ("reverse", source_cursor)):
            capture = slice_.stream_target(direction)
            slot = slot_status(capture)
            status.streams.append(
                StreamStatus(
                    stream=stream_name(slice_.name, direction),
                    applies_to=slice_.target_database if direction == "forward" else slice_.source_database,
                    position=position_read(cursor, stream_name(slice_.name, direction)),
                    slot_name=capture.slot_name,
                    slot_exists=slot.exists,
                    slot_active=slot.active,
                    slot_retained_wal_bytes=slot.retained_wal_bytes,
                    slot_lag_bytes=slot.lag_bytes,
                )
            )
        if table_exists(target_cursor, REVERIFY_TABLE):
            target_cursor.execute(
                f"SELECT count(*) FROM {REVERIFY_TABLE} WHERE slice_name = %s", [slice_.name]
            )
            row = target_cursor.fetchone()
            status.reverify_keys = int(row[0]) if row else 0
        status.stray_writes = stray_writes_count(target_cursor, slice_)
        status.stray_triggers = stray_triggers_installed(target_cursor, slice_)
    return status
