"""The two captures this toolkit runs, built from settings: the legacy engine (row changes of the
shared database's order tables, translated into domain events) and an outbox relay (rows of one
outbox table, relayed as they are)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.db import connections

from cdc.engine import EngineConfig, Translate
from cdc.outbox_relay import outbox_records_translate
from cdc.replication import HEARTBEAT_TABLE, CaptureTarget
from cdc.translation import CAPTURED_TABLES, envelopes_translate
from config.routers import database_alias

LEGACY_ENGINE = "legacy"
HEARTBEAT_SUFFIX = f".{HEARTBEAT_TABLE}"


class DatabaseProductCatalog:
    """Skus of the legacy products, read once per product: a product's sku does not change once
    orders reference it (the shop keys its catalogue on it)."""

    def __init__(self, alias: str) -> None:
        self.alias = alias
        self._skus: dict[int, str] = {}

    def sku_of(self, product_id: int) -> str:
        sku = self._skus.get(product_id)
        if sku is None:
            connection = connections[self.alias]
            try:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT sku FROM shop_product WHERE id = %s", [product_id])
                    row = cursor.fetchone()
            finally:
                # This runs on Debezium's handler thread, which is new after every engine restart:
                # a connection left open here would never be closed. Lookups are rare (cache).
                connection.close()
            if row is None:
                raise LookupError(f"product {product_id} of an order line is not in shop_product")
            sku = self._skus[product_id] = row[0]
        return sku


def legacy_engine_config() -> EngineConfig:
    return EngineConfig(
        name=LEGACY_ENGINE,
        target=CaptureTarget(
            database_alias=database_alias("legacy"),
            tables=CAPTURED_TABLES,
            slot_name=settings.CDC_SLOT_NAME,
            publication_name=settings.CDC_PUBLICATION_NAME,
            # Old values: stage changes and changed customer fields are found by comparing.
            replica_identity_full=CAPTURED_TABLES,
        ),
        offset_table=settings.CDC_OFFSET_TABLE,
        topic_prefix=settings.CDC_TOPIC_PREFIX,
    )


def legacy_translator() -> Translate:
    catalog = DatabaseProductCatalog(database_alias("legacy"))
    source = settings.CDC_EVENT_SOURCE

    def translate(records: Sequence[Any]) -> list[dict[str, Any]]:
        values = [
            str(value)
            for record in records
            if not str(record.destination()).endswith(HEARTBEAT_SUFFIX)
            and (value := record.value()) is not None
        ]
        return envelopes_translate(values=values, catalog=catalog, source=source)

    return translate


def outbox_engine_config(*, database: str, table: str) -> EngineConfig:
    """An outbox relay on `table` of the logical database `database` (shop, crm, production, ...);
    its slot, publication, offset table and topic prefix are named after both."""
    if database not in settings.DATABASE_NAMES:
        raise ValueError(f"database {database!r} is not one of {', '.join(settings.DATABASE_NAMES)}")
    suffix = f"{database}_{table}"
    slot = settings.CDC_OUTBOX_SLOT_NAME or f"{settings.DB_NAME_PREFIX}cdc_outbox_{suffix}".lower()
    return EngineConfig(
        name=f"outbox-{suffix}",
        target=CaptureTarget(
            database_alias=database_alias(database),
            tables=(table,),
            slot_name=slot,
            publication_name=settings.CDC_OUTBOX_PUBLICATION_NAME or slot,
        ),
        # Named after the slot: offsets are positions in that slot's history and nobody else's.
        offset_table=f"cdc_offsets_{slot}",
        topic_prefix=f"outbox_{suffix}".lower(),
        outbox=True,
    )


def outbox_translator(*, database: str, table: str) -> Translate:
    source = f"/{database}/{table}"

    def translate(records: Sequence[Any]) -> list[dict[str, Any]]:
        return outbox_records_translate(records, source=source)

    return translate
