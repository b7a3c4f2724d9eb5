from django.apps import AppConfig


class DataMigrationsConfig(AppConfig):
    """The data-migration toolkit: backfill, sync, verify, cutover, rollback, retire."""

    name = "migrations"
    label = "data_migrations"
