"""The toolkit's translation knows no table: a capture registers translators, the toolkit reads
envelopes, gives events stable ids and refuses tables it has no translator for."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import override_settings

from cdc.captures import (
    Capture,
    UnknownCapture,
    capture_load,
    capture_translate,
    outbox_capture_name,
    record_translate_for,
)
from cdc.outbox_relay import UnreadableOutboxRecord
from cdc.records import CapturedRecord
from cdc.row_changes import RowChange, UntranslatableChange, row_change_from_envelope
from cdc.translation import DomainEvent, row_change_translate


def thing_changed(change: RowChange) -> list[DomainEvent]:
    if change.row["kind"] == "broken":
        raise UntranslatableChange("broken thing")
    return [DomainEvent("test.thing.changed.v1", f"thing:{change.row['id']}", {"id": change.row["id"]})]


def toy_capture() -> Capture:
    return Capture(
        name="toy",
        database="legacy",
        tables=("toy_thing",),
        translators={"toy_thing": thing_changed},
        source="/toy",
    )


def envelope(table: str, row: dict[str, Any], lsn: int = 10) -> str:
    source = {"table": table, "lsn": lsn, "txId": 3, "ts_us": 1_790_000_000_000_000}
    return json.dumps({"before": None, "after": row, "source": source, "op": "c"})


def record(value: str | None, destination: str = "toy.public.toy_thing") -> CapturedRecord:
    return CapturedRecord(destination=destination, key=None, value=value)


def test_a_registered_translator_decides_and_the_toolkit_gives_stable_ids() -> None:
    translate = capture_translate(toy_capture())
    [event] = translate(record(envelope("toy_thing", {"id": 1, "kind": "ok"})))
    assert (event["type"], event["subject"], event["source"]) == ("test.thing.changed.v1", "thing:1", "/toy")
    assert translate(record(envelope("toy_thing", {"id": 1, "kind": "ok"})))[0]["id"] == event["id"]
    assert translate(record(envelope("toy_thing", {"id": 1, "kind": "ok"}, lsn=11)))[0]["id"] != event["id"]


def test_heartbeats_tombstones_and_non_changes_announce_nothing() -> None:
    translate = capture_translate(toy_capture())
    assert translate(record(envelope("cdc_heartbeat", {"slot_name": "s", "beat_at": 1}))) == []
    assert translate(record(None)) == []
    assert translate(record(json.dumps({"ts_ms": 1}))) == []


def test_a_captured_table_without_translator_and_a_refusing_translator_are_untranslatable() -> None:
    change = row_change_from_envelope(envelope("toy_other", {"id": 2}))
    assert change is not None
    with pytest.raises(UntranslatableChange, match="toy_other"):
        row_change_translate(change=change, translators=toy_capture().translators, source="/toy")
    with pytest.raises(UntranslatableChange, match="broken"):
        capture_translate(toy_capture())(record(envelope("toy_thing", {"id": 3, "kind": "broken"})))


@override_settings(CDC_CAPTURES={"toy": "cdc.tests.test_translation:toy_capture"})
def test_captures_are_found_through_settings_by_name() -> None:
    assert capture_load("toy").tables == ("toy_thing",)
    assert record_translate_for("toy")(record(envelope("toy_thing", {"id": 4, "kind": "ok"})))
    with pytest.raises(UnknownCapture, match="legacy"):
        capture_load("legacy")


def test_an_outbox_row_is_relayed_as_it_is_and_one_without_its_columns_is_unreadable() -> None:
    translate = record_translate_for(outbox_capture_name(database="production", table="production_outbox"))
    headers = {
        "id": "5b0e7a4e-5c2b-4d36-9d62-0b6f0d8f0a11",
        "type": "test.outbox_probe.v1",
        "aggregatetype": "order",
    }
    row = CapturedRecord(
        destination="outbox_production_production_outbox.order",
        key='"12"',
        value='{"n": 1}',
        timestamp_ms=1_790_000_000_000,
        headers=headers,
    )
    [event] = translate(row)
    assert (event["id"], event["subject"], event["data"]) == (headers["id"], "order:12", {"n": 1})
    assert event["source"] == "/production/production_outbox"
    assert translate(CapturedRecord(destination="x.public.cdc_heartbeat", key=None, value="{}")) == []
    with pytest.raises(UnreadableOutboxRecord, match="type"):
        translate(CapturedRecord(destination=row.destination, key='"12"', value="{}", headers={"id": "x"}))
