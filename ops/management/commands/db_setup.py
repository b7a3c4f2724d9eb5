"""manage.py db_setup: create every missing database and migrate each one."""

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from ops.database_setup import (
    DatabaseSetupFailed,
    databases_ensure,
    every_database_migrate,
    own_database_migrate,
)


class Command(BaseCommand):
    help = (
        "Create every database named in settings that does not exist yet (legacy, shop, crm, "
        "pricing, production, control), then migrate each from a process of the SERVICE that "
        "owns it. Safe to run repeatedly."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--no-migrate", action="store_true", help="only create databases")
        # What each per-SERVICE child of db_setup runs: migrate this process's own database.
        parser.add_argument("--own-database-only", action="store_true", help="(internal)")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["own_database_only"]:
            own_database_migrate(report=self.stdout.write)
            return
        try:
            result = databases_ensure(report=self.stdout.write)
        except Exception as exc:
            raise CommandError(
                f"Cannot reach PostgreSQL at {settings.PG_HOST}:{settings.PG_PORT} ({exc}). "
                "Start it, or run `make services` to start a local one."
            ) from exc
        self.stdout.write(
            f"databases: {len(result.created)} created, {len(result.existing)} existing; "
            f"wal_level={result.wal_level}"
        )
        if result.wal_level != "logical":
            self.stderr.write(
                "warning: wal_level is not 'logical'; change data capture needs it. Run "
                "`ALTER SYSTEM SET wal_level = logical` as a superuser and restart PostgreSQL "
                "(`make services` does this for a local server)."
            )
        if options["no_migrate"]:
            return
        try:
            every_database_migrate(report=self.stdout.write)
        except DatabaseSetupFailed as exc:
            raise CommandError(str(exc)) from exc
