"""`manage.py db_setup` (what `make db` runs) on fresh databases: each database gets the tables of
the apps that live there, and a database an earlier db_setup left half-migrated is mended."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from django.conf import settings

from ops.process_group import manage_command

pytestmark = pytest.mark.integration

DATABASES = ("legacy", "shop", "crm", "pricing", "production", "control")
FRAMEWORK_TABLES = {
    "auth_user",
    "authtoken_token",
    "django_session",
    "django_content_type",
    "django_admin_log",
}


def _server(dbname: str = "postgres") -> psycopg.Connection:
    config = settings.DATABASES["default"]
    return psycopg.connect(
        host=config["HOST"], port=config["PORT"], user=config["USER"], dbname=dbname, autocommit=True
    )


def _tables(prefix: str, name: str) -> set[str]:
    with _server(f"{prefix}{name}") as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
    return {row[0] for row in rows}


@pytest.fixture
def fresh_prefix() -> Iterator[str]:
    """A database prefix no database has yet; its databases are dropped afterwards."""
    prefix = f"{os.environ.get('DB_NAME_PREFIX', '')}setup{uuid.uuid4().hex[:6]}_"
    yield prefix
    with _server() as conn:
        for name in DATABASES:
            conn.execute(f'DROP DATABASE IF EXISTS "{prefix}{name}" WITH (FORCE)')


def _run(prefix: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    child = {k: v for k, v in os.environ.items() if not k.endswith("_DATABASE_URL") and k != "SERVICE"}
    return subprocess.run(
        manage_command(*args),
        env={**child, "DB_NAME_PREFIX": prefix, "DJANGO_SETTINGS_MODULE": "config.settings", **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_db_setup_gives_each_database_its_own_apps_tables_and_the_proxy_working_auth(
    fresh_prefix: str,
) -> None:
    setup = _run(fresh_prefix, "db_setup")
    assert setup.returncode == 0, setup.stderr
    control = _tables(fresh_prefix, "control")
    # The proxy's staff, tokens, sessions and admin log live in its own database.
    assert control >= FRAMEWORK_TABLES | {"strangler_slice", "strangler_audit_entry", "cdc_engine_state"}
    legacy = _tables(fresh_prefix, "legacy")
    assert legacy >= FRAMEWORK_TABLES | {"shop_order", "mes_production_order"}
    assert not {t for t in legacy if t.startswith(("strangler_", "cdc_engine"))}
    assert not {t for t in control if t.startswith(("shop_", "crm_", "mes_"))}
    # The shop service has its own copies of the shop tables (and its outbox); nobody else does.
    shop = _tables(fresh_prefix, "shop")
    assert shop >= {"shop_order", "shop_order_line", "shop_customer", "shop_outbox", "shop_inbox"}
    assert not {t for t in shop if t.startswith(("strangler_", "mes_", "crm_"))}
    for name in ("crm", "pricing", "production"):
        assert not {t for t in _tables(fresh_prefix, name) if t.startswith(("strangler_", "shop_order"))}
    migrate = _run(fresh_prefix, "migrate", SERVICE="proxy")
    assert migrate.returncode == 0, migrate.stderr


def test_db_setup_mends_framework_migrations_recorded_without_their_tables(fresh_prefix: str) -> None:
    assert _run(fresh_prefix, "db_setup").returncode == 0
    framework = {t for t in _tables(fresh_prefix, "control") if t.startswith(("auth", "django_"))}
    with _server(f"{fresh_prefix}control") as conn:  # what the old router left behind
        for table in sorted(framework - {"django_migrations"}):
            conn.execute(f"DROP TABLE IF EXISTS {table} CASCADE")
    setup = _run(fresh_prefix, "db_setup")
    assert setup.returncode == 0, setup.stderr
    assert (
        "control: migrations of admin, auth, authtoken, contenttypes, sessions were recorded" in setup.stdout
    )
    assert _tables(fresh_prefix, "control") >= FRAMEWORK_TABLES
