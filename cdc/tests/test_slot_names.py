"""Default replication slot names: one per server, so two copies of a database never share one."""

import copy

from django.test import override_settings

from cdc.captures import SLOT_NAME_MAX, default_slot_name
from config.routers import database_alias


def _named(databases: dict, database: str, name: str) -> dict:
    renamed = copy.deepcopy(databases)
    renamed[database_alias(database)]["NAME"] = name
    return renamed


def test_the_usual_database_keeps_the_plain_name_and_a_copy_gets_its_own(settings) -> None:  # type: ignore[no-untyped-def]
    with override_settings(DB_NAME_PREFIX="", DATABASES=_named(settings.DATABASES, "legacy", "legacy")):
        assert default_slot_name("cdc_catalogue", database="legacy") == "cdc_catalogue"
    with override_settings(DB_NAME_PREFIX="", DATABASES=_named(settings.DATABASES, "legacy", "test_legacy")):
        copy_slot = default_slot_name("cdc_catalogue", database="legacy")
    with override_settings(DB_NAME_PREFIX="", DATABASES=_named(settings.DATABASES, "legacy", "test_legacy2")):
        other_copy = default_slot_name("cdc_catalogue", database="legacy")
    assert copy_slot.startswith("cdc_catalogue_") and copy_slot != other_copy


def test_a_long_name_is_shortened_to_the_limit_and_stays_apart(settings) -> None:  # type: ignore[no-untyped-def]
    prefix = "bench_mes_production_latency_"
    databases = _named(settings.DATABASES, "production", f"{prefix}production")
    with override_settings(DB_NAME_PREFIX=prefix, DATABASES=databases):
        one = default_slot_name("cdc_outbox_production_production_outbox", database="production")
        two = default_slot_name("cdc_outbox_production_production_outbox2", database="production")
    assert len(one) <= SLOT_NAME_MAX and len(two) <= SLOT_NAME_MAX and one != two
