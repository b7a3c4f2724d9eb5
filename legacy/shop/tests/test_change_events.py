"""The legacy shop's capture: its tables' Debezium envelopes become shop events that match the
schemas the shop registers."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.conf import settings

from cdc.captures import capture_load
from cdc.event_schemas import EventSchemaError, event_validate, known_event_types
from cdc.row_changes import UntranslatableChange, row_change_from_envelope
from cdc.translation import row_change_translate
from legacy.shop import change_events
from legacy.shop.change_events import translators

SOURCE = "/legacy/shop"


class DictCatalog:
    def __init__(self, skus: dict[int, str]) -> None:
        self.skus = skus

    def sku_of(self, product_id: int) -> str:
        return self.skus[product_id]


def envelope(
    table: str, op: str, after: dict[str, Any] | None, before: dict[str, Any] | None = None, lsn: int = 100
):
    return json.dumps(
        {
            "before": before,
            "after": after,
            "source": {
                "table": table,
                "lsn": lsn,
                "txId": 7,
                "ts_us": 1_790_000_000_123_456,
                "schema": "public",
            },
            "op": op,
        }
    )


ORDER = {
    "id": 12,
    "public_id": "5b0e7a4e-5c2b-4d36-9d62-0b6f0d8f0a11",
    "customer_id": 3,
    "status": "placed",
    "total": "176.88",
    "currency": "EUR",
    "created_at": "2026-11-26T14:11:28.400897Z",
    "updated_at": "2026-11-26T14:11:28.400897Z",
    "sent_to_mes_at": None,
    "production_stage": "",
}
LINE = {
    "id": 40,
    "order_id": 12,
    "product_id": 5,
    "quantity": 2,
    "options": '["lacquer"]',
    "unit_price": "88.44",
    "line_total": "176.88",
}


def translate(*values: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for value in values:
        change = row_change_from_envelope(value)
        if change is not None:
            events += row_change_translate(
                change=change, translators=translators(DictCatalog({5: "SKU-5"})), source=SOURCE
            )
    return events


def test_order_line_becomes_a_line_event_on_the_orders_subject_with_its_sku() -> None:
    [event] = translate(envelope("shop_order_line", "c", LINE))
    assert event["type"] == change_events.ORDER_LINE_ADDED
    assert event["subject"] == "order:12"
    assert event["data"] == {
        "order_id": 12,
        "line_id": 40,
        "product_id": 5,
        "sku": "SKU-5",
        "quantity": 2,
        "options": ["lacquer"],
        "unit_price": "88.44",
        "line_total": "176.88",
    }
    assert event["time"] == "2026-09-21T14:13:20.123456Z"
    event_validate(event)


def test_the_same_change_read_twice_has_the_same_id_and_another_change_another() -> None:
    first = translate(envelope("shop_order", "c", ORDER))[0]
    again = translate(envelope("shop_order", "c", ORDER))[0]
    other = translate(envelope("shop_order", "c", ORDER, lsn=101))[0]
    assert first == again
    assert other["id"] != first["id"] and other["traceparent"] != first["traceparent"]


@pytest.mark.parametrize(
    ("status", "event_type"),
    [
        ("placed", change_events.ORDER_PLACED),
        ("confirmed", change_events.ORDER_CONFIRMED),
        ("cancelled", change_events.ORDER_CANCELLED),
        ("in_production", change_events.ORDER_PRODUCTION_STARTED),
        ("done", change_events.ORDER_PRODUCTION_COMPLETED),
    ],
)
def test_status_history_rows_announce_their_status(status: str, event_type: str) -> None:
    row = {"id": 1, "order_id": 12, "status": status, "note": "", "actor": "staff", "at": ORDER["created_at"]}
    [event] = translate(envelope("shop_order_status_history", "c", row))
    assert event["type"] == event_type and event["subject"] == "order:12"
    event_validate(event)


def test_bookkeeping_updates_and_heartbeats_announce_nothing() -> None:
    touched = {**ORDER, "updated_at": "2026-11-26T15:00:00Z", "sent_to_mes_at": "2026-11-26T15:00:00Z"}
    assert translate(envelope("shop_order", "u", touched, before=ORDER)) == []
    assert translate(json.dumps({"ts_ms": 1790000000000})) == []


def test_stage_change_and_customer_update_compare_old_and_new_values() -> None:
    staged = {**ORDER, "production_stage": "cutting"}
    [stage] = translate(envelope("shop_order", "u", staged, before={**ORDER, "production_stage": "queued"}))
    assert stage["data"] == {"order_id": 12, "stage": "cutting", "previous_stage": "queued"}
    customer = {
        "id": 3,
        "email": "a@example.com",
        "name": "A",
        "company": "",
        "api_token": "secret",
        "created_at": ORDER["created_at"],
    }
    [registered] = translate(envelope("shop_customer", "c", customer))
    assert "api_token" not in registered["data"] and "secret" not in json.dumps(registered)
    assert translate(envelope("shop_customer", "u", {**customer, "api_token": "new"}, before=customer)) == []
    [updated] = translate(envelope("shop_customer", "u", {**customer, "company": "ACME"}, before=customer))
    assert updated["data"]["changed"] == ["company"]
    for event in (stage, registered, updated):
        event_validate(event)


def test_every_schema_file_is_a_valid_schema_and_covers_every_translated_type() -> None:
    types = known_event_types()
    for event_type in types:
        with pytest.raises(EventSchemaError):
            event_validate(
                {
                    "specversion": "1.0",
                    "id": "x",
                    "source": "s",
                    "type": event_type,
                    "subject": "order:1",
                    "time": "2026-01-01T00:00:00Z",
                    "datacontenttype": "application/json",
                    "traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01",
                    "data": {"unexpected": 1},
                }
            )
    assert set(change_events.EVENT_TYPES) <= set(types)
    assert change_events.capture().source == SOURCE


def test_events_without_a_schema_or_with_wrong_data_are_refused() -> None:
    [event] = translate(envelope("shop_order", "c", ORDER))
    with pytest.raises(EventSchemaError, match="no schema"):
        event_validate({**event, "type": "shop.order.teleported.v1"})
    with pytest.raises(EventSchemaError, match="total"):
        event_validate({**event, "data": {**event["data"], "total": 176.88}})
    with pytest.raises(EventSchemaError, match="subject"):
        event_validate({**event, "subject": "12"})


def test_a_status_history_row_with_an_unknown_status_is_untranslatable() -> None:
    row = {
        "id": 1,
        "order_id": 12,
        "status": "on_hold",
        "note": "",
        "actor": "staff",
        "at": ORDER["created_at"],
    }
    with pytest.raises(UntranslatableChange, match="on_hold"):
        translate(envelope("shop_order_status_history", "c", row))


def test_the_shop_registers_its_capture_as_the_default_one() -> None:
    capture = capture_load(settings.CDC_DEFAULT_CAPTURE)
    assert capture.name == "legacy" and capture.tables == change_events.CAPTURED_TABLES
    assert str(change_events.SCHEMA_DIR) in settings.CDC_EVENT_SCHEMA_DIRS
