"""Routes each app's models to the database that owns them (see settings.APP_DATABASES)."""

from typing import Any

from django.conf import settings


def database_alias(logical_name: str) -> str:
    """The connection alias for a logical database in this process ("default" if it is ours)."""
    return "default" if logical_name == settings.SERVICE_DATABASE else logical_name


class ServiceDatabaseRouter:
    def _alias_for(self, app_label: str) -> str | None:
        logical = settings.APP_DATABASES.get(app_label)
        return None if logical is None else database_alias(logical)

    def db_for_read(self, model: type, **hints: Any) -> str | None:
        return self._alias_for(model._meta.app_label)  # type: ignore[attr-defined]

    db_for_write = db_for_read

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool | None:
        return None

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool:
        alias = self._alias_for(app_label)
        if alias is None:
            return db == "default"
        return db == alias
