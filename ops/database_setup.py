"""Creates the project's databases on the PostgreSQL server and checks it can do logical decoding."""

from collections.abc import Callable
from dataclasses import dataclass

import psycopg
from django.conf import settings
from psycopg import sql


@dataclass(frozen=True)
class DatabaseSetupResult:
    created: list[str]
    existing: list[str]
    wal_level: str


def server_dsn(alias: str) -> str:
    config = settings.DATABASES[alias]
    return psycopg.conninfo.make_conninfo(
        host=config["HOST"] or None,
        port=config["PORT"] or None,
        user=config["USER"] or None,
        password=config["PASSWORD"] or None,
        dbname="postgres",
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
