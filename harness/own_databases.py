"""Databases of one's own for a run (a benchmark's): created empty and migrated at the start,
whatever an earlier or killed run left in them, and dropped at the end, so that no run sees
another's rows, slices, slots or tokens, in any order."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from django.conf import settings
from django.core.management import call_command
from django.db import connections
from psycopg import sql

from harness.waiting import wait_until
from ops.database_setup import server_dsn


class NotOwnDatabase(RuntimeError):
    """A database to be dropped does not carry the run's own prefix."""


def own_database_names(prefix: str) -> list[str]:
    """The databases of this process's settings; each must carry `prefix`, so a run configured
    wrongly stops here instead of dropping someone else's data."""
    names = [config["NAME"] for config in settings.DATABASES.values()]
    foreign = [name for name in names if not name.startswith(prefix)]
    if foreign:
        raise NotOwnDatabase(f"refusing to reset databases without the prefix {prefix!r}: {foreign}")
    return names


def own_databases_drop(prefix: str) -> list[str]:
    """Drops this run's databases and the replication slots on them; returns the dropped names."""
    names = own_database_names(prefix)
    connections.close_all()
    dropped = []
    with psycopg.connect(server_dsn("default"), autocommit=True, connect_timeout=5) as conn:
        for name in names:
            # A slot keeps its database from being dropped (and retains WAL while it exists).
            for (slot,) in conn.execute(
                "SELECT slot_name FROM pg_replication_slots WHERE database = %s", [name]
            ).fetchall():
                _slot_drop(conn, slot)
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
                conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
                dropped.append(name)
    return dropped


def _slot_drop(conn: psycopg.Connection, slot: str) -> None:
    def dropped() -> bool:
        active = conn.execute(
            "SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s", [slot]
        ).fetchone()
        if active is None:
            return True
        if active[0] is not None:  # an engine a killed run left behind
            conn.execute("SELECT pg_terminate_backend(%s)", [active[0]])
            return False
        conn.execute("SELECT pg_drop_replication_slot(%s)", [slot])
        return True

    wait_until(dropped, seconds=10, interval=0.2, what=f"replication slot {slot} dropped")


@contextmanager
def own_databases(prefix: str) -> Iterator[None]:
    """Fresh, migrated databases inside the block; dropped after it, also on an error or Ctrl-C."""
    own_databases_drop(prefix)
    try:
        call_command("db_setup", stdout=io.StringIO())
        yield
    finally:
        own_databases_drop(prefix)
