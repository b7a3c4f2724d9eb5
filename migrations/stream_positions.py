"""Reading a stream's position row (`migration_sync_position`, written by the sync in the database
it applies to, first in every transaction): how far it got and how far behind the source it is."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from migrations.raw_connections import table_exists
from migrations.state import POSITION_TABLE


@dataclass(frozen=True)
class StreamPosition:
    stream: str
    commit_lsn: int
    change_lsn: int
    last_marker: str
    changes_applied: int
    source_committed_at: datetime | None
    applied_at: datetime

    @property
    def lag_seconds(self) -> float:
        """Source commit to target apply of the last change applied (0 before any change)."""
        if self.source_committed_at is None:
            return 0.0
        return max(0.0, (self.applied_at - self.source_committed_at).total_seconds())


def position_read(cursor: psycopg.Cursor[Any], stream: str) -> StreamPosition | None:
    """The stream's row in the cursor's database; None when its sync has not applied anything."""
    if not table_exists(cursor, POSITION_TABLE):
        return None
    cursor.execute(
        "SELECT stream, commit_lsn, change_lsn, last_marker, changes_applied, source_committed_at, "
        f"applied_at FROM {POSITION_TABLE} WHERE stream = %s",
        [stream],
    )
    row = cursor.fetchone()
    return StreamPosition(*row) if row else None
