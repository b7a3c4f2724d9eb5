"""The legacy shop's change data capture: which of its tables become which domain events.

Registered in settings.CDC_CAPTURES as the "legacy" capture (`capture()` below); the toolkit
(cdc/) runs it and knows none of this. Payloads have versioned schemas in contracts/events/shop/
(shared with the shop service, whose outbox publishes the same events: shop_app/events.py).

- shop_customer: insert -> shop.customer.registered.v1, update of email/name/company ->
  shop.customer.updated.v1, delete -> shop.customer.deleted.v1 (the API token never leaves).
- shop_order: insert -> shop.order.created.v1 (header values), a changed production_stage ->
  shop.order.production_stage_changed.v1, delete -> shop.order.deleted.v1. Status changes are
  announced from the status history (below), which says who and when.
- shop_order_line: insert/update/delete -> shop.order_line.added/changed/removed.v1 with the
  product's sku, subject = the order, so a consumer can build a production order from events alone.
- shop_order_status_history: each inserted row announces the status it records: placed, confirmed,
  cancelled, in_production (production_started), done (production_completed). The shop writes
  the order, its lines, then the "placed" row in one transaction, so an order's line events always
  come before its placed event, and all of them before its confirmed event. A row with a status
  not listed here is an untranslatable change (a dead letter, see `manage.py cdc dead-letters`).

Any other change (bookkeeping columns such as updated_at or sent_to_mes_at, history edits) yields
no event. Unknown columns are ignored, so added columns do not break the stream.

This runs in the CDC process, which loads no legacy app: it reads rows, never the shop's models.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from django.db import connections

from cdc.captures import Capture
from cdc.contract import subject_of
from cdc.row_changes import RowChange, UntranslatableChange, json_column
from cdc.translation import DomainEvent, Translator
from config.routers import database_alias

CUSTOMER_REGISTERED = "shop.customer.registered.v1"
CUSTOMER_UPDATED = "shop.customer.updated.v1"
CUSTOMER_DELETED = "shop.customer.deleted.v1"
ORDER_CREATED = "shop.order.created.v1"
ORDER_PLACED = "shop.order.placed.v1"
ORDER_CONFIRMED = "shop.order.confirmed.v1"
ORDER_CANCELLED = "shop.order.cancelled.v1"
ORDER_PRODUCTION_STARTED = "shop.order.production_started.v1"
ORDER_PRODUCTION_STAGE_CHANGED = "shop.order.production_stage_changed.v1"
ORDER_PRODUCTION_COMPLETED = "shop.order.production_completed.v1"
ORDER_DELETED = "shop.order.deleted.v1"
ORDER_LINE_ADDED = "shop.order_line.added.v1"
ORDER_LINE_CHANGED = "shop.order_line.changed.v1"
ORDER_LINE_REMOVED = "shop.order_line.removed.v1"
EVENT_TYPES = (
    CUSTOMER_REGISTERED,
    CUSTOMER_UPDATED,
    CUSTOMER_DELETED,
    ORDER_CREATED,
    ORDER_PLACED,
    ORDER_CONFIRMED,
    ORDER_CANCELLED,
    ORDER_PRODUCTION_STARTED,
    ORDER_PRODUCTION_STAGE_CHANGED,
    ORDER_PRODUCTION_COMPLETED,
    ORDER_DELETED,
    ORDER_LINE_ADDED,
    ORDER_LINE_CHANGED,
    ORDER_LINE_REMOVED,
)
SCHEMA_DIR = Path(__file__).resolve().parents[2] / "contracts" / "events" / "shop"
EVENT_SOURCE = "/legacy/shop"
CAPTURE_NAME = "legacy"

# The status history's statuses and the event each one announces.
STATUS_EVENTS = {
    "placed": ORDER_PLACED,
    "confirmed": ORDER_CONFIRMED,
    "cancelled": ORDER_CANCELLED,
    "in_production": ORDER_PRODUCTION_STARTED,
    "done": ORDER_PRODUCTION_COMPLETED,
}
CAPTURED_TABLES = ("shop_customer", "shop_order", "shop_order_line", "shop_order_status_history")
CUSTOMER_FIELDS = ("email", "name", "company")


class ProductCatalog(Protocol):
    """Gives the sku of a product id (order lines store only the id)."""

    def sku_of(self, product_id: int) -> str: ...


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


def _customer(change: RowChange) -> list[DomainEvent]:
    row = change.row
    subject = subject_of("customer", row["id"])
    if change.op == "d":
        return [DomainEvent(CUSTOMER_DELETED, subject, {"customer_id": row["id"]})]
    values = {"customer_id": row["id"], **{f: row.get(f) or "" for f in CUSTOMER_FIELDS}}
    if change.op in ("c", "r"):
        return [DomainEvent(CUSTOMER_REGISTERED, subject, {**values, "created_at": row["created_at"]})]
    before = change.before or {}
    changed = [f for f in CUSTOMER_FIELDS if before.get(f) != row.get(f)]
    if not before or not changed:
        return []
    return [DomainEvent(CUSTOMER_UPDATED, subject, {**values, "changed": changed})]


def _order(change: RowChange) -> list[DomainEvent]:
    row = change.row
    subject = subject_of("order", row["id"])
    if change.op == "d":
        return [DomainEvent(ORDER_DELETED, subject, {"order_id": row["id"]})]
    if change.op in ("c", "r"):
        data = {
            "order_id": row["id"],
            "public_id": row["public_id"],
            "customer_id": row["customer_id"],
            "status": row["status"],
            "total": row["total"],
            "currency": row["currency"],
            "created_at": row["created_at"],
        }
        return [DomainEvent(ORDER_CREATED, subject, data)]
    before = change.before or {}
    stage, previous = row.get("production_stage") or "", before.get("production_stage") or ""
    if before and stage != previous:
        data = {"order_id": row["id"], "stage": stage, "previous_stage": previous}
        return [DomainEvent(ORDER_PRODUCTION_STAGE_CHANGED, subject, data)]
    return []


def _order_line(catalog: ProductCatalog) -> Translator:
    def translate(change: RowChange) -> list[DomainEvent]:
        row = change.row
        subject = subject_of("order", row["order_id"])
        if change.op == "d":
            data = {"order_id": row["order_id"], "line_id": row["id"]}
            return [DomainEvent(ORDER_LINE_REMOVED, subject, data)]
        data = {
            "order_id": row["order_id"],
            "line_id": row["id"],
            "product_id": row["product_id"],
            "sku": catalog.sku_of(row["product_id"]),
            "quantity": row["quantity"],
            "options": [str(option) for option in json_column(row.get("options"))],
            "unit_price": row["unit_price"],
            "line_total": row["line_total"],
        }
        event_type = ORDER_LINE_CHANGED if change.op == "u" else ORDER_LINE_ADDED
        return [DomainEvent(event_type, subject, data)]

    return translate


def _status_history(change: RowChange) -> list[DomainEvent]:
    if change.op not in ("c", "r"):
        return []  # the history is append-only; edits of old rows announce nothing
    row = change.row
    event_type = STATUS_EVENTS.get(row["status"])
    if event_type is None:
        raise UntranslatableChange(f"status history row {row['id']} has unknown status {row['status']!r}")
    data = {
        "order_id": row["order_id"],
        "at": row["at"],
        "actor": row.get("actor") or "",
        "note": row.get("note") or "",
    }
    return [DomainEvent(event_type, subject_of("order", row["order_id"]), data)]


def translators(catalog: ProductCatalog) -> dict[str, Translator]:
    """The translator of each captured table; order lines look their product's sku up."""
    return {
        "shop_customer": _customer,
        "shop_order": _order,
        "shop_order_line": _order_line(catalog),
        "shop_order_status_history": _status_history,
    }


def capture() -> Capture:
    """The factory settings.CDC_CAPTURES names: the shop's order tables on the shared database."""
    return Capture(
        name=CAPTURE_NAME,
        database="legacy",
        tables=CAPTURED_TABLES,
        translators=translators(DatabaseProductCatalog(database_alias("legacy"))),
        source=EVENT_SOURCE,
        # Old values: stage changes and changed customer fields are found by comparing.
        replica_identity_full=CAPTURED_TABLES,
    )
