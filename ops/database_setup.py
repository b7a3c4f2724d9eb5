"""Creates the project's databases on the PostgreSQL server (and checks it can do logical
decoding), and migrates each one from a process of the SERVICE that owns it."""

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass

import psycopg
from django.apps import apps
from django.conf import settings
from django.core.management import call_command
from django.db import connections, router
from django.db.migrations.recorder import MigrationRecorder
from psycopg import sql

from config.processes import PROCESSES, SERVICES


class DatabaseSetupFailed(Exception):
    """Migrating one of the databases failed; the message names it and carries the output."""


@dataclass(frozen=True)
class DatabaseSetupResult:
    created: list[str]
    existing: list[str]
    wal_level: str


def server_dsn(alias: str) -> str:
    return database_dsn(alias, dbname="postgres")


def database_dsn(alias: str, *, dbname: str | None = None, application_name: str = "") -> str:
    """A libpq connection string for the database behind a Django alias (or another database on the
    same server), with the alias's options (the writer tag): for a connection of its own, outside
    Django's (a LISTEN, a session-level lock)."""
    config = connections[alias].settings_dict
    return psycopg.conninfo.make_conninfo(
        host=config["HOST"] or None,
        port=config["PORT"] or None,
        user=config["USER"] or None,
        password=config["PASSWORD"] or None,
        dbname=dbname or config["NAME"],
        options=(config.get("OPTIONS") or {}).get("options") or None,
        application_name=application_name or None,
    )


def databases_ensure(
    *, test_names: bool = False, report: Callable[[str], None] = print
) -> DatabaseSetupResult:
    """Creates each configured database that is missing; returns what it did and the wal_level."""
    created: list[str] = []
    existing: list[str] = []
    wal_level = ""
    for alias, config in settings.DATABASES.items():
        name = config["TEST"]["NAME"] if test_names else config["NAME"]
        with psycopg.connect(server_dsn(alias), autocommit=True, connect_timeout=5) as conn:
            wal_level = conn.execute("SHOW wal_level").fetchone()[0]  # type: ignore[index]
            found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
            if found:
                existing.append(name)
                continue
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            created.append(name)
            report(f"created database {name} ({alias})")
    return DatabaseSetupResult(created=created, existing=existing, wal_level=wal_level)


def phantom_migrations_forget(*, alias: str) -> list[str]:
    """Forgets the applied-migration records of apps none of whose tables exist on `alias`, so that
    migrate creates them. An earlier router recorded the framework apps' migrations as applied on
    the `control` database without creating their tables; a database set up since is left as it is.
    Returns the app labels it forgot.
    """
    connection = connections[alias]
    recorder = MigrationRecorder(connection)
    if not recorder.has_table():
        return []
    tables = set(connection.introspection.table_names())
    recorded = {app for app, _ in recorder.applied_migrations()}
    forgotten = []
    for app_config in apps.get_app_configs():
        if app_config.label not in recorded:
            continue
        expected = [
            model._meta.db_table
            for model in app_config.get_models()
            if model._meta.managed and not model._meta.proxy and router.allow_migrate_model(alias, model)
        ]
        # None of them, not some: a model added by a migration not applied yet is migrate's job.
        if expected and not set(expected) & tables:
            recorder.migration_qs.filter(app=app_config.label).delete()
            forgotten.append(app_config.label)
    return forgotten


def app_labels_rename(*, alias: str, renames: dict[str, str]) -> list[str]:
    """Moves the applied-migration and content-type records of renamed apps (old label -> new)
    to their new labels, so a database migrated before a rename is not migrated a second time
    (its tables exist; only the label changed). A label whose new name has records already is left
    alone. Returns the old labels it moved."""
    connection = connections[alias]
    recorder = MigrationRecorder(connection)
    if not renames or not recorder.has_table():
        return []
    recorded = {app for app, _ in recorder.applied_migrations()}
    tables = set(connection.introspection.table_names())
    moved = []
    with connection.cursor() as cursor:
        for old, new in renames.items():
            if old not in recorded or new in recorded:
                continue
            cursor.execute("UPDATE django_migrations SET app = %s WHERE app = %s", [new, old])
            if "django_content_type" in tables:
                cursor.execute(
                    "UPDATE django_content_type SET app_label = %s WHERE app_label = %s", [new, old]
                )
            moved.append(old)
    return moved


def own_database_migrate(*, report: Callable[[str], None] = print) -> None:
    """Migrates this process's own database with the apps of its SERVICE."""
    renamed = app_labels_rename(alias="default", renames=settings.MIGRATION_APP_LABEL_RENAMES)
    if renamed:
        report(
            f"{settings.SERVICE_DATABASE}: the migrations of {', '.join(sorted(renamed))} now stand "
            "under the apps' new labels"
        )
    forgotten = phantom_migrations_forget(alias="default")
    if forgotten:
        report(
            f"{settings.SERVICE_DATABASE}: migrations of {', '.join(sorted(forgotten))} were recorded "
            "without their tables; applying them again"
        )
    call_command("migrate", database="default", interactive=False, verbosity=0)


def every_database_migrate(*, report: Callable[[str], None] = print) -> None:
    """Migrates every database from a process of each SERVICE, so each database gets the tables of
    exactly the apps that live there (`control` gets the proxy's and the CDC engine's)."""
    for service in SERVICES:
        result = subprocess.run(
            [sys.executable, str(settings.BASE_DIR / "manage.py"), "db_setup", "--own-database-only"],
            # The process's own settings, whatever this one runs with (the suite loads every app).
            env={**os.environ, "SERVICE": service, "DJANGO_SETTINGS_MODULE": "config.settings"},
            capture_output=True,
            text=True,
            check=False,
        )
        if result.stdout.strip():
            report(result.stdout.strip())
        if result.returncode != 0:
            raise DatabaseSetupFailed(
                f"Migrating the {PROCESSES[service].database} database as SERVICE={service} failed:\n"
                + (result.stderr.strip() or result.stdout.strip())
            )
        report(f"migrated {PROCESSES[service].database} (SERVICE={service})")
