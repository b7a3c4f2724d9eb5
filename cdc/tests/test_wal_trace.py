"""Trace context through the WAL, the reading side: message records -> transaction id -> traceparent,
and the engine handler's use of it (pure logic over fake Java records, no JVM)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from cdc.engine import PublishingHandler
from cdc.event_schemas import ValidatedEvents
from cdc.row_changes import row_change_from_envelope
from cdc.wal_trace import MESSAGE_PREFIX, TraceContexts, TraceMessage, record_tx_id, trace_message_read

A = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
B = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def message_value(tx_id: int | None, content: str, *, prefix: str = MESSAGE_PREFIX) -> str:
    return json.dumps(
        {
            "op": "m",
            "ts_ms": 1,
            "source": {"txId": tx_id, "lsn": 100},
            "message": {"prefix": prefix, "content": base64.b64encode(content.encode()).decode()},
        }
    )


def row_value(tx_id: int, row_id: int, *, note: str = "") -> str:
    return json.dumps(
        {
            "op": "c",
            "before": None,
            "after": {"id": row_id, "note": note},
            "source": {"table": "thing", "txId": tx_id, "lsn": 200 + row_id, "ts_us": 1_000_000},
        }
    )


def test_a_message_record_names_its_transaction_and_traceparent() -> None:
    assert trace_message_read(message_value(7, A)) == TraceMessage(7, A)


@pytest.mark.parametrize(
    "value",
    [
        message_value(7, "not a traceparent"),
        message_value(7, "00-" + "0" * 32 + "-b7ad6b7169203331-01"),  # an invalid (zero) trace id
        message_value(7, A, prefix="someone-else"),
        message_value(None, A),  # a non-transactional message has no transaction to join
        json.dumps({"op": "m", "source": {"txId": 7}, "message": {"prefix": MESSAGE_PREFIX, "content": "%"}}),
        row_value(7, 1),
        "not json",
        None,
    ],
)
def test_malformed_or_foreign_messages_carry_no_trace(value: str | None) -> None:
    assert trace_message_read(value) is None


def test_a_message_record_is_not_a_row_change() -> None:
    assert row_change_from_envelope(message_value(7, A)) is None


def test_the_transaction_id_is_the_sources_even_when_a_value_quotes_it() -> None:
    assert record_tx_id(row_value(42, 1, note='{"txId":99}')) == 42
    assert record_tx_id('{"op":"c","after":{}}') is None


def test_duplicates_keep_the_first_message_and_advance_follows_the_stream() -> None:
    contexts = TraceContexts()
    assert contexts.remember(7, A)
    assert not contexts.remember(7, A)  # the same message read again
    assert not contexts.remember(7, B)  # a later message does not replace the first on the first pass
    assert contexts.traceparent_of(7) == A
    contexts.advance(7, B)  # passing the later message in stream order
    assert contexts.traceparent_of(7) == B
    assert contexts.traceparent_of(8) is None
    assert contexts.traceparent_of(None) is None


def test_a_malformed_traceparent_is_not_kept() -> None:
    contexts = TraceContexts()
    assert not contexts.remember(7, "00-xyz")
    contexts.advance(7, "garbage")
    assert contexts.traceparent_of(7) is None


def test_the_oldest_transactions_are_forgotten_past_the_capacity() -> None:
    contexts = TraceContexts(capacity=2)
    for tx_id in (1, 2, 3):
        contexts.remember(tx_id, A)
    assert (contexts.traceparent_of(1), contexts.traceparent_of(3), len(contexts)) == (None, A, 2)


class FakeJavaRecord:
    def __init__(self, destination: str, value: str) -> None:
        self._destination, self._value = destination, value

    def destination(self) -> str:
        return self._destination

    def value(self) -> str:
        return self._value

    def key(self) -> None:
        return None

    def headers(self) -> list[Any]:
        return []


def handler() -> PublishingHandler:
    def translate(record: Any) -> list[dict[str, Any]]:
        change = row_change_from_envelope(record.value)
        assert change is not None, "a message record reached the translation"
        row_id = change.row["id"]
        return [
            {
                "specversion": "1.0",
                "id": f"00000000-0000-4000-8000-{row_id:012d}",
                "source": "/test",
                "type": "test.thing.created.v1",
                "subject": f"thing:{row_id}",
                "time": "2026-01-01T00:00:00.000000Z",
                "datacontenttype": "application/json",
                "traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01",  # the id-derived default
                "data": {},
            }
        ]

    return PublishingHandler(
        engine_name="t",
        capture_name="t",
        slot_name="t",
        translate=translate,
        publisher=None,  # type: ignore[arg-type]  # not reached by _translate
        topic_prefix="t",
    )


@pytest.fixture(autouse=True)
def unchecked_events(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test's event type has no schema: the handler takes its events as they come."""
    monkeypatch.setattr(
        "cdc.engine.record_events_checked", lambda translate, record: ValidatedEvents(translate(record))
    )


def traceparents(handler: PublishingHandler, records: list[FakeJavaRecord]) -> list[str]:
    events, letters = handler._translate(records)
    assert letters == []
    return [event["traceparent"] for event in events]


def message(tx_id: int, traceparent: str) -> FakeJavaRecord:
    return FakeJavaRecord("t.message", message_value(tx_id, traceparent))


def row(tx_id: int, row_id: int) -> FakeJavaRecord:
    return FakeJavaRecord("t.public.thing", row_value(tx_id, row_id))


DERIVED = "00-" + "1" * 32 + "-" + "2" * 16 + "-01"


def test_rows_of_a_transaction_carry_its_message_with_tracing_off() -> None:
    # Tracing is off in unit tests: no span, the event carries the request's traceparent itself.
    assert traceparents(handler(), [message(7, A), row(7, 1), row(8, 2)]) == [A, DERIVED]


def test_a_message_after_its_rows_still_reaches_them() -> None:
    assert traceparents(handler(), [row(7, 1), row(7, 2), message(7, A)]) == [A, A]


def test_rows_follow_the_latest_message_of_their_transaction_in_stream_order() -> None:
    records = [message(7, A), row(7, 1), message(7, B), row(7, 2)]
    assert traceparents(handler(), records) == [A, B]


def test_a_message_in_an_earlier_batch_reaches_the_rows_of_a_later_one() -> None:
    engine_handler = handler()
    assert traceparents(engine_handler, [message(7, A)]) == []  # the message alone is no event
    assert traceparents(engine_handler, [row(7, 1)]) == [A]


def test_duplicate_and_malformed_messages_change_nothing() -> None:
    records = [message(7, A), message(7, A), message(7, "bogus"), row(7, 1), row(9, 2)]
    assert traceparents(handler(), records) == [A, DERIVED]


def test_a_table_named_message_is_not_taken_for_a_message() -> None:
    record = FakeJavaRecord("t.public.message", row_value(7, 1))
    assert traceparents(handler(), [record]) == [DERIVED]
