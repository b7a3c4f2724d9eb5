"""Routes each app's models to the database that owns them (settings.APP_DATABASES), and the one
place that says which connection alias holds a model's table in this process."""

from typing import Any

from django.conf import settings
from django.db.models import Model


def database_alias(logical_name: str) -> str:
    """The connection alias for a logical database in this process ("default" if it is ours)."""
    return "default" if logical_name == settings.SERVICE_DATABASE else logical_name


def logical_database(alias: str) -> str:
    """The logical database (legacy, control, ...) behind a connection alias of this process."""
    return settings.SERVICE_DATABASE if alias == "default" else alias


def model_database_alias(model: type[Model] | Model) -> str:
    """The connection alias holding `model`'s table in this process: its app's database, or this
    process's own for the framework apps (users, sessions, content types)."""
    logical = settings.APP_DATABASES.get(model._meta.app_label)
    return "default" if logical is None else database_alias(logical)


class ServiceDatabaseRouter:
    def db_for_read(self, model: type[Model], **hints: Any) -> str | None:
        # None for the framework apps lets Django follow the related instance (a token created for
        # a user of `control` goes to `control`), else "default".
        if model._meta.app_label not in settings.APP_DATABASES:
            return None
        return model_database_alias(model)

    db_for_write = db_for_read

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool | None:
        return None

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool:
        # Decided by the logical database, never by the alias: "control" is "default" in the proxy
        # and a plain alias elsewhere, and both must get the same tables.
        owner = settings.APP_DATABASES.get(app_label)
        return owner is None or owner == logical_database(db)
