"""The legacy shop's catalogue as events: the `catalogue` capture (settings.CDC_CAPTURES), a second
capture on the legacy database with its own slot, next to the order capture ("legacy",
legacy/shop/change_events.py), which it leaves untouched.

Every event carries the state of one row (ids and plain values, decimals as strings at the
column's scale), so a consumer keeps a projection without ever reading the shop's database
(mes_pricing/catalogue/ keeps the cost data a price needs this way). Schemas:
contracts/events/shop/shop.{material,product,product_material,product_option}.{changed,deleted}.v1.json.

- insert, snapshot read ('r') and update of a published column -> `<entity>.changed.v1`;
  an update of other columns only (a product's description) announces nothing.
- delete -> `<entity>.deleted.v1` (the tables have REPLICA IDENTITY FULL, so a deleted bill-of-
  materials line or option still names its product).
- Subjects: "material:<id>" for materials, "product:<id>" for a product AND its bill-of-materials
  lines and options, so a product's rows reach a consumer in the order they changed.

The initial fill: this capture runs with Debezium's `snapshot.mode=initial`. Its first start (no
stored offsets) reads every catalogue row ('r' records, announced as *.changed) before it streams;
later starts resume from the stored offsets. To announce everything again, forget the offsets
(`manage.py cdc teardown --capture catalogue --yes`, then `cdc run --capture catalogue`).

This runs in the CDC process, which loads no legacy app: it reads rows, never the shop's models.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cdc.captures import Capture
from cdc.contract import subject_of
from cdc.row_changes import Row, RowChange
from cdc.translation import DomainEvent, Translator

CAPTURE_NAME = "catalogue"
EVENT_SOURCE = "/legacy/shop"
SNAPSHOT_MODE = "initial"

MATERIAL_CHANGED = "shop.material.changed.v1"
MATERIAL_DELETED = "shop.material.deleted.v1"
PRODUCT_CHANGED = "shop.product.changed.v1"
PRODUCT_DELETED = "shop.product.deleted.v1"
PRODUCT_MATERIAL_CHANGED = "shop.product_material.changed.v1"
PRODUCT_MATERIAL_DELETED = "shop.product_material.deleted.v1"
PRODUCT_OPTION_CHANGED = "shop.product_option.changed.v1"
PRODUCT_OPTION_DELETED = "shop.product_option.deleted.v1"
EVENT_TYPES = (
    MATERIAL_CHANGED,
    MATERIAL_DELETED,
    PRODUCT_CHANGED,
    PRODUCT_DELETED,
    PRODUCT_MATERIAL_CHANGED,
    PRODUCT_MATERIAL_DELETED,
    PRODUCT_OPTION_CHANGED,
    PRODUCT_OPTION_DELETED,
)
CAPTURED_TABLES = ("shop_material", "shop_product", "shop_product_material", "shop_product_option")


def _material(row: Row) -> dict[str, Any]:
    return {
        "material_id": row["id"],
        "code": row["code"],
        "name": row.get("name") or "",
        "unit": row.get("unit") or "",
        "unit_cost": row["unit_cost"],
    }


def _product(row: Row) -> dict[str, Any]:
    return {
        "product_id": row["id"],
        "sku": row["sku"],
        "name": row.get("name") or "",
        "labour_minutes": row["labour_minutes"],
        "active": bool(row["active"]),
    }


def _product_material(row: Row) -> dict[str, Any]:
    return {
        "product_material_id": row["id"],
        "product_id": row["product_id"],
        "material_id": row["material_id"],
        "quantity": row["quantity"],
    }


def _product_option(row: Row) -> dict[str, Any]:
    return {
        "option_id": row["id"],
        "product_id": row["product_id"],
        "code": row["code"],
        "name": row.get("name") or "",
        "extra_material_id": row.get("extra_material_id"),
        "extra_material_quantity": row["extra_material_quantity"],
        "extra_labour_minutes": row["extra_labour_minutes"],
    }


def _row_translator(
    *,
    state: Callable[[Row], dict[str, Any]],
    subject: Callable[[Row], str],
    changed: str,
    deleted: str,
    deleted_keys: tuple[str, ...],
) -> Translator:
    """`changed` with the row's state on insert/snapshot/update, `deleted` with its keys on delete."""

    def translate(change: RowChange) -> list[DomainEvent]:
        row = change.row
        if change.op == "d":
            data = state(row)
            return [DomainEvent(deleted, subject(row), {key: data[key] for key in deleted_keys})]
        data = state(row)
        if change.op == "u" and change.before and state(change.before) == data:
            return []  # only unpublished columns changed (a description, a timestamp)
        return [DomainEvent(changed, subject(row), data)]

    return translate


def translators() -> dict[str, Translator]:
    return {
        "shop_material": _row_translator(
            state=_material,
            subject=lambda row: subject_of("material", row["id"]),
            changed=MATERIAL_CHANGED,
            deleted=MATERIAL_DELETED,
            deleted_keys=("material_id",),
        ),
        "shop_product": _row_translator(
            state=_product,
            subject=lambda row: subject_of("product", row["id"]),
            changed=PRODUCT_CHANGED,
            deleted=PRODUCT_DELETED,
            deleted_keys=("product_id",),
        ),
        "shop_product_material": _row_translator(
            state=_product_material,
            subject=lambda row: subject_of("product", row["product_id"]),
            changed=PRODUCT_MATERIAL_CHANGED,
            deleted=PRODUCT_MATERIAL_DELETED,
            deleted_keys=("product_material_id", "product_id"),
        ),
        "shop_product_option": _row_translator(
            state=_product_option,
            subject=lambda row: subject_of("product", row["product_id"]),
            changed=PRODUCT_OPTION_CHANGED,
            deleted=PRODUCT_OPTION_DELETED,
            deleted_keys=("option_id", "product_id"),
        ),
    }


def capture() -> Capture:
    """The factory settings.CDC_CAPTURES names as "catalogue": the shop's catalogue tables on the
    shared database, filled first from Debezium's initial snapshot."""
    return Capture(
        name=CAPTURE_NAME,
        database="legacy",
        tables=CAPTURED_TABLES,
        translators=translators(),
        source=EVENT_SOURCE,
        # Old values: deleted lines and options still name their product; updates are compared.
        replica_identity_full=CAPTURED_TABLES,
        snapshot_mode=SNAPSHOT_MODE,
    )
