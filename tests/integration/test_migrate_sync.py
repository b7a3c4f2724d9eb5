"""`manage.py migrate_data sync` as a user runs it (SERVICE=migrations, a real Debezium engine per
direction) on a slice of two tables of this module's own, after a backfill: changes arrive once
each, also across kill -9 mid-batch; a column added to a legacy table does not stop the sync; a
marker arrives as last_marker; neither direction echoes the other's writes."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from harness.waiting import wait_until
from ops.process_group import PROJECT_ROOT, ManagedProcess, ProcessGroup, manage_command

pytestmark = [
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True, databases="__all__"),
]

LOG_DIR = PROJECT_ROOT / ".local" / "test-logs"
TABLES_DDL = (
    """CREATE TABLE synct_parent (
        id bigserial PRIMARY KEY,
        name text NOT NULL,
        note text NOT NULL DEFAULT '',
        amount numeric(12, 2) NOT NULL DEFAULT 0,
        data jsonb,
        big text,
        seen_at timestamptz,
        born date
    )""",
    """CREATE TABLE synct_child (
        id bigserial PRIMARY KEY,
        parent_id bigint NOT NULL REFERENCES synct_parent (id) ON DELETE CASCADE
            DEFERRABLE INITIALLY DEFERRED,
        qty integer NOT NULL
    )""",
)
PARENT_COLUMNS = "id, name, note, amount, data, big, seen_at, born"


def plan_text(slice_name: str) -> str:
    return f"""
version: 1
default_backend: legacy
backends:
  legacy: {{urls: ["http://127.0.0.1:9"]}}
  shop: {{urls: ["http://127.0.0.1:9"]}}
slices:
  {slice_name}:
    service: shop
    tables: [synct_parent, synct_child]
    routes:
      - {{name: synct, prefix: /synct/}}
