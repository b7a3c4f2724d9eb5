"""The engine's handler splits a batch: good changes are published, poison changes become dead
letters (stored once, counted), a broker failure refuses the whole batch. Real PostgreSQL
(control database); the Java records and the broker are stand-ins."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from cdc import event_schemas, metrics
from cdc.captures import Capture, capture_translate
from cdc.engine import PublishingHandler
from cdc.models import CaptureDeadLetter
from cdc.row_changes import RowChange, UntranslatableChange
from cdc.translation import DomainEvent
from cdc.transports import PublishError

pytestmark = pytest.mark.django_db(databases=["default", "control"])


def thing_changed(change: RowChange) -> list[DomainEvent]:
    kind = change.row["kind"]
    if kind == "unknown":
        raise UntranslatableChange(f"thing {change.row['id']} has unknown kind")
    if kind == "bug":
        return [DomainEvent("test.thing.changed.v1", "thing", {"id": change.row["missing"]})]
    data = {"n": "not-an-integer"} if kind == "bad-schema" else {"n": change.row["id"]}
    return [DomainEvent("test.outbox_probe.v1", f"thing:{change.row['id']}", data)]


class JavaRecord:
    """What pydbzengine hands the handler: accessor methods, no source offset here."""

    def __init__(self, row: dict[str, Any], lsn: int) -> None:
        self._value = json.dumps(
            {"op": "c", "before": None, "after": row, "source": {"table": "toy_thing", "lsn": lsn, "txId": 1}}
        )

    def destination(self) -> str:
        return "toy.public.toy_thing"

    def key(self) -> None:
        return None

    def value(self) -> str:
        return self._value

    def sourceRecord(self) -> Any:
        raise AttributeError("no source record")


class Broker:
    def __init__(self, *, down: bool = False) -> None:
        self.down = down
        self.published: list[dict[str, Any]] = []

    def publish_batch(self, events: Sequence[dict[str, Any]]) -> None:
        if self.down:
            raise PublishError("broker unreachable")
        self.published += events

    def close(self) -> None:
        pass


def handler(broker: Broker) -> PublishingHandler:
    capture = Capture(
        name="toy",
        database="legacy",
        tables=("toy_thing",),
        translators={"toy_thing": thing_changed},
        source="/toy",
    )
    return PublishingHandler(
        engine_name="toy",
        capture_name="toy",
        slot_name="s",
        translate=capture_translate(capture),
        publisher=broker,
    )


@pytest.fixture
def schemas(settings: Any) -> Iterator[None]:
    from pathlib import Path

    settings.CDC_EVENT_SCHEMA_DIRS = [str(Path(__file__).resolve().parents[2] / "tests" / "schemas")]
    event_schemas._validator.cache_clear()
    yield
    event_schemas._validator.cache_clear()


def batch() -> list[JavaRecord]:
    kinds = ["ok", "unknown", "ok", "bad-schema", "bug", "ok"]
    return [JavaRecord({"id": n, "kind": kind}, lsn=100 + n) for n, kind in enumerate(kinds)]


def dead_letter_count(reason: str) -> float:
    return metrics.DEAD_LETTERS.labels("toy", reason)._value.get()


def test_poison_changes_become_dead_letters_and_the_good_ones_are_published(schemas: None) -> None:
    broker = Broker()
    before = {r: dead_letter_count(r) for r in ("untranslatable", "schema_mismatch", "translator_error")}
    handler(broker).handleJsonBatch(batch())
    assert [e["subject"] for e in broker.published] == ["thing:0", "thing:2", "thing:5"]
    letters = list(CaptureDeadLetter.objects.order_by("id"))
    assert [(letter.reason, letter.error_type) for letter in letters] == [
        ("untranslatable", "cdc.row_changes.UntranslatableChange"),
        ("schema_mismatch", "cdc.event_schemas.EventSchemaError"),
        ("translator_error", "builtins.KeyError"),
    ]
    assert json.loads(letters[0].record["value"])["after"] == {"id": 1, "kind": "unknown"}
    assert letters[0].capture == "toy"
    for reason in before:
        assert dead_letter_count(reason) == before[reason] + 1

    handler(broker).handleJsonBatch(batch())  # the same batch read again after a crash
    assert CaptureDeadLetter.objects.count() == 3
    assert dead_letter_count("untranslatable") == before["untranslatable"] + 1


def test_a_broker_failure_refuses_the_whole_batch_and_stores_no_letter(schemas: None) -> None:
    with pytest.raises(PublishError):
        handler(Broker(down=True)).handleJsonBatch(batch())
    assert not CaptureDeadLetter.objects.exists()
