"""Lifecycle of a capture on PostgreSQL: the publication of the captured tables, their replica
identity, the logical replication slot, its lag, and the alert on retained WAL.

A slot keeps every WAL segment its consumer has not confirmed, whether an engine runs or not, so
an abandoned slot fills the disk: `slot_check` raises a gauge and logs a warning above the bound.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog
from django.db import connections

from cdc import metrics

logger = structlog.get_logger(__name__)

# Written by each engine's heartbeat (Debezium's heartbeat.action.query) and published with the
# captured tables: a slot only advances when its engine receives a change of its own database, so
# without it a quiet database's slot keeps all the WAL that other databases on the server write.
HEARTBEAT_TABLE = "cdc_heartbeat"


@dataclass(frozen=True)
class CaptureTarget:
    """Which tables of which database one engine captures, through which slot and publication."""

    database_alias: str
    tables: tuple[str, ...]
    slot_name: str
    publication_name: str
    # Tables whose old row values the translation needs on update/delete.
    replica_identity_full: tuple[str, ...] = ()

    @property
    def published_tables(self) -> tuple[str, ...]:
        return (*self.tables, HEARTBEAT_TABLE)

    def heartbeat_query(self) -> str:
        return (
            f"INSERT INTO {HEARTBEAT_TABLE} (slot_name, beat_at) VALUES ('{self.slot_name}', now()) "
            "ON CONFLICT (slot_name) DO UPDATE SET beat_at = excluded.beat_at"
        )


@dataclass
class SlotStatus:
    slot_name: str
    exists: bool
    active: bool = False
    lag_bytes: int | None = None
    retained_wal_bytes: int | None = None
    wal_status: str | None = None
    # pg_stat_replication's flush lag of the engine's connection (None when idle or not connected).
    flush_lag_seconds: float | None = None
    publication_tables: list[str] = field(default_factory=list)
    server_time: datetime | None = None


def _quote(name: str) -> str:
    if not name.replace("_", "").isalnum() or not name[:1].isalpha():
        raise ValueError(f"{name!r} is not a plain identifier (letters, digits, underscores)")
    return f'"{name}"'


def _fetch(alias: str, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    with connections[alias].cursor() as cursor:
        cursor.execute(sql, params or [])
        return list(cursor.fetchall()) if cursor.description else []


def capture_setup(target: CaptureTarget) -> list[str]:
    """Creates (or brings up to date) the publication, the replica identities and the slot.
    Safe to run repeatedly; returns what it changed."""
    alias, done = target.database_alias, []
    _quote(target.slot_name)  # embedded in the heartbeat query: a plain identifier only
    _fetch(
        alias,
        f"CREATE TABLE IF NOT EXISTS {HEARTBEAT_TABLE} (slot_name varchar(63) PRIMARY KEY, "
        "beat_at timestamptz NOT NULL)",
    )
    tables = ", ".join(_quote(t) for t in target.published_tables)
    existing = _fetch(
        alias, "SELECT tablename FROM pg_publication_tables WHERE pubname = %s", [target.publication_name]
    )
    published = _fetch(alias, "SELECT 1 FROM pg_publication WHERE pubname = %s", [target.publication_name])
    # Truncates are not published: the translation has no event for them, and test flushes use them.
    if not published:
        _fetch(
            alias,
            f"CREATE PUBLICATION {_quote(target.publication_name)} FOR TABLE {tables} "
            "WITH (publish = 'insert, update, delete')",
        )
        done.append(f"created publication {target.publication_name} for {', '.join(target.published_tables)}")
    elif sorted(row[0] for row in existing) != sorted(target.published_tables):
        _fetch(alias, f"ALTER PUBLICATION {_quote(target.publication_name)} SET TABLE {tables}")
        done.append(f"set publication {target.publication_name} to {', '.join(target.published_tables)}")
    for table in target.replica_identity_full:
        identity = _fetch(alias, "SELECT relreplident FROM pg_class WHERE oid = %s::regclass", [table])
        if identity and identity[0][0] != "f":
            _fetch(alias, f"ALTER TABLE {_quote(table)} REPLICA IDENTITY FULL")
            done.append(f"set replica identity full on {table}")
    if not _fetch(alias, "SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", [target.slot_name]):
        _fetch(alias, "SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", [target.slot_name])
        done.append(f"created replication slot {target.slot_name}")
        logger.info("cdc.slot_created", slot=target.slot_name)
    return done


def slot_status(target: CaptureTarget) -> SlotStatus:
    alias = target.database_alias
    rows = _fetch(
        alias,
        """
        SELECT s.active,
               pg_wal_lsn_diff(pg_current_wal_lsn(), s.confirmed_flush_lsn)::bigint,
               pg_wal_lsn_diff(pg_current_wal_lsn(), s.restart_lsn)::bigint,
               s.wal_status,
               EXTRACT(EPOCH FROM r.flush_lag)::float8,
               now()
        FROM pg_replication_slots s
        LEFT JOIN pg_stat_replication r ON r.pid = s.active_pid
        WHERE s.slot_name = %s
        """,
        [target.slot_name],
    )
    tables = [
        row[0]
        for row in _fetch(
            alias, "SELECT tablename FROM pg_publication_tables WHERE pubname = %s", [target.publication_name]
        )
    ]
    if not rows:
        return SlotStatus(target.slot_name, exists=False, publication_tables=tables)
    active, lag, retained, wal_status, flush_lag, server_time = rows[0]
    return SlotStatus(
        target.slot_name,
        exists=True,
        active=bool(active),
        lag_bytes=lag,
        retained_wal_bytes=retained,
        wal_status=wal_status,
        flush_lag_seconds=flush_lag,
        publication_tables=sorted(tables),
        server_time=server_time,
    )


def slot_check(target: CaptureTarget, *, max_retained_bytes: int) -> SlotStatus:
    """Updates the slot gauges and warns when the slot retains more WAL than the bound."""
    status = slot_status(target)
    if not status.exists:
        return status
    metrics.SLOT_LAG_BYTES.labels(target.slot_name).set(status.lag_bytes or 0)
    metrics.SLOT_RETAINED_WAL_BYTES.labels(target.slot_name).set(status.retained_wal_bytes or 0)
    over = (status.retained_wal_bytes or 0) > max_retained_bytes
    metrics.SLOT_RETAINED_WAL_ALERT.labels(target.slot_name).set(1 if over else 0)
    if over:
        logger.warning(
            "cdc.slot_retains_too_much_wal",
            slot=target.slot_name,
            retained_wal_bytes=status.retained_wal_bytes,
            bound_bytes=max_retained_bytes,
            active=status.active,
            hint="start the engine, or drop an abandoned slot with `manage.py cdc teardown --yes`",
        )
    return status


def capture_teardown(target: CaptureTarget, *, dry_run: bool) -> list[str]:
    """Drops the slot and the publication (the replica identities stay: they cost nothing on
    insert-only tables and another capture may rely on them)."""
    alias, actions = target.database_alias, []
    slot = _fetch(
        alias, "SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s", [target.slot_name]
    )
    if slot:
        if slot[0][0] is not None:
            actions.append(f"terminate the engine's replication connection (pid {slot[0][0]})")
            if not dry_run:
                _fetch(alias, "SELECT pg_terminate_backend(%s)", [slot[0][0]])
        actions.append(f"drop replication slot {target.slot_name}")
        if not dry_run:
            _slot_drop_when_inactive(alias, target.slot_name)
    if _fetch(alias, "SELECT 1 FROM pg_publication WHERE pubname = %s", [target.publication_name]):
        actions.append(f"drop publication {target.publication_name}")
        if not dry_run:
            _fetch(alias, f"DROP PUBLICATION IF EXISTS {_quote(target.publication_name)}")
    return actions


def _slot_drop_when_inactive(alias: str, slot_name: str, attempts: int = 50) -> None:
    for _ in range(attempts):
        rows = _fetch(alias, "SELECT active FROM pg_replication_slots WHERE slot_name = %s", [slot_name])
        if not rows:
            return
        if not rows[0][0]:
            _fetch(alias, "SELECT pg_drop_replication_slot(%s)", [slot_name])
            logger.info("cdc.slot_dropped", slot=slot_name)
            return
        time.sleep(0.1)
    raise RuntimeError(f"replication slot {slot_name} stayed active; stop its engine first")