"""


@dataclass
class SyncWorld:
    slice: Any  # migrations.slices.Slice
    env: dict[str, str]
    group: ProcessGroup
    process: ManagedProcess | None = None
    starts: int = 0

    def connect(self, alias: str) -> psycopg.Connection:
        from migrations.apply import database_conninfo

        return psycopg.connect(database_conninfo(alias, application_name="test"), autocommit=True)

    def source(self) -> psycopg.Connection:
        return self.connect(self.slice.source_alias)

    def target(self) -> psycopg.Connection:
        return self.connect(self.slice.target_alias)

    def start(self) -> None:
        self.starts += 1
        log = LOG_DIR / f"migrate-sync-{self.slice.name}-{self.starts}.log"
        command = manage_command("migrate_data", "sync", "--slice", self.slice.name)
        self.process = self.group.start(ManagedProcess("migrate-sync", command, self.env, log))

    def kill9(self) -> None:
        assert self.process is not None and self.process.popen is not None
        self.process.signal(signal.SIGKILL)
        self.process.popen.wait(timeout=10)

    def position(self, direction: str = "forward") -> dict[str, Any]:
        from migrations.state import stream_name

        alias = self.slice.applies_to_alias(direction)
        with self.connect(alias) as conn:
            row = conn.execute(
                "SELECT commit_lsn, change_lsn, changes_applied, last_marker, source_committed_at "
                "FROM migration_sync_position WHERE stream = %s",
                [stream_name(self.slice.name, direction)],
            ).fetchone()
        if row is None:
            return {"changes_applied": 0, "last_marker": "", "position": (0, 0)}
        return {"position": (row[0], row[1]), "changes_applied": row[2], "last_marker": row[3]}

    def wait_rows_equal(self, table: str, columns: str, *, seconds: float = 60) -> list[tuple]:
        def equal() -> list[tuple] | None:
            query = f"SELECT {columns} FROM {table} ORDER BY id"
            with self.source() as source, self.target() as target:
                expected = source.execute(query).fetchall()
                got = target.execute(query).fetchall()
            return expected if expected == got else None

        return wait_until(
            equal, seconds=seconds, interval=0.2, what=f"{table} equal on both sides", process=self.process
        )

    def alive(self) -> bool:
        return self.process is not None and self.process.alive()


def _tables_create(world: SyncWorld) -> None:
    for conn in (world.source(), world.target()):
        with conn:
            conn.execute("DROP TABLE IF EXISTS synct_child, synct_parent")
            for ddl in TABLES_DDL:
                conn.execute(ddl)


def _tables_drop(world: SyncWorld) -> None:
    for conn in (world.source(), world.target()):
        with conn:
            conn.execute("DROP TABLE IF EXISTS synct_child, synct_parent")


@pytest.fixture(scope="module")
def world(
    django_db_setup: None, django_db_blocker: Any, live_env: dict[str, str], tmp_path_factory: Any
) -> Iterator[SyncWorld]:
    """The module's slice: its tables on both sides with some rows, backfilled (forward slot first),
    and one `migrate_data sync` running on it."""
    from harness.slice_streams import slice_streams_drop
    from migrations.backfill import backfill_slice
    from migrations.slices import slice_get, slice_tables_forget
    from strangler.plan import plan_load_file

    LOG_DIR.mkdir(parents=True, exist_ok=True)
    name = f"sync{os.environ.get('DB_NAME_PREFIX', '').strip('_')}{uuid.uuid4().hex[:6]}".lower()
    plan_path = Path(tmp_path_factory.mktemp("plan")) / "plan.yaml"
    plan_path.write_text(plan_text(name))
    with django_db_blocker.unblock(), ProcessGroup() as group:
        slice_ = slice_get(name, plan=plan_load_file(plan_path))
        env = {
            **live_env,
            "SERVICE": "migrations",
            "STRANGLER_PLAN_FILE": str(plan_path),
            "LOG_LEVEL": "INFO",
            "CDC_RESTART_BACKOFF_INITIAL_SECONDS": "0.3",
        }
        world = SyncWorld(slice=slice_, env=env, group=group)
        _tables_create(world)
        slice_tables_forget()
        with world.source() as source:
            source.execute(
                "INSERT INTO synct_parent (name, amount, data, seen_at, born) "
                "SELECT 'p' || g, g * 1.5, jsonb_build_array(g), now(), date '2020-01-01' + g "
                "FROM generate_series(1, 20) g"
            )
            source.execute("INSERT INTO synct_child (parent_id, qty) SELECT id, 1 FROM synct_parent")
        try:
            backfill_slice(slice_)
            world.start()
            yield world
        finally:
            if world.process is not None:
                world.process.stop(timeout=30)
            slice_streams_drop(slice_)
            _tables_drop(world)
            slice_tables_forget()


def test_changes_after_the_backfill_arrive_and_an_update_leaves_other_columns_alone(world: SyncWorld) -> None:
    with world.source() as source:
        new_id = source.execute(
            "INSERT INTO synct_parent (name, amount, data, big, seen_at, born) "
            "VALUES ('new', 12.34, '{\"a\": [1, 2]}', repeat('x', 100000), '2024-05-06T07:08:09.123456Z', "
            "'1999-12-31') RETURNING id"
        ).fetchone()[0]
        source.execute("INSERT INTO synct_child (parent_id, qty) VALUES (%s, 7)", [new_id])
        source.execute("UPDATE synct_parent SET amount = amount + 1 WHERE id = 1")
        source.execute("DELETE FROM synct_child WHERE parent_id = 2")
        source.execute("DELETE FROM synct_parent WHERE id = 2")
    rows = world.wait_rows_equal("synct_parent", PARENT_COLUMNS)
    world.wait_rows_equal("synct_child", "id, parent_id, qty")
    assert len(rows) == 20 and rows[-1][1] == "new" and len(rows[-1][5]) == 100000
    assert rows[-1][4] == {"a": [1, 2]} and str(rows[-1][3]) == "12.34"

    # A column written on the new side is not overwritten by an update of another column at the source.
    with world.target() as target:
        target.execute("UPDATE synct_parent SET note = 'written on the new side' WHERE id = 3")
    with world.source() as source:
        source.execute("UPDATE synct_parent SET name = 'renamed' WHERE id = 3")
        # the unchanged TOASTed value of this row is not written back either
        source.execute("UPDATE synct_parent SET amount = 1 WHERE id = %s", [new_id])

    def arrived() -> tuple | None:
        with world.target() as target:
            row = target.execute("SELECT name, note FROM synct_parent WHERE id = 3").fetchone()
            amount = target.execute(
                "SELECT amount, length(big) FROM synct_parent WHERE id = %s", [new_id]
            ).fetchone()
        return (row, amount) if row[0] == "renamed" and amount[0] == 1 else None

    row, amount = wait_until(arrived, seconds=30, what="the two updates at the target", process=world.process)
    assert row == ("renamed", "written on the new side")
    assert amount[1] == 100000
    with world.target() as target:
        keys = target.execute(
            "SELECT table_name, key FROM migration_reverify_key WHERE slice_name = %s", [world.slice.name]
        ).fetchall()
    # Keys are kept as text, so that any single-column key type (authtoken_token's is text) fits.
    assert {("synct_parent", "3"), ("synct_parent", str(new_id)), ("synct_parent", "2")} <= set(keys)
    with world.source() as source:  # both sides equal again for the next tests
        source.execute("UPDATE synct_parent SET note = 'written on the new side' WHERE id = 3")
    world.wait_rows_equal("synct_parent", PARENT_COLUMNS)


def test_the_forward_lag_reaches_the_control_plane_and_the_verification_time_stays(world: SyncWorld) -> None:
    from datetime import UTC, datetime

    from config.routers import database_alias
    from strangler.models import Backend, Slice

    control = database_alias("control")
    legacy = Backend.objects.using(control).create(
        name=f"{world.slice.name}-legacy", base_urls=["http://x:1"]
    )
    new = Backend.objects.using(control).create(name=f"{world.slice.name}-new", base_urls=["http://x:2"])
    verified_at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    Slice.objects.using(control).create(
        name=world.slice.name, legacy_backend=legacy, new_backend=new, sync_verified_at=verified_at
    )

    def reported() -> Slice | None:
        row = Slice.objects.using(control).get(name=world.slice.name)
        return row if row.sync_lag_seconds is not None else None

    row = wait_until(reported, seconds=30, what="the lag reported", process=world.process)
    assert 0 <= row.sync_lag_seconds < 5 and row.sync_verified_at == verified_at


def test_a_column_added_to_a_legacy_table_does_not_stop_the_sync(world: SyncWorld) -> None:
    with world.source() as source:
        source.execute("ALTER TABLE synct_parent ADD COLUMN legacy_only text DEFAULT 'x'")
        try:
            source.execute("INSERT INTO synct_parent (name, legacy_only) VALUES ('after alter', 'y')")
            source.execute("UPDATE synct_parent SET legacy_only = 'z', name = 'altered' WHERE id = 4")
            world.wait_rows_equal("synct_parent", PARENT_COLUMNS)
        finally:
            source.execute("ALTER TABLE synct_parent DROP COLUMN legacy_only")
    assert world.alive()


def test_a_marker_written_at_the_source_arrives_as_last_marker(world: SyncWorld) -> None:
    token = uuid.uuid4().hex
    with world.source() as source:
        source.execute(
            "INSERT INTO migration_marker (slice_name, token) VALUES ('another-slice', %s)", ["other"]
        )
        source.execute(
            "INSERT INTO migration_marker (slice_name, token) VALUES (%s, %s)", [world.slice.name, token]
        )
    wait_until(
        lambda: world.position()["last_marker"] == token, seconds=30, what="the marker", process=world.process
    )


def test_once_applies_what_is_there_and_exits(world: SyncWorld) -> None:
    assert world.process is not None
    world.process.stop(timeout=30)  # one engine per slot: the running sync lets go of it
    with world.source() as source:
        source.execute("UPDATE synct_parent SET name = 'applied by --once' WHERE id = 9")
    try:
        result = subprocess.run(
            manage_command("migrate_data", "sync", "--slice", world.slice.name, "--once"),
            env={**os.environ, **world.env},
            capture_output=True,
            text=True,
            timeout=180,
            cwd=PROJECT_ROOT,
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        with world.target() as target:
            assert (
                target.execute("SELECT name FROM synct_parent WHERE id = 9").fetchone()[0]
                == "applied by --once"
            )
        assert f"{world.slice.name}:forward: 1 changes applied" in result.stdout
    finally:
        world.start()


def test_kill_9_mid_batch_loses_nothing_and_applies_nothing_twice(world: SyncWorld) -> None:
    before = world.position()["changes_applied"]
    changes = 0
    with world.source() as source:
        for _ in range(30):  # 30 transactions of 200 inserts and 100 updates each
            with source.transaction():
                source.execute(
                    "INSERT INTO synct_parent (name, amount) "
                    "SELECT 'bulk' || g, g FROM generate_series(1, 200) g"
                )
                source.execute(
                    "UPDATE synct_parent SET amount = amount + 1 WHERE id IN "
                    "(SELECT id FROM synct_parent WHERE name LIKE 'bulk%%' ORDER BY id DESC LIMIT 100)"
                )
            changes += 300
    # kill while the batches are being applied: some applied, not all
    wait_until(
        lambda: world.position()["changes_applied"] > before, seconds=60, interval=0.01, what="some applied"
    )
    world.kill9()
    killed_at = world.position()["changes_applied"] - before
    world.start()
    world.wait_rows_equal("synct_parent", PARENT_COLUMNS, seconds=90)
    wait_until(
        lambda: world.position()["changes_applied"] - before >= changes, seconds=30, what="all counted"
    )
    time.sleep(1.0)  # anything applied twice would be counted by now
    assert world.position()["changes_applied"] - before == changes, f"killed after {killed_at} of {changes}"
    assert 0 < killed_at < changes


def test_no_echo_between_the_forward_and_reverse_streams(world: SyncWorld) -> None:
    from cdc.replication import capture_setup

    # What a cutover does: the reverse slot (the sync follows it), sequences past the source's maximum.
    capture_setup(world.slice.stream_target("reverse"))
    with world.target() as target:
        target.execute("SELECT setval('synct_parent_id_seq', (SELECT max(id) FROM synct_parent) + 1000)")

    # reverse works: a write on the new side arrives at legacy
    with world.target() as target:
        target.execute("UPDATE synct_parent SET name = 'from new' WHERE id = 5")

    def at_legacy(expected: str) -> bool:
        with world.source() as source:
            return source.execute("SELECT name FROM synct_parent WHERE id = 5").fetchone()[0] == expected

    wait_until(lambda: at_legacy("from new"), seconds=60, what="reverse applied", process=world.process)
    forward_before = world.position("forward")["changes_applied"]
    reverse_before = world.position("reverse")["changes_applied"]

    # a newer write on the new side is not overwritten by an echo of the older one
    with world.target() as target:
        target.execute("UPDATE synct_parent SET name = 'newer on new' WHERE id = 5")
    wait_until(
        lambda: at_legacy("newer on new"), seconds=30, what="second reverse change", process=world.process
    )
    # and a legacy write reaches the new side without coming back
    with world.source() as source:
        source.execute("UPDATE synct_parent SET note = 'from legacy' WHERE id = 6")
        sentinel = source.execute(
            "INSERT INTO synct_parent (name) VALUES ('sentinel') RETURNING id"
        ).fetchone()[0]
    world.wait_rows_equal("synct_parent", PARENT_COLUMNS)
    with world.target() as target:
        sentinel_marker = target.execute("SELECT 1 FROM synct_parent WHERE id = %s", [sentinel]).fetchone()
        target.execute("INSERT INTO synct_parent (name) VALUES ('sentinel on new') RETURNING id")
    assert sentinel_marker is not None
    world.wait_rows_equal("synct_parent", PARENT_COLUMNS)
    time.sleep(1.0)  # echoes, if any, would have been applied by now

    # forward applied exactly the two legacy changes; reverse exactly its two
    assert world.position("forward")["changes_applied"] - forward_before == 2
    assert world.position("reverse")["changes_applied"] - reverse_before == 2
    with world.target() as target:
        assert target.execute("SELECT name FROM synct_parent WHERE id = 5").fetchone()[0] == "newer on new"

    # the sync stops the reverse stream when its slot is dropped
    from cdc.replication import capture_teardown

    capture_teardown(world.slice.stream_target("reverse"), dry_run=False)
    with world.target() as target:
        target.execute("UPDATE synct_parent SET name = 'after reverse stopped' WHERE id = 7")
    with world.source() as source:
        source.execute("UPDATE synct_parent SET name = 'forward still runs' WHERE id = 8")

    def forward_still_runs() -> bool:
        with world.target() as target:
            return (
                target.execute("SELECT name FROM synct_parent WHERE id = 8").fetchone()[0]
                == "forward still runs"
            )

    wait_until(
        forward_still_runs, seconds=30, what="forward after the reverse slot went", process=world.process
    )
    assert world.alive()
