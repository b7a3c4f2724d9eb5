"""The `catalogue` capture's translation: one row change of a catalogue table -> the event carrying
the row's state (or its deletion), valid against its schema in contracts/events/shop/."""

from __future__ import annotations

import json

import pytest

from cdc.captures import capture_engine_config, capture_load, capture_translate
from cdc.event_schemas import event_validate
from cdc.records import CapturedRecord
from legacy.shop import catalogue_events

MATERIAL = {"id": 3, "code": "OAK", "name": "Oak", "unit": "m2", "unit_cost": "12.5000"}
PRODUCT = {
    "id": 7,
    "sku": "TBL-1",
    "name": "Table",
    "description": "long text",
    "labour_minutes": 90,
    "active": True,
    "created_at": "2026-01-01T00:00:00Z",
}
PRODUCT_MATERIAL = {"id": 11, "product_id": 7, "material_id": 3, "quantity": "2.0000"}
OPTION = {
    "id": 13,
    "product_id": 7,
    "code": "lacquer",
    "name": "Lacquer",
    "extra_material_id": None,
    "extra_material_quantity": "0.0000",
    "extra_labour_minutes": 5,
}


def envelope(table: str, op: str, before: dict | None, after: dict | None) -> dict:
    return {
        "op": op,
        "before": before,
        "after": after,
        "source": {"table": table, "lsn": 1000, "txId": 5, "ts_us": 1_700_000_000_000_000},
    }


def translate(table: str, op: str, before: dict | None, after: dict | None) -> list[dict]:
    translate_record = capture_translate(capture_load("catalogue"))
    events = translate_record(
        CapturedRecord(
            destination=f"catalogue.public.{table}",
            key=None,
            value=json.dumps(envelope(table, op, before, after)),
        )
    )
    for event in events:
        event_validate(event)  # raises when the event does not match its schema
    return events


@pytest.mark.parametrize("op", ["c", "r", "u"])
def test_inserted_read_and_updated_rows_announce_their_state(op: str) -> None:
    before = {**MATERIAL, "unit_cost": "10.0000"} if op == "u" else None
    (event,) = translate("shop_material", op, before, MATERIAL)
    assert event["type"] == "shop.material.changed.v1"
    assert event["subject"] == "material:3"
    assert event["data"] == {
        "material_id": 3,
        "code": "OAK",
        "name": "Oak",
        "unit": "m2",
        "unit_cost": "12.5000",
    }


def test_a_product_and_its_lines_and_options_share_the_products_subject() -> None:
    (product,) = translate("shop_product", "r", None, PRODUCT)
    (line,) = translate("shop_product_material", "c", None, PRODUCT_MATERIAL)
    (option,) = translate("shop_product_option", "c", None, OPTION)
    assert [e["subject"] for e in (product, line, option)] == ["product:7"] * 3
    assert product["data"] == {
        "product_id": 7,
        "sku": "TBL-1",
        "name": "Table",
        "labour_minutes": 90,
        "active": True,
    }
    assert line["data"] == {
        "product_material_id": 11,
        "product_id": 7,
        "material_id": 3,
        "quantity": "2.0000",
    }
    assert option["data"]["extra_material_id"] is None


def test_deleted_rows_announce_their_keys() -> None:
    assert translate("shop_product_option", "d", OPTION, None)[0]["data"] == {
        "option_id": 13,
        "product_id": 7,
    }
    assert translate("shop_product_material", "d", PRODUCT_MATERIAL, None)[0]["type"] == (
        "shop.product_material.deleted.v1"
    )
    assert translate("shop_product", "d", PRODUCT, None)[0]["data"] == {"product_id": 7}
    assert translate("shop_material", "d", MATERIAL, None)[0]["data"] == {"material_id": 3}


def test_an_update_of_unpublished_columns_announces_nothing() -> None:
    assert translate("shop_product", "u", {**PRODUCT, "description": "old"}, PRODUCT) == []
    assert len(translate("shop_product", "u", {**PRODUCT, "active": False}, PRODUCT)) == 1


def test_the_capture_snapshots_first_on_its_own_slot() -> None:
    config = capture_engine_config(capture_load("catalogue"))
    assert config.properties()["snapshot.mode"] == "initial"
    assert config.target.tables == catalogue_events.CAPTURED_TABLES
    assert set(config.target.replica_identity_full) == set(catalogue_events.CAPTURED_TABLES)
    assert "cdc_catalogue" in config.target.slot_name
    legacy = capture_engine_config(capture_load("legacy"))
    assert legacy.properties()["snapshot.mode"] == "no_data"
    assert legacy.target.slot_name != config.target.slot_name
