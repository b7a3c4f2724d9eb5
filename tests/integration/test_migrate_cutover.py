"""`manage.py migrate_data cutover | rollback` as operators run them, against a real proxy process
(`manage.py strangler serve`) in front of two controllable backends, a real `migrate_data sync`
keeping the slice's table in step, and real PostgreSQL: a freeze past its bound aborts cleanly (held
writes answered by legacy, none lost, the slice still canary), whether a write in flight holds the
acknowledgement back or the stream stops; a stop signal waits for the run; two operators at once; and
a cutover and a rollback from live that move writes and sequences both ways."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests

from harness.proxy_plan import plan_route, plan_slice, plan_text
from harness.waiting import wait_until
from ops.database_setup import database_dsn
from ops.process_group import PROJECT_ROOT, ManagedProcess, ProcessGroup, manage_command
from tests.integration.proxy_stack import backend_start, proxy_caught_up, proxy_routing, proxy_start

pytestmark = [
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True, databases="__all__"),
]

LOG_DIR = PROJECT_ROOT / ".local" / "test-logs"
TABLE = "cutt_item"
TABLE_DDL = f"""CREATE TABLE {TABLE} (
    id bigserial PRIMARY KEY,
    name text NOT NULL,
    qty integer NOT NULL DEFAULT 0
)"""
WRITE_PATH = "/cutt/items/"


def world_plan(name: str, legacy_url: str, new_url: str) -> str:
    slice_spec = plan_slice(service="shop", routes=[plan_route("cutt", "/cutt/")], tables=[TABLE])
    return plan_text(backends={"legacy": legacy_url, "shop": new_url}, slices={name: slice_spec})


def operator_env(env: dict[str, str]) -> dict[str, str]:
    """A `manage.py migrate_data` child as an operator starts it: no SERVICE of its own (manage.py
    picks the toolkit's); a child inherits this shell's SERVICE, which can only be named, not unset."""
    child = {name: value for name, value in env.items() if name != "SERVICE"}
    if "SERVICE" in os.environ:
        child["SERVICE"] = "migrations"
    return child


@dataclass
class Writes:
    """Customers writing through the proxy on a few threads until stopped: each answer's status and
    backend, and the most writes the proxy held at once."""

    url: str
    threads: int = 3
    stagger: float = 0.05  # seconds between the writers' first writes
    statuses: Counter[tuple[int, str]] = field(default_factory=Counter)
    most_held: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _running: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _write(self) -> None:
        session = requests.Session()
        while not self._stop.is_set():
            try:
                response = session.post(f"{self.url}{WRITE_PATH}", json={"n": 1}, timeout=15)
                answer = (response.status_code, response.headers.get("x-backend-name", "?"))
            except requests.RequestException as exc:
                answer = (0, type(exc).__name__)
            with self._lock:
                self.statuses[answer] += 1

    def _watch(self) -> None:
        while not self._stop.is_set():
            held = sum(proxy_routing(self.url)["held_writes"].values())
            self.most_held = max(self.most_held, held)
            time.sleep(0.02)

    def __enter__(self) -> Writes:
        for target in [self._write] * self.threads + [self._watch]:
            thread = threading.Thread(target=target, daemon=True)
            thread.start()
            self._running.append(thread)
            time.sleep(self.stagger)  # so that some write is nearly always in flight
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._running:
            thread.join(timeout=20)

    @property
    def sent(self) -> int:
        return sum(self.statuses.values())


@dataclass
class CutoverWorld:
    name: str
    plan: str
    env: dict[str, str]
    group: ProcessGroup
    legacy_url: str
    new_url: str
    proxy_url: str
    sync: ManagedProcess
    runs: int = 0

    @property
    def slice(self) -> Any:
        from migrations.slices import slice_get
        from strangler.plan import plan_parse

        return slice_get(self.name, plan=plan_parse(self.plan))

    def connect(self, side: str) -> psycopg.Connection[Any]:
        alias = self.slice.source_alias if side == "legacy" else self.slice.target_alias
        return psycopg.connect(database_dsn(alias, application_name="cutover test"), autocommit=True)

    def to_canary_at_100(self) -> None:
        """The control database is emptied after each test: load the plan again, up to canary 100."""
        from strangler import selectors, services
        from strangler.plan import plan_parse

        services.plan_apply(plan=plan_parse(self.plan), who="test")
        for _ in range(3):
            services.slice_promote(name=self.name, who="test", force=True, why="test setup")
        services.slice_set_weight(name=self.name, weight=Decimal(100), who="test")
        proxy_caught_up(self.proxy_url)
        wait_until(lambda: selectors.proxies_seen(seen_seconds=3), seconds=5, what="the proxy's heartbeat")

    def backend_mode(self, url: str, **mode: Any) -> None:
        requests.post(f"{url}/_control/mode", json=mode, timeout=5).raise_for_status()

    def received_writes(self, url: str) -> int:
        stats = requests.get(f"{url}/_control/stats", timeout=5).json()
        return int(stats["received"].get(f"POST {WRITE_PATH}", 0))

    def migrate_data(self, step: str, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            manage_command("migrate_data", step, "--slice", self.name, *args),
            cwd=PROJECT_ROOT,
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def migrate_data_start(self, step: str, *args: str) -> ManagedProcess:
        self.runs += 1
        log = LOG_DIR / f"migrate-{step}-{self.name}-{self.runs}.log"
        log.unlink(missing_ok=True)
        command = manage_command("migrate_data", step, "--slice", self.name, *args)
        return self.group.start(ManagedProcess(f"migrate-{step}", command, self.env, log))

    def control_slice(self) -> Any:
        from strangler.models import Slice

        return Slice.objects.using("control").get(name=self.name)

    def frozen(self) -> bool:
        return self.control_slice().write_freeze_until is not None

    def last_run(self) -> Any:
        from migrations.models import CutoverRun

        return CutoverRun.objects.using("control").filter(slice_name=self.name).order_by("-id").first()

    def reverse_slot_exists(self) -> bool:
        from cdc.replication import slot_status

        return slot_status(self.slice.stream_target("reverse")).exists


@pytest.fixture(scope="module")
def world(
    django_db_setup: None, django_db_blocker: Any, live_env: dict[str, str], tmp_path_factory: Any
) -> Iterator[CutoverWorld]:
    """The module's slice (one table of its own on both sides, backfilled), `migrate_data sync` on it,
    and a proxy in front of two controllable backends."""
    from harness.slice_streams import slice_streams_drop
    from migrations.backfill import backfill_slice
    from migrations.slices import slice_tables_forget

    LOG_DIR.mkdir(parents=True, exist_ok=True)
    name = f"cutt{os.environ.get('DB_NAME_PREFIX', '').strip('_')}{uuid.uuid4().hex[:6]}".lower()
    plan_path = Path(tmp_path_factory.mktemp("plan")) / "plan.yaml"
    with django_db_blocker.unblock(), ProcessGroup() as group:
        _, legacy_url = backend_start(group, "legacy")
        _, new_url = backend_start(group, "new")
        plan = world_plan(name, legacy_url, new_url)
        plan_path.write_text(plan)
        env = operator_env(
            {**live_env, "STRANGLER_PLAN_FILE": str(plan_path), "LOG_LEVEL": "INFO", "SERVICE": "migrations"}
        )
        # Writes are slowed down to seconds at legacy here: a read timeout above that.
        _, proxy_url = proxy_start(group, live_env, f"cutover-{name}", {"STRANGLER_READ_TIMEOUT": "10"})
        world = CutoverWorld(name, plan, env, group, legacy_url, new_url, proxy_url, sync=None)  # type: ignore[arg-type]
        for side in ("legacy", "new"):
            with world.connect(side) as conn:
                conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
                conn.execute(TABLE_DDL)
        slice_tables_forget()
        with world.connect("legacy") as conn:
            conn.execute(
                f"INSERT INTO {TABLE} (name, qty) SELECT 'item ' || g, g FROM generate_series(1, 50) g"
            )
        try:
            backfill_slice(world.slice)
            world.sync = group.start(
                ManagedProcess(
                    "migrate-sync",
                    manage_command("migrate_data", "sync", "--slice", name),
                    env,
                    LOG_DIR / f"migrate-sync-{name}.log",
                )
            )
            from migrations.cutover import marker_arrived, marker_write

            token = marker_write(world.slice, "forward")
            wait_until(
                lambda: marker_arrived(world.slice, "forward", token),
                seconds=90,
                interval=0.2,
                what="the forward stream running",
                process=world.sync,
            )
            yield world
        finally:
            if world.sync is not None:
                world.sync.stop(timeout=30)
            slice_streams_drop(world.slice)
            for side in ("legacy", "new"):
                with world.connect(side) as conn:
                    conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
            slice_tables_forget()


@pytest.fixture(autouse=True)
def reverse_slot_gone(world: CutoverWorld) -> Iterator[None]:
    """The control database is emptied after each test, the streams' slots are not: a test that
    leaves the slice live leaves the reverse slot, which the next one's canary must not have."""
    yield
    if world.reverse_slot_exists():
        from cdc.replication import capture_teardown

        capture_teardown(world.slice.stream_target("reverse"), dry_run=False)
        time.sleep(1.0)  # the sync notices within half a second and stops its reverse stream


def frozen_then(world: CutoverWorld, process: ManagedProcess) -> None:
    # Creating the reverse slot before the freeze waits for the server's running transactions.
    wait_until(world.frozen, seconds=120, interval=0.002, what="the write freeze", process=process)


def test_a_freeze_past_its_bound_aborts_held_writes_go_to_legacy_and_none_is_lost(
    world: CutoverWorld,
) -> None:
    world.to_canary_at_100()
    # Every write takes 1.5 s at legacy and eight customers write without pause: when the freeze
    # comes, the latest write has over a second to go, so the proxy cannot acknowledge within 0.6 s,
    # and the writes that arrive meanwhile are held.
    world.backend_mode(world.legacy_url, delay_ms=1500)
    world.backend_mode(world.new_url, delay_ms=0)
    with Writes(world.proxy_url, threads=8, stagger=0.19) as writes:
        time.sleep(0.5)
        run = world.migrate_data("cutover", "--max-freeze-ms", "600", "--who", "alice")
        time.sleep(1.0)  # writes after the abort go to legacy as before
    assert run.returncode == 1, run.stdout + run.stderr
    assert "aborted at step 'acknowledged'" in run.stderr and "the slice stays canary" in run.stderr, (
        run.stderr
    )
    assert "released the held writes without a flip" in run.stdout
    record = world.last_run()
    assert (record.outcome, record.failed_step, record.who) == ("aborted", "acknowledged", "alice")
    assert 600 <= record.freeze_ms < 1000, record.freeze_ms
    control = world.control_slice()
    assert control.phase == "canary" and control.write_freeze_until is None
    assert not world.reverse_slot_exists()
    # Held writes were answered by legacy, every write was answered, and legacy got each one once.
    assert writes.most_held >= 1
    assert set(writes.statuses) == {(201, "legacy")}, writes.statuses
    assert world.received_writes(world.legacy_url) == writes.sent
    assert world.received_writes(world.new_url) == 0


def test_a_stream_that_stops_under_the_freeze_aborts_the_cutover_at_the_drain(world: CutoverWorld) -> None:
    world.to_canary_at_100()
    # Writes in flight hold the acknowledgement back until the stream is stopped under the freeze;
    # then no new write starts, the last ones end within 0.5 s, and the proxy acknowledges.
    world.backend_mode(world.legacy_url, delay_ms=500)
    writes = Writes(world.proxy_url).__enter__()
    try:
        cutover = world.migrate_data_start("cutover", "--max-freeze-ms", "2500", "--who", "bob")
        frozen_then(world, cutover)
        world.sync.signal(signal.SIGSTOP)  # writes in flight keep the marker from being written for now
        writes.__exit__()
        assert cutover.popen is not None
        cutover.popen.wait(timeout=60)
    finally:
        writes.__exit__()
        world.sync.signal(signal.SIGCONT)
    log = cutover.log_tail(60)
    assert cutover.popen.returncode == 1, log
    assert "Aborted at step 'drained'" in log and "the marker" in log, log
    assert "every proxy holds the writes" in log
    record = world.last_run()
    assert (record.outcome, record.failed_step) == ("aborted", "drained")
    assert world.control_slice().phase == "canary" and not world.frozen()
    assert not world.reverse_slot_exists()
    assert set(writes.statuses) == {(201, "legacy")}, writes.statuses
    assert world.received_writes(world.legacy_url) == writes.sent
    # The stream picks up where it stopped: a write at legacy still arrives at the new side.
    with world.connect("legacy") as conn:
        key = conn.execute(f"INSERT INTO {TABLE} (name) VALUES ('after the abort') RETURNING id").fetchone()[
            0
        ]

    def arrived() -> bool:
        with world.connect("new") as conn:
            return conn.execute(f"SELECT 1 FROM {TABLE} WHERE id = %s", [key]).fetchone() is not None

    wait_until(arrived, seconds=30, what="a write after the abort at the new side", process=world.sync)


def test_sigterm_during_a_cutover_waits_until_it_aborted(world: CutoverWorld) -> None:
    world.to_canary_at_100()
    # Eight writers, each write 3 s: when the freeze comes the latest has over 2.5 s to go, past the bound.
    world.backend_mode(world.legacy_url, delay_ms=3000)
    with Writes(world.proxy_url, threads=8, stagger=0.375) as writes:
        cutover = world.migrate_data_start("cutover", "--max-freeze-ms", "1200", "--who", "carol")
        frozen_then(world, cutover)
        signalled = time.monotonic()
        assert cutover.popen is not None
        os.kill(cutover.pid, signal.SIGTERM)
        time.sleep(0.3)
        assert cutover.alive(), "the cutover died at once instead of finishing its abort"
        cutover.popen.wait(timeout=60)
        took = time.monotonic() - signalled
    log = cutover.log_tail(60)
    assert cutover.popen.returncode == -signal.SIGTERM, log
    assert "SIGTERM received: it takes effect once this run has finished or aborted" in log, log
    assert 0.5 < took < 5, took
    record = world.last_run()
    assert (record.outcome, record.failed_step) == ("aborted", "acknowledged"), record.message
    assert world.control_slice().phase == "canary" and not world.frozen()
    assert not world.reverse_slot_exists()
    assert set(writes.statuses) == {(201, "legacy")}, writes.statuses


def test_two_operators_cutting_over_one_slice_one_wins_the_other_is_told_who_and_since_when(
    world: CutoverWorld,
) -> None:
    world.to_canary_at_100()
    world.backend_mode(world.legacy_url, delay_ms=0)
    first = world.migrate_data_start("cutover", "--who", "alice", "--hold-lock", "10")
    wait_until(lambda: world.last_run() is not None, seconds=30, what="alice's run", process=first)
    second = world.migrate_data("cutover", "--who", "bob")
    assert second.returncode == 1
    started = world.last_run().started_at.isoformat(timespec="seconds")
    assert f"Slice '{world.name}' is held by a cutover run of alice (pid {first.pid} on " in second.stderr
    assert f"since {started}; the cutover did not start" in second.stderr, second.stderr
    assert first.popen is not None and first.popen.wait(timeout=180) == 0, first.log_tail(60)
    assert world.control_slice().phase == "live"
    back = world.migrate_data("rollback", "--who", "alice")
    assert back.returncode == 0, back.stdout + back.stderr
    assert world.control_slice().phase == "canary" and not world.reverse_slot_exists()


def test_the_reverse_stream_the_sync_starts_on_a_new_reverse_slot_keeps_its_offset_table(
    world: CutoverWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The running sync starts the reverse stream's engine as soon as the cutover has made the reverse
    slot, and the engine makes its offset table then. The slot setup forgets the offsets of an earlier
    slot before it makes the new one, not after: dropped under the running engine, the table was gone
    for good (every offset flush failed; the changes came in lumps five seconds apart and a rollback's
    marker missed its bound). Here the setup returns only once the engine has made its table."""
    from django.db import connections

    from config.routers import database_alias
    from migrations import streams

    offset_table = streams.stream_engine_config(world.slice, "reverse").offset_table

    def table_exists() -> bool:
        with connections[database_alias("control")].cursor() as cursor:
            cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [offset_table])
            return bool(cursor.fetchone()[0])

    real_setup = streams.capture_setup

    def setup_then_engine_started(target: Any) -> list[str]:
        done = real_setup(target)
        wait_until(table_exists, seconds=60, what="the sync's reverse engine making its offset table")
        return done

    monkeypatch.setattr(streams, "capture_setup", setup_then_engine_started)
    assert not world.reverse_slot_exists()
    done = streams.stream_slot_setup(world.slice, "reverse")
    assert any(line.startswith("created replication slot") for line in done), done
    time.sleep(1.0)
    assert table_exists(), f"{offset_table} was dropped under the reverse engine the sync started"
    # The engine keeps saving its position there (its heartbeats move it; flushed every few seconds).

    def offsets_saved() -> bool:
        with connections[database_alias("control")].cursor() as cursor:
            cursor.execute(f'SELECT count(*) FROM "{offset_table}"')
            return bool(cursor.fetchone()[0])

    wait_until(offsets_saved, seconds=30, what="the reverse engine's offsets saved", process=world.sync)


def test_cutover_and_rollback_move_writes_and_sequences_both_ways(world: CutoverWorld) -> None:
    world.to_canary_at_100()
    world.backend_mode(world.legacy_url, delay_ms=0)
    dry = world.migrate_data("cutover", "--dry-run")
    assert dry.returncode == 0 and "DRY RUN, nothing changed" in dry.stdout, dry.stdout + dry.stderr
    assert world.control_slice().phase == "canary" and world.last_run() is None
    with world.connect("legacy") as conn:
        legacy_max = conn.execute(f"SELECT max(id) FROM {TABLE}").fetchone()[0]
    with Writes(world.proxy_url, threads=2) as writes:
        time.sleep(0.3)
        cutover = world.migrate_data("cutover", "--sequence-gap", "1000", "--who", "dana")
        time.sleep(0.5)
    assert cutover.returncode == 0, cutover.stdout + cutover.stderr
    record = world.last_run()
    assert record.outcome == "completed" and record.freeze_ms < 1000, record.steps_ms
    assert [step for step, _ in record.steps_ms] == [
        "reverse_slot_before_freeze",
        "freeze",
        "acknowledged",
        "drained",
        "verified",
        "reverse_slot",
        "sequences",
        "flip",
    ]
    assert f"writes frozen {record.freeze_ms:.1f} ms" in cutover.stdout
    assert world.control_slice().phase == "live" and world.reverse_slot_exists()
    assert {backend for _, backend in writes.statuses} <= {"legacy", "new"}
    assert all(status == 201 for status, _ in writes.statuses), writes.statuses
    assert writes.statuses[(201, "new")] >= 1  # the writes after the flip, held ones included

    # The new service writes under its own tag; its keys start past legacy's maximum plus the gap,
    # and the reverse stream brings the row to legacy.
    with world.connect("new") as conn:
        conn.execute("SET migration.writer = 'shop'")
        key = conn.execute(f"INSERT INTO {TABLE} (name) VALUES ('written live') RETURNING id").fetchone()[0]
    assert key > legacy_max + 1000

    def in_legacy() -> bool:
        with world.connect("legacy") as conn:
            return conn.execute(f"SELECT 1 FROM {TABLE} WHERE id = %s", [key]).fetchone() is not None

    wait_until(in_legacy, seconds=30, what="the live write in legacy", process=world.sync)

    rollback = world.migrate_data("rollback", "--sequence-gap", "1000", "--who", "dana")
    assert rollback.returncode == 0, rollback.stdout + rollback.stderr
    back = world.last_run()
    assert (back.kind, back.outcome, back.to_phase) == ("rollback", "completed", "canary")
    assert back.freeze_ms < 1000 and "sequences" in dict(back.steps_ms)
    assert world.control_slice().phase == "canary" and not world.reverse_slot_exists()
    with world.connect("legacy") as conn:
        after = conn.execute(f"INSERT INTO {TABLE} (name) VALUES ('legacy again') RETURNING id").fetchone()[0]
    assert after > key + 1000


def test_retire_needs_the_name_the_soak_and_a_clean_verification_then_archives_legacy(
    world: CutoverWorld,
) -> None:
    """Last in the module: it stops the slice's streams (the sync exits) and archives the table."""
    world.to_canary_at_100()
    world.backend_mode(world.legacy_url, delay_ms=0)
    assert world.migrate_data("cutover").returncode == 0
    unconfirmed = world.migrate_data("retire", "--confirm", "something-else")
    assert unconfirmed.returncode == 1 and f"(--confirm {world.name})" in unconfirmed.stderr
    soon = world.migrate_data("retire", "--confirm", world.name)
    assert soon.returncode == 1 and "The gate from live to retired did not pass" in soon.stderr, soon.stderr
    dry = world.migrate_data("retire", "--confirm", world.name, "--force", "--why", "test", "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert f'ALTER TABLE public."{TABLE}" RENAME TO "{TABLE}_' in dry.stdout
    assert "SET SCHEMA migration_archive" in dry.stdout and "DRY RUN, nothing changed" in dry.stdout
    assert world.control_slice().phase == "live" and world.reverse_slot_exists()
    retired = world.migrate_data("retire", "--confirm", world.name, "--force", "--why", "test")
    assert retired.returncode == 0, retired.stdout + retired.stderr
    assert "full verification clean" in retired.stdout
    assert world.control_slice().phase == "retired" and not world.reverse_slot_exists()
    with world.connect("legacy") as conn:
        archived = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'migration_archive' AND tablename LIKE %s",
            [f"{TABLE}_%"],
        ).fetchall()
        assert len(archived) == 1
        assert conn.execute("SELECT to_regclass(%s)", [f"public.{TABLE}"]).fetchone()[0] is None
        conn.execute(f'DROP TABLE migration_archive."{archived[0][0]}"')
    rollback = world.migrate_data("rollback")
    assert rollback.returncode == 1 and "is retired: its legacy tables are archived" in rollback.stderr
