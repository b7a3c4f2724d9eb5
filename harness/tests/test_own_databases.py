"""Databases of one's own (what each benchmark runs on): fresh at the start whatever a killed or
other run left in them, dropped at the end; and never someone else's."""

import os
import subprocess
import sys
import textwrap

import psycopg
import pytest
from django.conf import settings

from harness.django_bootstrap import bench_database_prefix
from harness.own_databases import NotOwnDatabase, own_database_names
from ops.database_setup import server_dsn
from ops.process_group import PROJECT_ROOT

pytestmark = pytest.mark.integration

RUN = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {root!r})
    from harness.django_bootstrap import bench_database_prefix, django_start
    prefix = bench_database_prefix("harnesstest")
    django_start(service="legacy", db_name_prefix=prefix)
    from django.db import connection
    from harness.own_databases import own_databases
    from legacy.shop.models import Product
    with own_databases(prefix):
        with connection.cursor() as cursor:
            cursor.execute("SELECT to_regclass('left_behind') IS NULL")
            print("left_behind gone:", cursor.fetchone()[0])
        print("products:", Product.objects.count())
    """
)


def databases_named(prefix: str) -> list[str]:
    with psycopg.connect(server_dsn("default"), autocommit=True) as conn:
        rows = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", [prefix + "%"])
        return sorted(name for (name,) in rows.fetchall())


def test_a_run_starts_on_fresh_migrated_databases_and_drops_them_at_the_end() -> None:
    prefix = f"{os.environ.get('DB_NAME_PREFIX', '')}bench_harnesstest_"
    with psycopg.connect(server_dsn("default"), autocommit=True) as conn:
        # What an earlier run left behind: a database with rows of its own.
        conn.execute(f'DROP DATABASE IF EXISTS "{prefix}legacy" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{prefix}legacy"')
    with psycopg.connect(server_dsn("default").replace("dbname=postgres", f"dbname={prefix}legacy")) as conn:
        conn.execute("CREATE TABLE left_behind (id int)")
    run = subprocess.run(
        [sys.executable, "-c", RUN.format(root=str(PROJECT_ROOT))],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=PROJECT_ROOT,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "left_behind gone: True" in run.stdout
    assert "products: 0" in run.stdout
    assert databases_named(prefix) == []


def test_each_benchmark_has_a_prefix_of_its_own_under_the_checkouts_prefix(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DB_NAME_PREFIX", "dev_")
    assert bench_database_prefix("proxy") == "dev_bench_proxy_"
    assert bench_database_prefix("proxy") != bench_database_prefix("baseline")


def test_databases_without_the_runs_prefix_are_never_dropped() -> None:
    names = [config["NAME"] for config in settings.DATABASES.values()]
    with pytest.raises(NotOwnDatabase, match="refusing to reset"):
        own_database_names("bench_nobody_")
    assert own_database_names("") == names
