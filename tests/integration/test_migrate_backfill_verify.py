"""`manage.py migrate_data plan | backfill | verify | status` on the real test databases: a seeded
legacy database copied into the shop service's database, a backfill killed with SIGKILL and resumed,
a row changed behind the toolkit's back, dry runs and refusals.

The slices come from a plan file of the test's own (STRANGLER_PLAN_FILE), so the tests depend on
the shop tables only, not on the monolith's plan.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.management import call_command

from harness.proxy_plan import plan_route, plan_slice, plan_text
from harness.waiting import wait_until
from migrations.backfill import BackfillOptions, backfill_slice, checkpoints_read
from migrations.raw_connections import raw_connect
from migrations.slices import SliceRefused, slice_get, slice_tables_forget
from migrations.state import CHECKPOINT_TABLE, SYNC_WRITER, WRITER_SETTING
from migrations.steps import StepRefused
from migrations.stray_writes import stray_writes_list
from migrations.verify import DIFFERS, MISSING, RowDifference, verify_slice
from ops.process_group import PROJECT_ROOT, database_env, manage_command
from strangler.models import Slice as ControlSlice

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True, databases="__all__")]

SHOP_TABLES = (
    "shop_material",
    "shop_product",
    "shop_product_material",
    "shop_product_option",
    "shop_customer",
    "shop_order",
    "shop_order_line",
    "shop_order_status_history",
)
PARENTS = (
    ("shop_product_material", "shop_product"),
    ("shop_product_material", "shop_material"),
    ("shop_product_option", "shop_product"),
    ("shop_order", "shop_customer"),
    ("shop_order_line", "shop_order"),
    ("shop_order_line", "shop_product"),
    ("shop_order_status_history", "shop_order"),
)
PROBE_TABLE = "migrate_probe_item"
# Nothing listens on port 9: the toolkit reads the plan's slices, never its backends.
PLAN = plan_text(
    backends={"legacy": "http://127.0.0.1:9", "shop": "http://127.0.0.1:9"},
    slices={
        # Children first: the toolkit orders the tables by their foreign keys itself.
        "shop": plan_slice(
            service="shop", routes=[plan_route("shop", "/shop/")], tables=list(reversed(SHOP_TABLES))
        ),
        "probe": plan_slice(service="shop", routes=[plan_route("probe", "/probe/")], tables=[PROBE_TABLE]),
    },
)
LEGACY, SHOP = "default", "shop"  # the test process runs as SERVICE=legacy
STATE_TABLES = (
    "migration_backfill_checkpoint",
    "migration_sync_position",
    "migration_reverify_key",
    "migration_stray_write",
    "migration_marker",
)
LOG_DIR = PROJECT_ROOT / ".local" / "test-logs"


def _sql(
    alias: str, query: str, params: list[Any] | None = None, *, writer: str | None = None
) -> list[tuple]:
    """One statement on a plain connection (no writer tag unless `writer`), committed."""
    with raw_connect(alias, application_name="test", autocommit=True) as conn:
        if writer is not None:
            with conn.transaction():
                conn.execute("SELECT set_config(%s, %s, true)", [WRITER_SETTING, writer])
                cursor = conn.execute(query, params)
        else:
            cursor = conn.execute(query, params)
        return cursor.fetchall() if cursor.description else []


def _toolkit_state_drop() -> None:
    for alias in (LEGACY, SHOP):
        for slot, pid in _sql(
            alias,
            "SELECT slot_name, active_pid FROM pg_replication_slots "
            "WHERE database = current_database() AND slot_name LIKE 'mig\\_%%'",
        ):
            if pid:
                _sql(alias, "SELECT pg_terminate_backend(%s)", [pid])
            wait_until(
                lambda s=slot, a=alias: (
                    not _sql(a, "SELECT 1 FROM pg_replication_slots WHERE slot_name = %s AND active", [s])
                ),
                seconds=10,
                what=f"slot {slot} released",
            )
            _sql(alias, "SELECT pg_drop_replication_slot(%s)", [slot])
        for (publication,) in _sql(alias, "SELECT pubname FROM pg_publication WHERE pubname LIKE 'mig\\_%%'"):
            _sql(alias, f'DROP PUBLICATION "{publication}"')
        _sql(alias, "DROP FUNCTION IF EXISTS migration_stray_write_record() CASCADE")
        _sql(alias, f"DROP TABLE IF EXISTS {', '.join(STATE_TABLES)}, {PROBE_TABLE}")


@pytest.fixture(autouse=True)
def plan_file(tmp_path: Path, settings: Any) -> Iterator[Path]:
    """The test plan, and no toolkit state (slots, state tables, triggers) before or after, and an
    empty shop database to start with (other modules, the contract suite's, leave rows in it)."""
    path = tmp_path / "plan.yaml"
    path.write_text(PLAN)
    settings.STRANGLER_PLAN_FILE = path
    _toolkit_state_drop()
    _sql(SHOP, f"TRUNCATE {', '.join(SHOP_TABLES)} CASCADE")
    slice_tables_forget()
    yield path
    _toolkit_state_drop()
    slice_tables_forget()


@pytest.fixture
def toolkit_env(plan_file: Path) -> dict[str, str]:
    """What `manage.py migrate_data` runs with, as a user starts it: SERVICE unset, the test databases."""
    env = {
        name: value for name, value in os.environ.items() if name not in ("SERVICE", "DJANGO_SETTINGS_MODULE")
    }
    env.update(database_env(settings.DATABASES))
    env["DB_NAME_PREFIX"] = f"test_{os.environ.get('DB_NAME_PREFIX', '')}"
    env["STRANGLER_PLAN_FILE"] = str(plan_file)
    env["LOG_LEVEL"] = "WARNING"
    return env


def migrate_data(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        manage_command("migrate_data", *args),
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def seed(orders: int) -> None:
    call_command("seed", orders=orders, products=12, customers=40, stdout=io.StringIO())


def counts(alias: str) -> dict[str, int]:
    return {table: _sql(alias, f"SELECT count(*) FROM {table}")[0][0] for table in SHOP_TABLES}


def test_backfill_of_a_seeded_legacy_database_verifies_clean_and_reports_to_the_control_plane(
    toolkit_env: dict[str, str], plan_file: Path
) -> None:
    seed(orders=300)
    call_command("strangler", "load-plan", str(plan_file), stdout=io.StringIO())
    slice_ = slice_get("shop")

    report = backfill_slice(slice_, BackfillOptions(chunk_rows=97))

    source_counts = counts(LEGACY)
    assert counts(SHOP) == source_counts
    assert {t.table: t.rows for t in report.tables} == source_counts
    # Parents first (the plan lists them children first): every chunk's references existed.
    order = [t.table for t in report.tables]
    for child, parent in PARENTS:
        assert order.index(parent) < order.index(child), order
    slot = slice_.stream_target("forward").slot_name
    assert slot.startswith("mig_shop_") and slot.endswith("_fwd")
    assert any(f"created replication slot {slot}" in action for action in report.actions)
    assert _sql(LEGACY, "SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", [slot])
    with raw_connect(SHOP, application_name="test", autocommit=True) as conn, conn.cursor() as cursor:
        checkpoints = checkpoints_read(cursor, "shop")
    assert {t: (c.rows_copied, c.done) for t, c in checkpoints.items()} == {
        t: (n, True) for t, n in source_counts.items()
    }

    verification = verify_slice(slice_, chunk_keys=50)

    assert verification.clean, verification.differences
    assert verification.rows_checked == sum(source_counts.values())
    control = ControlSlice.objects.using("control").get(name="shop")
    assert control.sync_verified_at == verification.verified_at
    assert control.sync_lag_seconds == 0.0

    status = migrate_data(toolkit_env, "status", "--slice", "shop", "--json")
    assert status.returncode == 0, status.stderr
    shown = json.loads(status.stdout)[0]
    assert shown["phase"] == "legacy"
    assert all(t["done"] for t in shown["backfill"])
    assert shown["stray_writes"] == 0 and len(shown["stray_triggers"]) == len(SHOP_TABLES)
    assert shown["streams"][0]["slot_exists"] and not shown["streams"][1]["slot_exists"]
    assert shown["last_clean_verification"] is not None


def test_backfill_killed_mid_copy_resumes_without_copying_a_row_twice(toolkit_env: dict[str, str]) -> None:
    seed(orders=1500)
    source_counts = counts(LEGACY)
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    with open(LOG_DIR / "migrate-backfill-killed.log", "wb") as log:
        process = subprocess.Popen(
            manage_command("migrate_data", "backfill", "--slice", "shop", "--chunk-rows", "150",
                           "--max-rows-per-second", "2000"),
            env=toolkit_env, cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip

        def copied() -> int:
            rows = (
                _sql(SHOP, f"SELECT coalesce(sum(rows_copied), 0) FROM {CHECKPOINT_TABLE}")
                if _sql(SHOP, f"SELECT to_regclass('{CHECKPOINT_TABLE}')")[0][0]
                else [(0,)]
            )
            return int(rows[0][0])

        try:
            # Killed inside the orders table (40 customers, then 1,500 orders in chunks of 150): at 1,500
            # the kill could land on the table's last chunk, before the next table has a checkpoint.
            wait_until(lambda: copied() >= 700, seconds=60, interval=0.05, what="the backfill copying")
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
    killed_at = copied()
    assert 0 < killed_at < sum(source_counts.values()), "the kill was not mid-copy"
    assert not all(done for (done,) in _sql(SHOP, f"SELECT done FROM {CHECKPOINT_TABLE}"))

    resumed = migrate_data(toolkit_env, "backfill", "--slice", "shop", "--chunk-rows", "150")

    assert resumed.returncode == 0, resumed.stderr
    assert "backfill of slice shop done" in resumed.stdout
    copied_rows = dict(_sql(SHOP, f"SELECT table_name, rows_copied FROM {CHECKPOINT_TABLE}"))
    assert copied_rows == source_counts  # each row counted once: none copied twice
    assert counts(SHOP) == source_counts
    for table in SHOP_TABLES:
        assert _sql(SHOP, f"SELECT count(DISTINCT id) = count(*) FROM {table}") == [(True,)]
    verification = migrate_data(toolkit_env, "verify", "--slice", "shop", "--json")
    assert verification.returncode == 0, verification.stdout + verification.stderr
    assert json.loads(verification.stdout)["clean"] is True


def test_a_row_changed_behind_the_toolkits_back_is_named_and_reported_as_a_stray_write() -> None:
    seed(orders=200)
    slice_ = slice_get("shop")
    backfill_slice(slice_, BackfillOptions(chunk_rows=1000))
    order_id, status = _sql(SHOP, "SELECT id, status FROM shop_order ORDER BY id OFFSET 17 LIMIT 1")[0]

    _sql(SHOP, "UPDATE shop_order SET status = %s WHERE id = %s", [f"{status}-x"[:16], order_id])

    report = verify_slice(slice_, report_progress=False, chunk_keys=100, recheck_seconds=0.5)
    assert not report.clean
    assert report.differences == [RowDifference("shop_order", order_id, DIFFERS, ("status",))]
    [stray] = report.stray_writes
    assert (stray.table, stray.key, stray.operation, stray.writer) == (
        "shop_order",
        str(order_id),
        "UPDATE",
        "",
    )
    assert stray.application_name == "test"


def test_writes_tagged_by_the_service_or_the_sync_are_not_stray_and_a_deleted_row_is_missing() -> None:
    seed(orders=50)
    slice_ = slice_get("shop")
    backfill_slice(slice_, BackfillOptions())
    first, second, third = (row[0] for row in _sql(SHOP, "SELECT id FROM shop_customer ORDER BY id LIMIT 3"))

    _sql(SHOP, "UPDATE shop_customer SET name = 'by the service' WHERE id = %s", [first], writer="shop")
    _sql(SHOP, "UPDATE shop_customer SET name = 'by the sync' WHERE id = %s", [second], writer=SYNC_WRITER)
    _sql(SHOP, "UPDATE shop_customer SET name = 'by another' WHERE id = %s", [third], writer="crm")
    _sql(
        SHOP,
        "DELETE FROM shop_order_status_history WHERE id = (SELECT min(id) FROM shop_order_status_history)",
    )

    strays = stray_writes_list(slice_)
    assert [(s.table, s.operation, s.writer) for s in strays] == [
        ("shop_customer", "UPDATE", "crm"),
        ("shop_order_status_history", "DELETE", ""),
    ]
    assert strays[0].key == str(third)
    report = verify_slice(slice_, report_progress=False, recheck_seconds=0)
    assert {(d.table, d.kind) for d in report.differences} == {
        ("shop_customer", DIFFERS),
        ("shop_order_status_history", MISSING),
    }
    assert sorted(d.key for d in report.differences if d.table == "shop_customer") == [first, second, third]


def test_verify_changed_checks_only_the_reverify_set_and_clears_the_keys_found_equal() -> None:
    seed(orders=50)
    slice_ = slice_get("shop")
    backfill_slice(slice_, BackfillOptions())
    ids = [row[0] for row in _sql(SHOP, "SELECT id FROM shop_order ORDER BY id LIMIT 3")]
    _sql(SHOP, "UPDATE shop_order SET currency = 'XXX' WHERE id = %s", [ids[2]], writer=SYNC_WRITER)
    # What the sync records for each key it touches.
    for key in ids:
        _sql(SHOP, "INSERT INTO migration_reverify_key (slice_name, table_name, key) VALUES (%s, %s, %s)",
             ["shop", "shop_order", key])  # fmt: skip

    report = verify_slice(slice_, changed_only=True, recheck_seconds=0)

    assert report.rows_checked == 3
    assert report.differences == [RowDifference("shop_order", ids[2], DIFFERS, ("currency",))]
    assert report.reverify_keys_cleared == 2
    assert _sql(SHOP, "SELECT key FROM migration_reverify_key") == [(str(ids[2]),)]
    assert report.verified_at is None  # only a full pass is reported to the control plane


def test_dry_run_changes_nothing(toolkit_env: dict[str, str]) -> None:
    seed(orders=30)

    dry = migrate_data(toolkit_env, "backfill", "--slice", "shop", "--dry-run")

    assert dry.returncode == 0, dry.stderr
    assert "dry run, nothing changed" in dry.stdout
    slot = slice_get("shop").stream_target("forward").slot_name
    assert f"create replication slot and publication {slot} in legacy" in dry.stdout
    assert "copy shop_order from the start by id" in dry.stdout
    assert not _sql(LEGACY, "SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", [slot])
    assert _sql(SHOP, f"SELECT to_regclass('{CHECKPOINT_TABLE}')") == [(None,)]
    assert not any(counts(SHOP).values())

    backfill_slice(slice_get("shop"), BackfillOptions())
    before = counts(SHOP)
    restart = migrate_data(toolkit_env, "backfill", "--slice", "shop", "--restart", "--dry-run")

    assert restart.returncode == 0, restart.stderr
    [emptying] = [line for line in restart.stdout.splitlines() if line.startswith("  - empty ")]
    assert all(table in emptying for table in SHOP_TABLES)
    assert counts(SHOP) == before
    assert all(done for (done,) in _sql(SHOP, f"SELECT done FROM {CHECKPOINT_TABLE}"))


def test_a_target_with_rows_no_checkpoint_accounts_for_is_refused_until_restart(
    toolkit_env: dict[str, str],
) -> None:
    seed(orders=20)
    insert = "INSERT INTO shop_material (id, code, name, unit, unit_cost) VALUES (999999, 'X', 'x', 'kg', 1)"
    _sql(SHOP, insert, writer="shop")

    refused = migrate_data(toolkit_env, "backfill", "--slice", "shop")

    assert refused.returncode != 0
    assert "already has rows in shop_material that no backfill checkpoint accounts for" in refused.stderr
    assert "--restart" in refused.stderr
    with pytest.raises(StepRefused):
        backfill_slice(slice_get("shop"), BackfillOptions())

    restarted = migrate_data(toolkit_env, "backfill", "--slice", "shop", "--restart")

    assert restarted.returncode == 0, restarted.stderr
    assert counts(SHOP) == counts(LEGACY)


def test_a_slice_whose_columns_differ_is_refused_by_plan_and_backfill(toolkit_env: dict[str, str]) -> None:
    _sql(LEGACY, f"CREATE TABLE {PROBE_TABLE} (id bigint PRIMARY KEY, name text, price numeric(10, 2))")
    _sql(SHOP, f"CREATE TABLE {PROBE_TABLE} (id bigint PRIMARY KEY, name text, price integer)")

    plan = migrate_data(toolkit_env, "plan")

    assert plan.returncode != 0
    assert "slice shop (service shop): legacy (" in plan.stdout
    assert (
        f"slice probe (service shop): REFUSED: Slice 'probe', table {PROBE_TABLE}: columns of another type "
        "on each side: price (numeric -> integer)." in plan.stdout
    )
    assert "1 of 2 slices refused: probe." in plan.stderr
    backfill = migrate_data(toolkit_env, "backfill", "--slice", "probe")
    assert backfill.returncode != 0
    assert "columns of another type on each side: price (numeric -> integer)" in backfill.stderr
    with pytest.raises(SliceRefused):
        verify_slice(slice_get("probe"), report_progress=False)
    assert migrate_data(toolkit_env, "plan", "--slice", "shop").returncode == 0
