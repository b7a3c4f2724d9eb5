"""Each event is checked against its schema once: where the engine makes it (a failure there can
still become a dead letter), not again in the publisher; an unchecked batch is still checked."""

from __future__ import annotations

from typing import Any

import pytest

from cdc import event_schemas
from cdc.cloudevents import cloud_event, stable_event_id
from cdc.event_schemas import EventSchemaError, ValidatedEvents, events_validated
from cdc.transports import encode_events


def confirmed(order_id: int) -> dict[str, Any]:
    return cloud_event(
        event_id=stable_event_id("validated-test", order_id),
        event_type="shop.order.confirmed.v1",
        source="/legacy/shop",
        subject=f"order:{order_id}",
        time="2026-11-30T12:00:00.000000Z",
        data={"order_id": order_id, "at": "2026-11-30T12:00:00Z", "actor": "staff", "note": ""},
    )


@pytest.fixture
def checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    real = event_schemas.event_validate

    def counting(event: Any) -> None:
        seen.append(event["id"])
        real(event)

    monkeypatch.setattr(event_schemas, "event_validate", counting)
    return seen


def test_a_checked_batch_is_encoded_without_checking_each_event_again(checks: list[str]) -> None:
    parts = [events_validated([confirmed(1)]), events_validated([confirmed(2), confirmed(3)])]
    batch = ValidatedEvents.joined(parts)
    assert [e["data"]["order_id"] for e in batch] == [1, 2, 3]
    assert len(checks) == 3
    assert len(encode_events(batch)) == 3
    assert len(checks) == 3  # the publisher trusted the checked batch


def test_an_unchecked_batch_is_still_checked_by_the_publisher(checks: list[str]) -> None:
    assert len(encode_events([confirmed(1), confirmed(2)])) == 2
    assert len(checks) == 2
    bad = confirmed(3)
    bad["data"]["order_id"] = "three"
    with pytest.raises(EventSchemaError, match="order_id"):
        encode_events([confirmed(4), bad])
    with pytest.raises(EventSchemaError, match="order_id"):
        events_validated([bad])
