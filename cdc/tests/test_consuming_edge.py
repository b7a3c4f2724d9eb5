"""Unit tests of the consumers' edge: CloudEvent checks, payload building, topic bindings."""

import json
from dataclasses import dataclass

import pytest

from cdc.consuming.envelope import MalformedEvent, cloudevent_parse, payload_build
from cdc.consuming.groups import topic_matches


def body(**overrides: object) -> bytes:
    event: dict[str, object] = {
        "specversion": "1.0",
        "id": "e1",
        "source": "/legacy/shop",
        "type": "shop.order.confirmed.v1",
        "subject": "order:1",
        "time": "2026-01-02T03:04:05Z",
        "datacontenttype": "application/json",
        "traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01",
        "data": {"order_id": 1, "order_public_id": "p"},
    }
    event.update(overrides)
    return json.dumps({k: v for k, v in event.items() if v is not None}).encode()


def test_a_contract_event_parses_into_its_envelope() -> None:
    event = cloudevent_parse(body())
    assert (event.id, event.type, event.subject) == ("e1", "shop.order.confirmed.v1", "order:1")
    assert event.time is not None and event.time.year == 2026
    assert event.data == {"order_id": 1, "order_public_id": "p"}


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xff\xfe", "not_json"),
        (b"[1, 2]", "not_cloudevent"),
        (body(specversion="0.3"), "not_cloudevent"),
        (body(id=""), "not_cloudevent"),
        (body(type=None), "not_cloudevent"),
        (body(datacontenttype="text/xml"), "not_cloudevent"),
        (body(time="yesterday"), "not_cloudevent"),
        (body(data=[1]), "schema_mismatch"),
    ],
)
def test_malformed_messages_are_refused_with_their_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(MalformedEvent) as caught:
        cloudevent_parse(raw)
    assert caught.value.reason == reason


@dataclass(frozen=True)
class Placed:
    order_id: int
    lines: list[dict]  # type: ignore[type-arg]
    note: str | None = None


def test_payload_build_checks_presence_and_types_and_ignores_extra_fields() -> None:
    assert payload_build(Placed, {"order_id": 1, "lines": [], "added_later": True}) == Placed(1, [])
    invalid: list[dict[str, object]] = [
        {"lines": []},
        {"order_id": "1", "lines": []},
        {"order_id": True, "lines": []},
        {"order_id": 1, "lines": [1]},
        {"order_id": 1, "lines": [], "note": 5},
    ]
    for data in invalid:
        with pytest.raises(MalformedEvent) as caught:
            payload_build(Placed, data)
        assert caught.value.reason == "schema_mismatch"


def test_topic_patterns_follow_amqp_semantics() -> None:
    assert topic_matches("shop.order.confirmed.*", "shop.order.confirmed.v2")
    assert not topic_matches("shop.order.confirmed.*", "shop.order.confirmed")
    assert not topic_matches("shop.order.confirmed.*", "shop.order_line.added.v1")
    assert topic_matches("shop.#", "shop.order.confirmed.v1")
    assert topic_matches("shop.#", "shop")
    assert topic_matches("#.v1", "crm.note.added.v1")
